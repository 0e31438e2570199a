#!/usr/bin/env bash
# Tests the web app (`claudemesh serve` at `/`) in a real browser, end to
# end: a broker on a temporary SQLite database, alice (who creates a mesh
# and the topic #general) and bob (who joins both), a gateway each; then
# scripts/test_web.py drives headless Chromium (Playwright), alice's page
# on alice's gateway and bob's on bob's, each signed in with its own
# `claudemesh serve open --json` link: live topic messages, unread badges,
# direct messages, verifying a peer, the other views, peer-supplied markup
# shown as text, the sign-in screen and used links, CSRF from other
# origins, security headers and Host checks, a phone-sized screen and the
# dark theme, messages sent for later, team memory, and tasks, shared state
# and file leases (each scenario is described in scripts/test_web.py).
#
#   scripts/test-web.sh [--update-readme-image] [BIN_DIR]
#                           (BIN_DIR default: $CARGO_TARGET_DIR/debug)
#
# Screenshots of every view go to $CARGO_TARGET_DIR/web-screenshots/ (one
# fail-<scenario>.png per failure too). --update-readme-image also copies
# the topic view (1280x800) to docs/img/web-topic.png, the README's.
#
# Playwright (scripts/test-web.requirements.txt, pinned) is installed into
# $CARGO_TARGET_DIR/py-venv, the venv scripts/test makes for the backup
# interop step, when that file changed since the last install. The browser
# is Debian's chromium (/usr/bin/chromium; CHROMIUM=path for another), not
# Playwright's download: as root with apt it is installed when missing.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-target}
case "$target" in /*) ;; *) target="$repo/$target" ;; esac
readme_image=0
if [ "${1:-}" = "--update-readme-image" ]; then readme_image=1; shift; fi
bin_dir=${1:-$target/debug}
case "$bin_dir" in /*) ;; *) bin_dir="$PWD/$bin_dir" ;; esac
tag=test-web
. "$repo/scripts/lib/two-homes.sh"
command -v python3 >/dev/null || fail "python3 is not installed: it runs Playwright (scripts/test_web.py)"

chromium=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$chromium" ]; then
    if [ "$chromium" = /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "test-web: installing Debian's chromium (apt-get install -y chromium)"
        { apt-get install -y chromium || { apt-get update && apt-get install -y chromium; }; } >&2 \
            || fail "cannot install chromium with apt-get (see above): apt-get install chromium"
    fi
    [ -x "$chromium" ] || fail "no browser at $chromium: apt-get install chromium"
fi

py_venv "$repo/scripts/test-web.requirements.txt" playwright

shots="$target/web-screenshots"
mkdir -p "$shots"
rm -f "$shots"/*.png "$shots"/fail-*.txt

start_broker
two_homes web-test
cm --home "$work/alice" -q topic create general --description "everything else" >/dev/null \
    || fail "alice could not create the topic #general"
cm --home "$work/bob" -q topic join general >/dev/null || fail "bob could not join #general"

serve alice
alice_url=$(wait_for "$work/alice.serve.json" 'http://127\.0\.0\.1:[0-9]+' $! "alice's gateway did not start")
serve bob
bob_url=$(wait_for "$work/bob.serve.json" 'http://127\.0\.0\.1:[0-9]+' $! "bob's gateway did not start")

echo "test-web: Chromium ($chromium) against $alice_url (alice) and $bob_url (bob)"
readme_shot=()
[ $readme_image = 1 ] && readme_shot=(--readme-image "$repo/docs/img/web-topic.png")
"$py" "$repo/scripts/test_web.py" \
    --bin "$bin_dir/claudemesh" --chromium "$chromium" --screenshots "$shots" "${readme_shot[@]}" \
    "$alice_url" "$work/alice" "$bob_url" "$work/bob" \
    || fail "the web app failed in the browser (above; screenshots in $shots)"

if grep -E 'panicked|ERROR' "$work"/*.serve.log >&2; then
    fail "a gateway logged an error or a panic (above)"
fi
echo "test-web: ok (the web app works in Chromium; screenshots in $shots)"
