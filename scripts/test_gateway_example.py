#!/usr/bin/env python3
"""The Python example (examples/python/claudemesh_gateway.py) as a test.

With alice's gateway it sends bob a direct message (twice under one
Idempotency-Key: one message) and posts to a topic; with bob's it reads
both with messages() and with events(), resumes events() after the first
one's id and gets the second and nothing twice, follows a stream through a
dropped connection (a proxy cuts it; the example reconnects with
Last-Event-ID), marks them read and sees alice's `status` event say so;
and checks that errors raise GatewayError with the CLI's exit code.

Usage: test_gateway_example.py <alice URL> <alice key> <bob URL> <bob key>
(scripts/test-gateway.sh starts the broker and both gateways).
"""

import importlib.util
import os
import queue
import socket
import sys
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(HERE, "..", "examples", "python", "claudemesh_gateway.py")
spec = importlib.util.spec_from_file_location("claudemesh_gateway", EXAMPLE)
cg = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cg)

TIMEOUT = 30
checks = 0


def check(cond, what):
    global checks
    if not cond:
        raise AssertionError(what)
    checks += 1


def raises(fn, status, code):
    try:
        fn()
    except cg.GatewayError as e:
        check(e.status == status and e.code == code, f"want HTTP {status} code {code}, got {e!r}: {e}")
        return e
    raise AssertionError(f"no GatewayError (want HTTP {status}, code {code})")


