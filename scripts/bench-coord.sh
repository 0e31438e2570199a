#!/usr/bin/env bash
# Tasks, shared state and file lease figures (docs/benchmarks.md), from
# release binaries:
#     cargo build --release -p claudemesh -p claudemesh-broker && scripts/bench-coord.sh
# Alice creates N tasks (N=500 by default, one CLI call each); bob's first
# `task list` (sync and verify N tasks), a later one, a claim; alice and bob
# race for one task (exactly one must win, the other exit 12); state sets
# with --if-version and gets; lease takes, a conflicting take (exit 12) and
# a check. Each step timed from the shell, wall clock, so each figure holds
# process start, the hello and the log check; `peer list` is the baseline.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
bin_dir=${1:-$target/release}
tag=bench-coord
. "$repo/scripts/lib/two-homes.sh"
N=${N:-500}
start_broker
two_homes figs
ms() { local s e; s=$(date +%s%N); "$@" >/dev/null; e=$(date +%s%N); echo $(( (e - s) / 1000000 )); }
A=(--home "$work/alice" -q)
B=(--home "$work/bob" -q)
echo "baseline peer list: $(ms cm "${B[@]}" peer list) ms"
s=$(date +%s%N)
for i in $(seq "$N"); do
  cm "${A[@]}" task create "task $i: check service $i" --tags "n$((i % 10))" >/dev/null
done
e=$(date +%s%N)
echo "task create x$N: $(( (e - s) / 1000000 / N )) ms per CLI call"
echo "first task list (sync + verify $N tasks): $(ms cm "${B[@]}" task list) ms"
for k in 1 2; do echo "task list again: $(ms cm "${B[@]}" task list) ms"; done
id=$(cm --home "$work/alice" --json task list --tags n3 | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"][:8])')
echo "task claim: $(ms cm "${B[@]}" task claim "$id") ms"
echo "task complete: $(ms cm "${B[@]}" task complete "$id" --result done) ms"
# A race: alice and bob claim one task at once; exactly one wins.
race=$(cm --home "$work/alice" --json task list --tags n4 | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"][:8])')
set +e
cm "${A[@]}" task claim "$race" & pa=$!
cm "${B[@]}" task claim "$race" & pb=$!
wait $pa; ra=$?; wait $pb; rb=$?
set -e
[ $(( (ra == 0) + (rb == 0) )) -eq 1 ] && [ $(( (ra == 12) + (rb == 12) )) -eq 1 ] \
    || fail "a race for one task: exit codes $ra and $rb, want one 0 and one 12"
echo "race for one task: exits $ra and $rb (one winner)"
echo "state set (new key): $(ms cm "${A[@]}" state set build 1 --if-version 0) ms"
s=$(date +%s%N)
for v in $(seq 1 50); do cm "${A[@]}" state set build "$((v + 1))" --if-version "$v" >/dev/null; done
e=$(date +%s%N)
echo "state set --if-version x50: $(( (e - s) / 1000000 / 50 )) ms per call"
echo "state get (other device): $(ms cm "${B[@]}" state get build) ms"
[ "$(cm --home "$work/bob" state get build 2>/dev/null)" = "51" ] || fail "state get build is not 51"
mkdir -p "$work/checkout/.git" "$work/checkout/src/net"
printf 'ref: refs/heads/main\n' > "$work/checkout/.git/HEAD"
cd "$work/checkout"
echo "lease take: $(ms cm "${A[@]}" lease take src/net/ --reason bench) ms"
for i in $(seq 1 20); do cm "${A[@]}" lease take "docs$i/" >/dev/null; done
set +e
s=$(date +%s%N); cm "${B[@]}" lease take src/net/a.rs 2>/dev/null; rc=$?; e=$(date +%s%N)
set -e
[ "$rc" -eq 12 ] || fail "a conflicting lease take exited $rc, want 12"
echo "conflicting lease take (21 live leases, exit 12): $(( (e - s) / 1000000 )) ms"
set +e
s=$(date +%s%N); cm "${B[@]}" lease check src/net/a.rs >/dev/null 2>&1; e=$(date +%s%N)
set -e
echo "lease check (21 live leases): $(( (e - s) / 1000000 )) ms"
du -h "$work/broker.db"
