# Sourced by scripts/test-gateway.sh and scripts/test-web.sh: what both set
# up before their own checks. The caller sets `tag` (its name in messages),
# `repo`, `target` and `bin_dir`, and has `set -euo pipefail`.
#
#   fail MESSAGE              one line on stderr, exit 1
#   py_venv REQS WHAT         the venv at $target/py-venv (the one scripts/test
#                             makes), with REQS installed when that file
#                             changed since the last install; sets $venv, $py
#   cm ARGS…                  the claudemesh binary, stdin closed
#   wait_for FILE REGEX PID WHAT
#                             waits until FILE holds REGEX (or PID died) and
#                             prints the first match
#   start_broker              a broker on a SQLite file in $work; sets $broker
#   two_homes MESH            alice creates MESH, bob joins it ($work/alice,
#                             $work/bob)
#   serve WHO [FLAGS…]        WHO's gateway on a free port, in the background;
#                             its --json line goes to $work/WHO.serve.json
#
# $work is a temporary directory, removed with every process started here
# when the caller exits.

fail() { printf '%s: FAIL: %s\n' "$tag" "$*" >&2; exit 1; }

[ -x "$bin_dir/claudemesh" ] && [ -x "$bin_dir/claudemesh-broker" ] \
    || fail "build the binaries first (cargo build -p claudemesh -p claudemesh-broker)"

py_venv() { # requirements file, what it installs (for the error)
    local reqs=$1 what=$2
    local marker
    venv="$target/py-venv"
    marker="$venv/.installed-$(basename "$reqs" .requirements.txt)-requirements"
    if [ ! -x "$venv/bin/python" ]; then
        python3 -m venv "$venv" \
            || fail "cannot make a Python venv at $venv (on Debian: apt-get install python3-venv)"
    fi
    if ! cmp -s "$reqs" "$marker" 2>/dev/null; then
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --timeout 30 --retries 2 -r "$reqs" \
            || fail "cannot install $what from PyPI into $venv (is PyPI reachable? see the pip error above)"
        cp "$reqs" "$marker"
    fi
    py="$venv/bin/python"
}

# Nothing of the caller's claudemesh setup leaks in.
for v in $(compgen -e | grep '^CLAUDEMESH_' || true); do unset "$v"; done
work=$(mktemp -d)
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    for p in $pids; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cm() { "$bin_dir/claudemesh" "$@" </dev/null; }

wait_for() {
    for _ in $(seq 300); do
        if grep -qE "$2" "$1" 2>/dev/null; then grep -oE "$2" "$1" | head -n1; return 0; fi
        kill -0 "$3" 2>/dev/null || break
        sleep 0.1
    done
    fail "$4: $(tail -n 5 "$1" 2>/dev/null)"
}

start_broker() {
    "$bin_dir/claudemesh-broker" --listen 127.0.0.1:0 --database-url "sqlite://$work/broker.db" \
        >/dev/null 2>"$work/broker.log" &
    pids="$pids $!"
    broker=$(wait_for "$work/broker.log" 'ws://127\.0\.0\.1:[0-9]+' $! "the broker did not start")
}

two_homes() { # mesh name
    local invite
    cm --home "$work/alice" -q mesh create "$1" --broker "$broker" --name alice >/dev/null \
        || fail "alice could not create the mesh"
    invite=$(cm --home "$work/alice" mesh share 2>/dev/null | tail -n1)
    cm --home "$work/bob" -q join "$invite" --name bob >/dev/null || fail "bob could not join"
}

serve() { # name, extra flags…
    local who=$1
    shift
    "$bin_dir/claudemesh" --home "$work/$who" --json serve --listen 127.0.0.1:0 "$@" \
        >"$work/$who.serve.json" 2>"$work/$who.serve.log" </dev/null &
    pids="$pids $!"
}