def until(what, fn, timeout=TIMEOUT):
    """fn() until it returns something true; its value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def collect(gen, stop, timeout=TIMEOUT):
    """Reads events from gen (in a thread, so a stream that stays silent
    cannot hang the test) until stop(events) is true."""
    q = queue.Queue()
    done = threading.Event()

    def run():
        try:
            for e in gen:
                q.put(e)
                if done.is_set():
                    break
        except Exception as e:  # reported to the test
            q.put(e)
        gen.close()

    threading.Thread(target=run, daemon=True).start()
    got = []
    deadline = time.monotonic() + timeout
    try:
        while not stop(got):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out; events so far: {got}")
            try:
                e = q.get(timeout=left)
            except queue.Empty:
                continue
            if isinstance(e, Exception):
                raise e
            got.append(e)
    finally:
        done.set()
    return got


def inbox_all(gw, **kw):
    """Every message (paging with the cursor)."""
    out, after = [], 0
    while True:
        page = gw.messages(after=after, limit=500, **kw)
        out += page["messages"]
        if not page["messages"]:
            return out
        after = page["next_cursor"]


class CuttingProxy:
    """A TCP proxy to `upstream` that sets the Host header to upstream's
    (the gateway answers only its own names) and, when cut() is called,
    closes the connections open now. It keeps the request heads it saw."""

    def __init__(self, upstream):
        host, port = upstream.split("://", 1)[1].split(":")
        self.upstream = (host, int(port))
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(8)
        self.url = "http://127.0.0.1:%d" % self.server.getsockname()[1]
        self.heads = []
        self.open = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            client, _ = self.server.accept()
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client):
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(4096)
            if not chunk:
                client.close()
                return
            head += chunk
        head, rest = head.split(b"\r\n\r\n", 1)
        lines = [
            b"Host: %s:%d" % (self.upstream[0].encode(), self.upstream[1])
            if line.lower().startswith(b"host:")
            else line
            for line in head.split(b"\r\n")
        ]
        self.heads.append(b"\r\n".join(lines).decode("latin-1"))
        up = socket.create_connection(self.upstream)
        up.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + rest)
        self.open.append((client, up))

        def pump(a, b):
            try:
                while True:
                    data = a.recv(65536)
                    if not data:
                        break
                    b.sendall(data)
            except OSError:
                pass
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        threading.Thread(target=pump, args=(up, client), daemon=True).start()
        pump(client, up)

    def cut(self):
        for pair in self.open:
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self.open = []


def main(alice_url, alice_key, bob_url, bob_key):
    alice = cg.Gateway(alice_url, alice_key)
    bob = cg.Gateway(bob_url, bob_key)
    tag = uuid.uuid4().hex[:8]

    # Who is there.
    mesh = alice.meshes()
    check(len(mesh) == 1 and mesh[0]["display_name"] == "alice", f"meshes: {mesh}")
    check({"alice", "bob"} <= {p["name"] for p in alice.peers()}, "peers lists alice and bob")
    check(bob.profile()["name"] == "bob", "bob's profile")
    bob.set_profile(status="working", summary=f"testing {tag}")
    me = bob.profile()
    check(me["status"] == "working" and me["summary"] == f"testing {tag}", f"profile: {me}")
    # Back to idle: a `working` session is pushed only `now` messages live.
    check(bob.set_profile(status="idle")["status"] == "idle", "bob idle again")

    # A topic both are in (a name with a `/` goes as one path segment).
    topic = f"example/{tag}"
    check(alice.create_topic(topic, description="the example's")["name"] == topic, "topic created")
    until("bob to see the topic", lambda: any(t["name"] == topic for t in bob.topics()))
    check(bob.join_topic(topic)["joined"], "bob joined the topic")

    # A direct message, sent twice under one Idempotency-Key: one message.
    key = str(uuid.uuid4())
    dm = alice.send("bob", f"hello bob {tag}", idempotency_key=key)
    again = alice.send("bob", f"hello bob {tag}", idempotency_key=key)
    check(again["id"] == dm["id"] and again["duplicate"] and not dm["duplicate"], f"retry: {dm} {again}")
    raises(lambda: alice.send("bob", "another body", idempotency_key=key), 409, 6)
    post = alice.post(topic, f"deployed {tag}", priority="low")
    check(post["to"] == f"#{topic}", f"post: {post}")
    ids = {dm["id"], post["id"]}

    # Bob reads them from his inbox...
    def both_arrived():
        got = {m["id"]: m for m in inbox_all(bob) if m["id"] in ids}
        return got if len(got) == 2 else None

    got = until("bob's inbox to hold both", both_arrived)
    check(got[dm["id"]]["body"] == f"hello bob {tag}" and got[dm["id"]]["from_name"] == "alice", "the DM")
    check(got[post["id"]]["target"] == f"#{topic}" and got[post["id"]]["priority"] == "low", "the post")
    only_topic = bob.messages(topic=topic, unread=False)["messages"]
    check([m["id"] for m in only_topic] == [post["id"]], f"messages(topic=): {only_topic}")
    history = bob.history(topic)["messages"]
    check(any(m["id"] == post["id"] for m in history), "the topic's history holds the post")

    # ...and as events: everything kept, from the start.
    def seen_both(events):
        return ids <= {d["id"] for _, _, d in events}

    stream = bob.events(last_event_id=0, kinds=["message"])
    events = collect(stream, seen_both)
    event_ids = [i for i, _, _ in events]
    check(event_ids == sorted(set(event_ids)), "event ids increase, none twice")
    check(all(k == "message" for _, k, _ in events), "only the kind asked for")
    first = next(i for i, _, d in events if d["id"] in ids)
    second = next(i for i, _, d in events if d["id"] in ids and i != first)

    # Resumed after the first: the second comes, the first does not again.
    stream = bob.events(last_event_id=first, kinds="message")
    resumed = collect(stream, lambda ev: any(i == second for i, _, _ in ev))
    check(all(i > first for i, _, _ in resumed), f"resumed after {first}: {[i for i, _, _ in resumed]}")
    check(len({i for i, _, _ in resumed}) == len(resumed), "nothing twice after resuming")

    # A dropped connection: the example reconnects with Last-Event-ID.
    proxy = CuttingProxy(bob_url)
    via = cg.Gateway(proxy.url, bob_key)
    stream = via.events(last_event_id=second, kinds=["message"], read_timeout=10)
    q = queue.Queue()
    threading.Thread(target=lambda: [q.put(e) for e in stream], daemon=True).start()

    def next_about(msg):
        """Events from q until the one of msg; none of them seen before."""
        while True:
            event = q.get(timeout=TIMEOUT)
            check(event[0] > second, f"after the cut, nothing old again: {event}")
            if event[2]["id"] == msg["id"]:
                return event

    one = alice.send("bob", f"before the cut {tag}")
    e1 = next_about(one)
    proxy.cut()
    two = alice.send("bob", f"after the cut {tag}")
    e2 = next_about(two)
    check(e2[0] > e1[0], f"the event after the cut: {e2}")
    check(len(proxy.heads) >= 2, "it reconnected")
    check(f"last-event-id: {e1[0]}" in proxy.heads[-1].lower(), f"with Last-Event-ID: {proxy.heads[-1]}")

    # Marked read: alice's status events say so, proven by bob's signed
    # `shown` receipt.
    status_stream = alice.events(last_event_id=0, kinds=["status"])
    marked = bob.mark_read(ids=[dm["id"]])
    check(marked["marked"] == 1, f"mark_read: {marked}")

    def read_by_bob(events):
        return any(
            d.get("id") == dm["id"] and any(r.get("state") == "shown" and r.get("proven") == "shown" for r in d.get("recipients", []))
            for _, _, d in events
        )

    collect(status_stream, read_by_bob)
    detail = alice.message(dm["id"])
    check(detail["delivery"]["recipients"][0]["state"] == "shown", f"message(): {detail}")
    check(bob.message(dm["id"])["received"][0]["read"], "bob's copy is read")

    # The conversation, both ways, newest first; the safety number, the
    # same on both sides; an invite.
    convo = alice.conversation("bob", limit=500)["messages"]
    check(convo[0]["id"] == two["id"] and convo[0]["you"], f"conversation(): {convo[:1]}")
    check(any(m["id"] == dm["id"] for m in convo), "the conversation holds the first DM")
    check(bob.conversation("alice", limit=1)["messages"][0]["id"] == two["id"], "bob's side too")
    number = alice.safety("bob")["safety_number"]
    check(number == bob.safety("alice")["safety_number"] and len(number.split(" ")) == 12, number)
    check(alice.verify("bob")["verified"] and alice.safety("bob")["verified"], "verified")
    inv = alice.invite(uses=2, expires_in=3600)
    check(inv["max_uses"] == 2 and "#" in inv["url"] and inv["qr"].startswith("data:image/svg+xml"), f"{inv}")

    # Errors carry the CLI's exit codes.
    e = raises(lambda: alice.send("nobody-" + tag, "hello?"), 404, 5)
    check(e.kind == "not_found" and "nobody" in e.detail, f"{e.kind}: {e.detail}")
    raises(lambda: alice.send("bob", ""), 400, 3)
    raises(lambda: alice.create_topic(topic), 409, 6)
    raises(lambda: bob.join_topic(f"no-such-{tag}"), 404, 5)
    raises(lambda: cg.Gateway(bob_url, "cmk_000000000000_wrong").peers(), 401, 2)
    raises(lambda: next(bob.events(kinds=["nonsense"])), 400, 3)
    down = socket.socket()
    down.bind(("127.0.0.1", 0))
    port = down.getsockname()[1]
    down.close()
    e = raises(lambda: cg.Gateway(f"http://127.0.0.1:{port}", bob_key).peers(), None, 4)
    check(e.kind == "network", "an unreachable gateway is a network error")

    print(f"test_gateway_example: ok ({checks} checks)")


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    main(*sys.argv[1:])
