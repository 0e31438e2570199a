#!/usr/bin/env bash
# Tests install.sh end to end against a release folder served over HTTP on
# loopback: it installs into a temporary prefix and the installed claudemesh
# runs; a tampered archive is refused and installs nothing; --uninstall
# removes exactly what was installed; an unknown platform is told so.
#
#   scripts/test-install.sh [BIN_DIR]     (default: $CARGO_TARGET_DIR/debug)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
bin_dir=${1:-${CARGO_TARGET_DIR:-$repo/target}/debug}
case "$bin_dir" in /*) ;; *) bin_dir="$repo/$bin_dir" ;; esac
fail() { printf 'test-install: FAIL: %s\n' "$*" >&2; exit 1; }
[ -x "$bin_dir/claudemesh" ] && [ -x "$bin_dir/claudemesh-broker" ] \
    || fail "build the binaries first (cargo build -p claudemesh -p claudemesh-broker)"
command -v python3 >/dev/null || fail "python3 is needed to serve the release folder"

work=$(mktemp -d)
server_pid=""
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

"$repo/scripts/release.sh" --bin-dir "$bin_dir" --out "$work/dist" >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 -m http.server "$port" --bind 127.0.0.1 --directory "$work/dist" >/dev/null 2>&1 &
server_pid=$!
for _ in $(seq 50); do
    python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/LATEST')" 2>/dev/null && break
    sleep 0.1
done
export CLAUDEMESH_INSTALL_BASE="http://127.0.0.1:$port"

# 1. A good release installs and runs.
out=$(sh "$repo/install.sh" --prefix "$work/p1") || fail "install failed: $out"
printf '%s\n' "$out" | grep -q "checksum ok" || fail "no checksum line: $out"
printf '%s\n' "$out" | grep -q "claudemesh join" || fail "no next step printed: $out"
"$work/p1/bin/claudemesh" --version | grep -q "claudemesh" || fail "installed claudemesh does not run"
[ -x "$work/p1/bin/claudemesh-broker" ] || fail "broker not installed"

# 2. A tampered archive is refused and nothing is installed.
version=$(cat "$work/dist/LATEST")
archive=$(ls "$work/dist/$version"/claudemesh-*.tar.gz | head -n1)
printf 'x' >> "$archive"
if out=$(sh "$repo/install.sh" --prefix "$work/p2" 2>&1); then
    fail "a tampered archive was installed: $out"
fi
printf '%s\n' "$out" | grep -q "checksum mismatch" || fail "no clear refusal: $out"
[ ! -e "$work/p2/bin/claudemesh" ] || fail "something was installed from a tampered archive"

# 3. --uninstall removes what was installed.
sh "$repo/install.sh" --prefix "$work/p1" --uninstall >/dev/null
[ ! -e "$work/p1/bin/claudemesh" ] && [ ! -e "$work/p1/bin/claudemesh-broker" ] \
    || fail "--uninstall left binaries behind"

# 4. An unsupported platform is told what to do (exit 3).
mkdir -p "$work/fake"
printf '#!/bin/sh\n[ "$1" = -s ] && echo Plan9 || echo mips\n' > "$work/fake/uname"
chmod +x "$work/fake/uname"
set +e
out=$(PATH="$work/fake:$PATH" sh "$repo/install.sh" --prefix "$work/p3" 2>&1)
code=$?
set -e
[ "$code" = 3 ] || fail "unsupported platform: exit $code, want 3 ($out)"
printf '%s\n' "$out" | grep -q "Build from source" || fail "no advice for an unsupported platform: $out"

echo "test-install: ok (install, tampered archive refused, uninstall, unsupported platform)"
