#!/usr/bin/env bash
# Tasks, shared state and file leases over HTTP (docs/benchmarks.md), from
# release binaries:
#     cargo build --release -p claudemesh -p claudemesh-broker && scripts/bench-gateway-coord.sh
# A SQLite broker, alice and bob in one mesh, a gateway each (`claudemesh
# serve`, rate limit lifted). Through the gateways, timed per request by
# the client (Python, one HTTP connection per request, loopback): alice
# creates N tasks (N=200 by default); bob's first task list (sync and
# verify N) and later ones; bob claims 50; 20 races in which alice and bob
# claim one task at once (exactly one 200 and one 409, or the run fails);
# 100 compare-and-set state writes; 20 lease takes and 20 conflicting ones
# (409); and how long a claim through alice's gateway takes to reach bob's
# page as a `coordination` event on his gateway's stream.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
bin_dir=${1:-$target/release}
tag=bench-gateway-coord
. "$repo/scripts/lib/two-homes.sh"
N=${N:-200}
start_broker
two_homes figs
alice_key=$(cm --home "$work/alice" apikey create bench --cap read,send,admin 2>/dev/null | tail -n1)
bob_key=$(cm --home "$work/bob" apikey create bench --cap read,send,admin 2>/dev/null | tail -n1)
serve alice --rate 100000
alice_url=$(wait_for "$work/alice.serve.json" 'http://127\.0\.0\.1:[0-9]+' $! "alice's gateway did not start")
serve bob --rate 100000
bob_url=$(wait_for "$work/bob.serve.json" 'http://127\.0\.0\.1:[0-9]+' $! "bob's gateway did not start")

python3 - "$alice_url" "$alice_key" "$bob_url" "$bob_key" "$N" <<'EOF'
import json, statistics, sys, threading, time, urllib.error, urllib.request

a_url, a_key, b_url, b_key, n = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])

def call(base, key, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Authorization", "Bearer " + key)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    t = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            status, text = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read()
    ms = (time.perf_counter() - t) * 1000
    return status, (json.loads(text) if text else None), ms

A = lambda *x: call(a_url, a_key, *x)
B = lambda *x: call(b_url, b_key, *x)

def wait_up(f):
    for _ in range(200):
        s, v, _ = f("GET", "/api/v1/meshes")
        if s == 200 and v and all(m.get("link") == "up" for m in v):
            return
        time.sleep(0.05)
    sys.exit("a gateway's link did not come up")
wait_up(A); wait_up(B)

def report(what, samples):
    s = sorted(samples)
    q = lambda p: s[min(len(s) - 1, int(p * len(s)))]
    print(f"{what}: n={len(s)} p50 {q(0.5):.1f} ms, p95 {q(0.95):.1f} ms, max {s[-1]:.1f} ms")

def expect(status, want, what, body):
    if status != want:
        sys.exit(f"{what}: {status}, want {want}: {body}")

ids, t = [], []
for i in range(n):
    s, v, ms = A("POST", "/api/v1/tasks", {"title": f"task {i}: check service {i}", "tags": [f"n{i % 10}"]})
    expect(s, 201, "create", v); ids.append(v["id"]); t.append(ms)
report(f"POST /tasks (create) x{n}", t)
s, v, ms = B("GET", "/api/v1/tasks")
expect(s, 200, "list", v)
print(f"first GET /tasks on bob's gateway (sync + verify {n}): {ms:.1f} ms")
report("later GET /tasks", [B("GET", "/api/v1/tasks")[2] for _ in range(5)])

t = []
for tid in ids[:50]:
    s, v, ms = B("POST", f"/api/v1/tasks/{tid}/claim", {})
    expect(s, 200, "claim", v); t.append(ms)
report("POST /tasks/{id}/claim", t)

wins = []
for tid in ids[50:70]:
    out = {}
    def go(who, f):
        out[who] = f("POST", f"/api/v1/tasks/{tid}/claim", {})[0]
    th = [threading.Thread(target=go, args=(w, f)) for w, f in (("a", A), ("b", B))]
    [x.start() for x in th]; [x.join() for x in th]
    if sorted(out.values()) != [200, 409]:
        sys.exit(f"race for {tid}: {out}, want one 200 and one 409")
    wins.append(out["a"] == 200)
print(f"20 claim races through two gateways: one winner each time (alice won {sum(wins)}, bob {20 - sum(wins)})")

t = []
s, v, ms = A("PUT", "/api/v1/state/build", {"value": 0, "if_version": 0})
expect(s, 200, "state put", v)
for ver in range(1, 101):
    s, v, ms = A("PUT", "/api/v1/state/build", {"value": ver, "if_version": ver})
    expect(s, 200, "state put", v); t.append(ms)
report("PUT /state/{key} with if_version", t)
s, v, ms = B("GET", "/api/v1/state/build")
expect(s, 200, "state get", v)
if v["value"] != 100:
    sys.exit(f"bob reads {v['value']}, want 100")
print(f"GET /state/{{key}} on bob's gateway after 101 writes: {ms:.1f} ms")

t, c = [], []
for i in range(20):
    s, v, ms = A("POST", "/api/v1/leases", {"repo": "github.com/example/app", "paths": [f"src/m{i}/"], "reason": "bench"})
    expect(s, 201, "lease take", v); t.append(ms)
    s, v, ms = B("POST", "/api/v1/leases", {"repo": "github.com/example/app", "paths": [f"src/m{i}/a.rs"]})
    expect(s, 409, "conflicting lease take", v); c.append(ms)
report("POST /leases (take)", t)
report("POST /leases, in the way (409)", c)

# A claim through alice's gateway, heard on bob's stream.
events, ready = [], threading.Event()
def listen():
    req = urllib.request.Request(b_url + "/api/v1/events?kinds=coordination")
    req.add_header("Authorization", "Bearer " + b_key)
    with urllib.request.urlopen(req, timeout=120) as r:
        ready.set()
        for line in r:
            if line.startswith(b"event: coordination"):
                events.append(time.perf_counter())
threading.Thread(target=listen, daemon=True).start()
ready.wait(10)
time.sleep(0.3)
lat = []
for tid in ids[70:90]:
    before = len(events)
    sent = time.perf_counter()
    s, v, _ = A("POST", f"/api/v1/tasks/{tid}/claim", {})
    expect(s, 200, "claim", v)
    deadline = time.perf_counter() + 5
    while len(events) == before and time.perf_counter() < deadline:
        time.sleep(0.001)
    if len(events) == before:
        sys.exit("no coordination event on bob's stream within 5 s")
    lat.append((events[before] - sent) * 1000)
    time.sleep(0.2)  # past the coalescing window, so each claim is heard on its own
report("claim sent to alice's gateway -> event on bob's stream", lat)
EOF
du -h "$work/broker.db"
