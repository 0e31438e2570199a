#!/usr/bin/env python3
"""A small client of claudemesh's local gateway (`claudemesh serve`).

Standard library only (urllib, json). The gateway holds the keys and does
the crypto; this talks plain HTTP to it on loopback. See docs/api.md.

    from claudemesh_gateway import Gateway, GatewayError

    gw = Gateway("http://127.0.0.1:7901", key)   # a key from `claudemesh apikey create`
    gw.send("bob", "the build is green")
    for event_id, kind, data in gw.events(kinds=["message"]):
        print(data["from_name"], data["body"])

Every method returns the JSON the gateway answered, parsed (a dict or a
list); a failure raises GatewayError with the fields of the answer's
problem+json body (`code` is the exit code the `claudemesh` CLI would give).

As a command (reads CLAUDEMESH_GATEWAY, default http://127.0.0.1:7901, and
CLAUDEMESH_API_KEY):

    python3 claudemesh_gateway.py watch [KINDS]    # print events as they come
    python3 claudemesh_gateway.py send <to> <text> # print the message id
    python3 claudemesh_gateway.py inbox            # print unread messages
    python3 claudemesh_gateway.py peers            # print members and presence
"""

import http.client
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

DEFAULT_URL = "http://127.0.0.1:7901"


class GatewayError(Exception):
    """A refusal or failure, with the fields of the gateway's problem+json.

    status: the HTTP status (None when the gateway could not be reached);
    code: the claudemesh exit code for the same failure (2 refused, 3 usage,
    4 network, 5 not found, 6 exists, 7 denied, ...); kind: its name;
    detail: what happened; hint: what to do next, or None; retry_after:
    seconds to wait (429, 503), or None.
    """

    def __init__(self, status, code, kind, detail, hint=None, retry_after=None):
        super().__init__(detail)
        self.status = status
        self.code = code
        self.kind = kind
        self.detail = detail
        self.hint = hint
        self.retry_after = retry_after

    def __str__(self):
        where = f"HTTP {self.status}, " if self.status else ""
        return f"{self.detail} ({where}{self.kind}, code {self.code})"


def _error_from(e):
    """A GatewayError from urllib's HTTPError (its body is problem+json)."""
    raw = e.read()
    try:
        p = json.loads(raw)
    except ValueError:
        p = {}
    if not isinstance(p, dict):
        p = {}
    retry_after = p.get("retry_after")
    if retry_after is None and e.headers.get("Retry-After", "").isdigit():
        retry_after = int(e.headers["Retry-After"])
    return GatewayError(
        status=e.code,
        code=p.get("code", 1),
        kind=p.get("kind", "failure"),
        detail=p.get("detail") or raw.decode("utf-8", "replace").strip() or e.reason,
        hint=p.get("hint"),
        retry_after=retry_after,
    )


def _unreachable(base_url, e):
    reason = getattr(e, "reason", e)
    return GatewayError(
        status=None,
        code=4,
        kind="network",
        detail=f"cannot reach the gateway at {base_url}: {reason}",
        hint="is `claudemesh serve` running there?",
    )


def _segment(name):
    """A name as one path segment (`eng/backend` -> `eng%2Fbackend`)."""
    return urllib.parse.quote(name, safe="")


