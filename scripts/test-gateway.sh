#!/usr/bin/env bash
# Tests the local gateway (`claudemesh serve`) over HTTP, end to end: a broker
# on a temporary SQLite database, alice (who creates a mesh) and bob (who
# joins it), an API key and a gateway each; then
#
#  (a) schemathesis fuzzes alice's gateway from its own OpenAPI document
#      (/api-docs/openapi.json): no 5xx, every status, content type, header
#      and body as documented, schema-invalid input refused, the key
#      required; every route but the endless /api/v1/events;
#  (b) scripts/test_gateway_example.py runs the Python example
#      (examples/python/claudemesh_gateway.py) against both gateways:
#      messages, topics, events resumed with Last-Event-ID, errors.
#
#   scripts/test-gateway.sh [BIN_DIR]     (default: $CARGO_TARGET_DIR/debug)
#
# schemathesis (scripts/test-gateway.requirements.txt, pinned) is installed
# into $CARGO_TARGET_DIR/py-venv, the venv scripts/test makes for the backup
# interop step, when that file changed since the last install. Each run
# draws new random cases; a failure prints its seed and a curl command that
# reproduces it.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-target}
case "$target" in /*) ;; *) target="$repo/$target" ;; esac
bin_dir=${1:-$target/debug}
case "$bin_dir" in /*) ;; *) bin_dir="$PWD/$bin_dir" ;; esac
tag=test-gateway
. "$repo/scripts/lib/two-homes.sh"
command -v python3 >/dev/null || fail "python3 is not installed: it runs schemathesis and the Python example"
py_venv "$repo/scripts/test-gateway.requirements.txt" schemathesis
start_broker
two_homes gw-test
alice_key=$(cm --home "$work/alice" apikey create fuzz --cap read,send,admin 2>/dev/null | tail -n1)
bob_key=$(cm --home "$work/bob" apikey create example --cap read,send,admin 2>/dev/null | tail -n1)

# Alice's gateway allows far more than the default 50 requests a second: the
# fuzzer is faster than that, and 429 would answer most of its cases.
serve alice --rate 100000
alice_url=$(wait_for "$work/alice.serve.json" 'http://127\.0\.0\.1:[0-9]+' $! "alice's gateway did not start")
serve bob
bob_url=$(wait_for "$work/bob.serve.json" 'http://127\.0\.0\.1:[0-9]+' $! "bob's gateway did not start")

# Things for the fuzzer to find (a topic both are in, messages each way);
# their names and ids go into its dictionaries, so some cases reach past
# "not found".
"$py" - "$repo" "$alice_url" "$alice_key" "$bob_url" "$bob_key" >"$work/schemathesis.toml" <<'EOF' \
    || fail "could not set the mesh up for the fuzzer"
import sys
sys.path.insert(0, sys.argv[1] + "/examples/python")
from claudemesh_gateway import Gateway
alice, bob = Gateway(*sys.argv[2:4]), Gateway(*sys.argv[4:6])
alice.create_topic("fuzz", description="for the fuzzer")
bob.join_topic("fuzz")
ids = [alice.send("bob", "to bob")["id"], alice.post("fuzz", "to #fuzz")["id"],
       bob.send("alice", "to alice")["id"]]
q = lambda xs: "[" + ", ".join(f'"{x}"' for x in xs) + "]"
print(f"""[dictionaries]
topics = {{ values = {q(["fuzz", "gw-test", "nosuch"])} }}
groups = {{ values = {q(["eng", "eng/backend"])} }}
ids = {{ values = {q(ids)} }}
recipients = {{ values = {q(["bob", "alice", "bob@serve", "#fuzz", "@eng", "*"])} }}
peers = {{ values = {q(["bob", "alice", "bob@serve", "nobody"])} }}

[parameters]
"path.topic" = {{ dictionary = "topics", probability = 0.5 }}
"path.group" = {{ dictionary = "groups", probability = 0.5 }}
"path.id" = {{ dictionary = "ids", probability = 0.5 }}
"path.peer" = {{ dictionary = "peers", probability = 0.5 }}
"query.topic" = {{ dictionary = "topics", probability = 0.5 }}
"query.before" = {{ dictionary = "ids", probability = 0.5 }}
"body.to" = {{ dictionary = "recipients", probability = 0.7 }}
"body.reply_to" = {{ dictionary = "ids", probability = 0.5 }}
"body.ids[*]" = {{ dictionary = "ids", probability = 0.5 }}
"body.name" = {{ dictionary = "topics", probability = 0.3 }}
""")
EOF

# (a) Every check but positive_data_acceptance: the API refuses input its
# schema cannot express (a topic or group name's characters, a message id's
# 32 hex digits, unknown query parameters, `{}` to PATCH /profile), with 400
# as documented, and that check counts each refusal as a failure.
echo "test-gateway: schemathesis against $alice_url/api-docs/openapi.json"
(cd "$work" && "$venv/bin/schemathesis" --config-file "$work/schemathesis.toml" --no-color run \
    "$alice_url/api-docs/openapi.json" \
    --header "Authorization: Bearer $alice_key" \
    --checks all --exclude-checks positive_data_acceptance \
    --exclude-path /api/v1/events \
    --max-examples 50 --generation-database none \
    --request-timeout 20 --workers 1) \
    || fail "schemathesis found the gateway answering other than its OpenAPI document says (above)"

# (b) The Python example, against the gateways the fuzzer just used.
"$py" "$repo/scripts/test_gateway_example.py" "$alice_url" "$alice_key" "$bob_url" "$bob_key" \
    || fail "the Python example (examples/python/claudemesh_gateway.py) failed (above)"

if grep -E 'panicked|ERROR' "$work"/*.serve.log >&2; then
    fail "a gateway logged an error or a panic (above)"
fi
echo "test-gateway: ok (schemathesis: the OpenAPI document holds; the Python example works)"
