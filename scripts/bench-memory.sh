#!/usr/bin/env bash
# Team memory figures (docs/benchmarks.md), from release binaries:
#     cargo build --release -p claudemesh -p claudemesh-broker && scripts/bench-memory.sh
# Alice remembers N notes (N=1000 by default, one CLI call each); then bob's
# first recall (connect + first sync of N notes + FTS5 search), later
# recalls (incremental sync), a tag listing, and a connect-only baseline
# (peer list), each timed from the shell, wall clock.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
bin_dir=${1:-$target/release}
tag=bench-memory
. "$repo/scripts/lib/two-homes.sh"
N=${N:-1000}
start_broker
two_homes figs
ms() { local s e; s=$(date +%s%N); "$@" >/dev/null; e=$(date +%s%N); echo $(( (e - s) / 1000000 )); }
s=$(date +%s%N)
for i in $(seq "$N"); do
  cm --home "$work/alice" -q memory remember "note $i: the service number $i listens on port $((5000 + i)) in staging" --tags "infra,n$((i % 10))" >/dev/null
done
e=$(date +%s%N)
echo "remember x$N: $(( (e - s) / 1000000 )) ms total, $(( (e - s) / 1000000 / N )) ms per CLI call"
echo "baseline peer list: $(ms cm --home "$work/bob" peer list) ms"
echo "first recall (sync $N notes + search): $(ms cm --home "$work/bob" memory recall 'port 5500') ms"
for k in 1 2 3; do echo "recall again: $(ms cm --home "$work/bob" memory recall 'staging service 77') ms"; done
echo "list --tags n3 --limit 20: $(ms cm --home "$work/bob" memory list --tags n3 --limit 20) ms"
cm --home "$work/bob" --json memory recall 'port 5500' --limit 1 | grep -q '"note 500: ' \
    || fail "recall 'port 5500' did not put note 500 first"
du -h "$work/broker.db"