class Gateway:
    """The gateway at `base_url`, called with one API key."""

    def __init__(self, base_url=DEFAULT_URL, key=None, timeout=30):
        self.base_url = base_url.rstrip("/")
        self.key = key
        self.timeout = timeout

    # -- plumbing ---------------------------------------------------------

    def _open(self, method, path, query=None, body=None, headers=None, timeout=None):
        url = self.base_url + path
        if query:
            query = {k: v for k, v in query.items() if v is not None}
            url += "?" + urllib.parse.urlencode(query)
        h = {"Accept": "application/json"}
        if self.key:
            h["Authorization"] = f"Bearer {self.key}"
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        req = urllib.request.Request(url, data=data, headers=h, method=method)
        try:
            return urllib.request.urlopen(req, timeout=timeout or self.timeout)
        except urllib.error.HTTPError as e:
            raise _error_from(e) from None
        except (urllib.error.URLError, OSError) as e:
            raise _unreachable(self.base_url, e) from None

    def _call(self, method, path, query=None, body=None, headers=None):
        with self._open(method, path, query, body, headers) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    @staticmethod
    def _bool(b):
        return "true" if b else "false"

    # -- the mesh and its members -----------------------------------------

    def meshes(self):
        """The key's mesh (a list of one), with the link and the unread count."""
        return self._call("GET", "/api/v1/meshes")

    def peers(self):
        """Every member, with presence and sessions."""
        return self._call("GET", "/api/v1/peers")

    def profile(self):
        """This member: name, key, session, status, summary."""
        return self._call("GET", "/api/v1/profile")

    def set_profile(self, status=None, summary=None):
        """Sets the status (`idle`, `working`, `dnd`) and/or the summary."""
        body = {k: v for k, v in (("status", status), ("summary", summary)) if v is not None}
        return self._call("PATCH", "/api/v1/profile", body=body)

    def safety(self, peer):
        """The safety number with a peer, to compare out of band:
        {"name", "key", "safety_number", "groups", "qr", "verified", "key_changed"}."""
        return self._call("GET", f"/api/v1/peers/{_segment(peer)}/safety")

    def verify(self, peer):
        """Marks a peer's key verified (once the safety numbers match)."""
        return self._call("POST", f"/api/v1/peers/{_segment(peer)}/verify", body={})

    def invite(self, uses=None, expires_in=None, role=None):
        """Makes an invite (a key with `admin`, a member who may invite):
        {"url", "app_url", "id", "expires_at", "max_uses", "role", "qr"}."""
        body = {
            k: v
            for k, v in (("uses", uses), ("expires_in", expires_in), ("role", role))
            if v is not None
        }
        return self._call("POST", "/api/v1/invites", body=body)

    # -- messages ---------------------------------------------------------

    def messages(self, unread=True, after=0, limit=100, topic=None):
        """A page of the inbox, oldest first: {"messages": [...], "next_cursor": n}.

        Pass next_cursor as `after` to get the page after it."""
        query = {"unread": self._bool(unread), "after": after, "limit": limit, "topic": topic}
        return self._call("GET", "/api/v1/messages", query=query)

    def send(self, to, body, priority="next", reply_to=None, idempotency_key=None):
        """Sends to a peer's name, `#topic`, `@group` or `*`: {"id", "seq", "duplicate", "to", ...}.

        With an idempotency_key, a retry of the same send is the same message
        (`duplicate` is then true), never a second one."""
        msg = {"to": to, "body": body, "priority": priority}
        if reply_to is not None:
            msg["reply_to"] = reply_to
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self._call("POST", "/api/v1/messages", body=msg, headers=headers)

    def message(self, id):
        """One message: {"id", "received": [...], "delivery": {...} or None}."""
        return self._call("GET", f"/api/v1/messages/{_segment(id)}")

    def mark_read(self, ids=None, up_to=None):
        """Marks these ids, and/or every unread message up to a cursor, read: {"marked": n}."""
        body = {}
        if ids is not None:
            body["ids"] = list(ids)
        if up_to is not None:
            body["up_to"] = up_to
        return self._call("POST", "/api/v1/messages/read", body=body)

    def conversation(self, peer, limit=50, before=None):
        """The direct messages with a peer, both ways, newest first:
        {"peer", "key", "messages": [...], "more"}.

        Pass the last message's id as `before` for the older ones."""
        return self._call(
            "GET",
            f"/api/v1/conversations/{_segment(peer)}/messages",
            query={"limit": limit, "before": before},
        )

    # -- topics -----------------------------------------------------------

    def topics(self):
        """Every topic the key may see, with unread counts."""
        return self._call("GET", "/api/v1/topics")

    def create_topic(self, name, description="", private=False):
        """Creates a topic (a key with `admin`); this member is its first member."""
        body = {"name": name, "description": description, "private": private}
        return self._call("POST", "/api/v1/topics", body=body)

    def join_topic(self, topic):
        """Joins a public topic."""
        return self._call("POST", f"/api/v1/topics/{_segment(topic)}/join")

    def leave_topic(self, topic):
        """Leaves a topic."""
        return self._call("POST", f"/api/v1/topics/{_segment(topic)}/leave")

    def post(self, topic, body, priority="next", reply_to=None, idempotency_key=None):
        """Posts to a topic (as send("#topic", ...))."""
        msg = {"body": body, "priority": priority}
        if reply_to is not None:
            msg["reply_to"] = reply_to
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self._call(
            "POST", f"/api/v1/topics/{_segment(topic)}/messages", body=msg, headers=headers
        )

    def history(self, topic, limit=50, before=None):
        """A topic's stored messages, newest first: {"messages": [...], ...}.

        Pass the last message's id as `before` for the page after it."""
        return self._call(
            "GET",
            f"/api/v1/topics/{_segment(topic)}/messages",
            query={"limit": limit, "before": before},
        )

    # -- events -----------------------------------------------------------

    def events(self, last_event_id=None, kinds=None, read_timeout=60, max_wait=30):
        """Yields (id, kind, data) from the server-sent event stream, forever.

        last_event_id: resume after this event id (0: every event still kept;
        None: only new ones). kinds: e.g. ["message", "status"]. When the
        connection drops, or nothing (not even a keep-alive, sent every 15 s)
        comes for read_timeout seconds, it reconnects with the id of the last
        event it yielded, so no event is lost or repeated; it waits 1 s before
        the first retry, doubling up to max_wait (or as the server's `retry:`
        or Retry-After says). A refusal (a bad key, an unknown kind) raises
        GatewayError. data is the event's JSON, parsed. Stop by breaking out
        of the loop (or closing the generator).
        """
        query = {}
        if kinds:
            query["kinds"] = kinds if isinstance(kinds, str) else ",".join(kinds)
        last = last_event_id
        wait = 1.0
        while True:
            headers = {"Accept": "text/event-stream"}
            if last is not None:
                headers["Last-Event-ID"] = str(last)
            try:
                resp = self._open("GET", "/api/v1/events", query, None, headers, read_timeout)
                with resp:
                    wait = 1.0
                    for event_id, kind, data, retry in _parse_sse(resp):
                        if retry is not None:
                            wait = retry
                            continue
                        if event_id is not None:
                            last = event_id
                        yield _int_or(event_id), kind, _json_or(data)
                # The stream ended: the gateway stopped. Come back when it is up.
            except GatewayError as e:
                if e.status is not None and e.status not in (429, 503):
                    raise
                if e.retry_after:
                    wait = max(wait, float(e.retry_after))
            except (OSError, http.client.HTTPException):
                pass  # dropped, cut short or timed out: reconnect
            time.sleep(wait)
            wait = min(wait * 2, max_wait)


def _parse_sse(stream):
    """Yields (id, event, data, retry) per event of a text/event-stream.

    Lines are `field: value`; a blank line ends an event; lines starting with
    `:` are comments (keep-alives). `retry: <ms>` alone yields
    (None, None, None, seconds)."""
    event_id, kind, data = None, None, []
    for raw in stream:
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            if data:
                yield event_id, kind or "message", "\n".join(data), None
            event_id, kind, data = None, None, []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "id":
            event_id = value
        elif field == "event":
            kind = value
        elif field == "data":
            data.append(value)
        elif field == "retry" and value.isdigit():
            yield None, None, None, int(value) / 1000


def _int_or(s):
    try:
        return int(s)
    except (TypeError, ValueError):
        return s


def _json_or(s):
    try:
        return json.loads(s)
    except ValueError:
        return s


# -- the command ------------------------------------------------------------


def _show(event_id, kind, data):
    if kind == "message" and isinstance(data, dict):
        to = data.get("target", "")
        to = to if to.startswith(("#", "@", "*")) else "you"
        return f"[{event_id}] {data.get('from_name')} -> {to}: {data.get('body')}"
    return f"[{event_id}] {kind}: {json.dumps(data, separators=(',', ':'))}"


def main(argv):
    usage = "usage: claudemesh_gateway.py watch [KINDS] | send <to> <text> | inbox | peers"
    key = os.environ.get("CLAUDEMESH_API_KEY")
    if not key:
        print("error: set CLAUDEMESH_API_KEY to a key from `claudemesh apikey create`", file=sys.stderr)
        return 3
    gw = Gateway(os.environ.get("CLAUDEMESH_GATEWAY", DEFAULT_URL), key)
    cmd, args = (argv[0], argv[1:]) if argv else ("", [])
    try:
        if cmd == "watch" and len(args) <= 1:
            for event in gw.events(kinds=args[0] if args else None):
                print(_show(*event), flush=True)
        elif cmd == "send" and len(args) == 2:
            # A fresh Idempotency-Key: were this request retried, the
            # gateway would send the message once.
            sent = gw.send(args[0], args[1], idempotency_key=str(uuid.uuid4()))
            print(sent["id"])
        elif cmd == "inbox" and not args:
            for m in gw.messages()["messages"]:
                print(f"{m['from_name']} ({m['target']}): {m['body']}")
        elif cmd == "peers" and not args:
            for p in gw.peers():
                state = "online" if p.get("online") else "offline"
                print(f"{p['name']} ({p['role']}, {state}, {p['status']})")
        else:
            print(usage, file=sys.stderr)
            return 3
    except GatewayError as e:
        print(f"error: {e}", file=sys.stderr)
        if e.hint:
            print(f"hint: {e.hint}", file=sys.stderr)
        return e.code or 1
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
