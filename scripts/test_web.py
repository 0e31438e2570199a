#!/usr/bin/env python3
"""The web app (`claudemesh serve` at `/`) in a real browser.

Run by scripts/test-web.sh, which starts a broker, alice's and bob's homes
(a mesh, the topic #general with both in it) and a gateway for each:

    test_web.py [--bin CLAUDEMESH] [--chromium PATH] [--screenshots DIR]
                [--readme-image PNG] ALICE_URL ALICE_HOME BOB_URL BOB_HOME

Headless Chromium (Playwright, sync API; Debian's chromium, never a
download): alice's page on alice's gateway and bob's on bob's, each in its
own browser context, signed in with its own `claudemesh serve open --json`
link. The scenarios run in order and print `ok <name>`; a failure prints
`FAIL <name>: <why>` (one line; details and a screenshot of each page in
the screenshots directory as fail-<name>.*) and the run goes on; the exit
status is the number of failures (at most 100).

Each view is photographed into the screenshots directory; --readme-image
PNG also writes alice's topic view with a thread (1280x800) to PNG (the
README's docs/img/web-topic.png).

The page, its sign-in and its safety are described in docs/web.md; the
routes and data-testid names used here are those of
crates/gateway/assets/web/app.js.
"""

import argparse
import http.server
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request
from pathlib import Path

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect, sync_playwright

XSS_SCRIPT = "<script>window.__pwned=1</script>"
XSS_IMG = '<img src=x onerror="window.__pwned=1">'
SAFETY_RE = re.compile(r"\d{5}( \d{5}){11}")
TIMEOUT_MS = 10_000  # anything not measured against a tighter bound

# Watches the DOM from before the page's own script runs: any <script>
# other than the page's one file, any <img src="x">, any inline on*
# handler that appears is recorded (a page that renders peer text as text
# never makes one). Playwright injects it; the page's CSP does not apply.
WATCH_DOM = """
(() => {
  window.__badNodes = [];
  const check = (el) => {
    if (!(el instanceof Element)) return;
    for (const e of [el, ...el.querySelectorAll('*')]) {
      const tag = e.tagName.toLowerCase();
      if (tag === 'script' && e.getAttribute('src') !== '/assets/app.js')
        window.__badNodes.push('script: ' + e.outerHTML.slice(0, 120));
      if (tag === 'img' && e.getAttribute('src') === 'x')
        window.__badNodes.push('img: ' + e.outerHTML.slice(0, 120));
      for (const a of e.getAttributeNames())
        if (a.startsWith('on')) window.__badNodes.push('handler: ' + e.outerHTML.slice(0, 120));
    }
  };
  new MutationObserver((records) => {
    for (const r of records) for (const n of r.addedNodes) check(n);
  }).observe(document, { childList: true, subtree: true });
})();
"""

# The page's own way to call its API: the session cookie, the CSRF token
# from /web/session. Returns {status, json}.
API_JS = """
async ([method, path, body]) => {
  const s = await (await fetch('/web/session', { cache: 'no-store' })).json();
  const init = { method, headers: { Accept: 'application/json', 'X-CSRF-Token': s.csrf } };
  if (body !== null) { init.headers['Content-Type'] = 'application/json'; init.body = JSON.stringify(body); }
  const r = await fetch(path, init);
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch (e) { /* not JSON */ }
  return { status: r.status, json };
}
"""


class Fail(AssertionError):
    """A check that did not hold, with its one-line reason."""


def check(cond, why):
    if not cond:
        raise Fail(why)


class Web:
    def __init__(self, args, pw):
        self.args = args
        self.shots = Path(args.screenshots)
        self.shots.mkdir(parents=True, exist_ok=True)
        self.browser = pw.chromium.launch(executable_path=args.chromium, headless=True)
        self.page_errors = []
        self.contexts = []
        self.alice_ctx, self.alice, self.alice_link = self.signed_in("alice", args.alice_url, args.alice_home)
        self.bob_ctx, self.bob, self.bob_link = self.signed_in("bob", args.bob_url, args.bob_home)
        self.alice_topic_msg = None  # id of alice's first post in #general (scenario a)

    # --- set-up -------------------------------------------------------------

    def context(self, who, **kw):
        opts = dict(viewport={"width": 1280, "height": 800}, locale="en-US", timezone_id="UTC")
        opts.update(kw)
        ctx = self.browser.new_context(**opts)
        ctx.set_default_timeout(TIMEOUT_MS)
        ctx.add_init_script(WATCH_DOM)
        self.contexts.append(ctx)
        ctx.on("page", lambda p: self.watch(who, p))
        return ctx

    def watch(self, who, page):
        """Uncaught errors and CSP refusals in a page fail the run."""
        page.on("pageerror", lambda e: self.page_errors.append(f"{who}: {e}"))

        def console(msg):
            if msg.type == "error" and ("Content Security Policy" in msg.text or "Refused to" in msg.text):
                self.page_errors.append(f"{who}: {msg.text}")

        page.on("console", console)

    def serve_open(self, home):
        r = subprocess.run(
            [self.args.bin, "--home", home, "--json", "serve", "open"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
        )
        check(r.returncode == 0, f"claudemesh --home {home} --json serve open exited {r.returncode}: {r.stderr.strip()}")
        link = json.loads(r.stdout)
        check(link["url"].startswith("http://127.0.0.1:") and "/web/signin?token=" in link["url"],
              f"serve open printed an unexpected link: {link['url']}")
        check(link["expires_at"] > time.time() * 1000, f"serve open's link expires in the past: {link}")
        return link["url"]

    def signed_in(self, who, base, home):
        """A context and a page signed in with a fresh one-time link."""
        ctx = self.context(who)
        url = self.serve_open(home)
        check(url.startswith(base + "/"), f"{who}'s sign-in link {url} is not for {base}")
        page = ctx.new_page()
        resp = page.goto(url)
        check(resp is not None and resp.ok, f"{who}'s sign-in link did not land on the page")
        check(page.url == base + "/", f"{who}'s sign-in link landed on {page.url}, not {base}/")
        expect(page.locator('[data-testid=topic-link][data-topic=general]')).to_be_visible()
        cookies = [c for c in ctx.cookies() if c["name"] == "cm_web"]
        check(len(cookies) == 1, f"{who}'s sign-in set no cm_web cookie")
        c = cookies[0]
        check(c["httpOnly"] and c["sameSite"] == "Strict" and c["path"] == "/",
              f"{who}'s cookie is not HttpOnly, SameSite=Strict, Path=/: {c}")
        return ctx, page, url

    # --- helpers ------------------------------------------------------------

    def shot(self, page, name):
        page.screenshot(path=str(self.shots / f"{name}.png"))

    @staticmethod
    def go(page, hash_, testid):
        """Opens a view by its hash route (no reload) and waits for it: the
        page builds a new section for each route; the one shown before is
        marked, so a view of the same kind is not taken for the new one."""
        page.evaluate("""(h) => {
          if (location.hash === h) return;
          document.querySelectorAll('section.view').forEach((s) => s.setAttribute('data-left', ''));
          location.hash = h;
        }""", hash_)
        expect(page.locator(f"section.view[data-testid={testid}]:not([data-left])")).to_be_visible()
        expect(page.locator("#view-title")).to_be_visible()

    def open_chat(self, page, hash_, testid):
        self.go(page, hash_, testid)
        expect(page.get_by_test_id("compose")).to_be_visible()
        # The history has loaded once the list shows a message or says none.
        expect(page.locator("[data-testid=messages] [data-testid=message], [data-testid=messages] .empty").first).to_be_visible()

    @staticmethod
    def send(page, text, path):
        """Types and sends from the open view; returns the sent message's id
        once the POST to `path` is answered."""
        page.get_by_test_id("compose").fill(text)
        with page.expect_response(lambda r: r.request.method == "POST" and r.url.split("?")[0].endswith(path)) as info:
            page.get_by_test_id("send").click()
        resp = info.value
        resp.finished()
        page.sent_at = time.monotonic()
        check(resp.status == 201, f"sending from the page: POST {path} answered {resp.status}: {resp.text()[:200]}")
        expect(page.get_by_test_id("compose")).to_have_value("")
        return resp.json()["id"]

    @staticmethod
    def message(page, text):
        return page.get_by_test_id("message").filter(has=page.get_by_test_id("body").filter(has_text=text))

    @staticmethod
    def api(page, method, path, body=None):
        return page.evaluate(API_JS, [method, path, body])

    def no_script_ran(self, page, who, where):
        pwned = page.evaluate("typeof window.__pwned")
        check(pwned == "undefined", f"{who}'s page ran injected script in {where} (window.__pwned is {pwned})")
        check(page.locator('img[src="x"]').count() == 0, f'{who}\'s page has an <img src="x"> in {where}')
        bad = page.evaluate("window.__badNodes")
        check(not bad, f"{who}'s page made markup from peer text in {where}: {bad[:3]}")

    # --- a. a topic message arrives live ------------------------------------

    def topic_live(self):
        a, b = self.alice, self.bob
        self.open_chat(b, "#/topics/general", "topic-view")
        b.evaluate("window.__noReload = 1")
        self.open_chat(a, "#/topics/general", "topic-view")
        text = "The build of v1.4 is green; tagging it now."
        self.alice_topic_msg = self.send(a, text, "/api/v1/topics/general/messages")
        # Within a second of the moment alice's send was answered.
        left_ms = 1000 - (time.monotonic() - a.sent_at) * 1000
        expect(self.message(b, text)).to_be_visible(timeout=max(left_ms, 1))
        took = time.monotonic() - a.sent_at
        check(b.evaluate("window.__noReload") == 1, "bob's page reloaded to show the message")
        expect(self.message(a, text)).to_be_visible()
        check(self.message(a, text).get_attribute("data-id") == self.alice_topic_msg,
              "alice's page shows her post under another id than the API returned")
        expect(self.message(b, text).get_by_test_id("sender")).to_have_text("alice")
        self.shot(b, "topic")
        return f"bob's page showed it {took * 1000:.0f} ms after alice's send was answered"

    # --- b. unread badges -----------------------------------------------------

    def unread_badges(self):
        a, b = self.alice, self.bob
        self.go(b, "#/peers", "peers-view")
        link = b.locator("[data-testid=topic-link][data-topic=general]")
        badge = link.get_by_test_id("unread-badge")
        expect(badge).to_have_count(0)
        texts = ["Release notes are drafted.", "Who can review them before 15:00?"]
        for t in texts:
            self.send(a, t, "/api/v1/topics/general/messages")
        expect(badge).to_have_text("2", timeout=5000)
        self.shot(b, "peers")
        link.click()
        expect(b.get_by_test_id("topic-view")).to_be_visible()
        for t in texts:
            expect(self.message(b, t)).to_be_visible()
        expect(badge).to_have_count(0, timeout=5000)
        # Read for the gateway too, not only in the page.
        deadline = time.time() + 5
        while True:
            topics = self.api(b, "GET", "/api/v1/topics")["json"]
            unread = next(t["unread"] for t in topics if t["name"] == "general")
            if unread == 0 or time.time() > deadline:
                break
            time.sleep(0.2)
        check(unread == 0, f"bob's gateway still counts {unread} unread in #general after he opened it")

    # --- c. a direct message each way -----------------------------------------

    def direct_messages(self):
        a, b = self.alice, self.bob
        self.open_chat(b, "#/dm/alice", "dm-view")
        self.open_chat(a, "#/dm/bob", "dm-view")
        ask = "Could you look at PR 42 today?\nIt touches the invite flow."
        self.send(a, ask, "/api/v1/messages")
        got = self.message(b, ask)
        expect(got).to_be_visible(timeout=5000)
        check(got.get_by_test_id("body").inner_text() == ask, "bob's page lost the newline in alice's message")
        answer = "Sure, after lunch."
        self.send(b, answer, "/api/v1/messages")
        expect(self.message(a, answer)).to_be_visible(timeout=5000)
        expect(self.message(a, answer).get_by_test_id("sender")).to_have_text("bob")
        self.shot(a, "dm")

    # --- d. verifying a peer ----------------------------------------------------

    def verify(self):
        a, b = self.alice, self.bob
        self.go(a, "#/peer/bob", "verify-view")
        self.go(b, "#/peer/alice", "verify-view")
        na, nb = a.get_by_test_id("safety-number"), b.get_by_test_id("safety-number")
        expect(na).to_have_text(SAFETY_RE)
        expect(nb).to_have_text(SAFETY_RE)
        sa, sb = na.text_content(), nb.text_content()
        check(SAFETY_RE.fullmatch(sa), f"alice's safety number is not 12 groups of 5 digits: {sa!r}")
        check(sa == sb, f"the safety numbers differ: alice sees {sa!r}, bob sees {sb!r}")
        state = a.get_by_test_id("verify-state")
        expect(state).to_have_text("Not verified")
        a.get_by_test_id("mark-verified").click()
        expect(state).to_have_text("Verified")
        expect(b.get_by_test_id("verify-state")).to_have_text("Not verified")
        qr = a.get_by_role("img", name="QR code of the safety number")
        expect(qr).to_be_visible()
        check(qr.evaluate("(i) => i.complete && i.naturalWidth > 0"), "the safety number's QR image does not load")
        check(qr.get_attribute("src").startswith("data:image/"), "the QR image is not a data: image")
        self.shot(a, "verify")
        self.go(a, "#/peers", "peers-view")
        expect(a.locator("[data-testid=peer][data-peer=bob] [data-testid=peer-verified]")).to_be_visible()

    # --- the other views: invite, notifications, me, message status ------------

    def other_views(self):
        a, b = self.alice, self.bob
        self.go(a, "#/invite", "invite-view")
        a.get_by_test_id("create-invite").click()
        link = a.get_by_test_id("invite-link")
        expect(link).to_have_value(re.compile(r"\S{20,}"))
        qr = a.get_by_role("img", name="QR code of the invite link")
        expect(qr).to_be_visible()
        check(qr.evaluate("(i) => i.complete && i.naturalWidth > 0"), "the invite's QR image does not load")
        self.shot(a, "invite")
        # The link works: carol joins with it, and alice's page lists her
        # without a reload.
        url = link.input_value()
        self.go(a, "#/peers", "peers-view")
        with tempfile.TemporaryDirectory() as carol:
            r = subprocess.run([self.args.bin, "--home", carol, "-q", "join", url, "--name", "carol"],
                               stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
            check(r.returncode == 0, f"carol could not join with the web page's invite (exit {r.returncode}): {r.stderr.strip()}")
        expect(a.locator("[data-testid=peer][data-peer=carol]")).to_be_visible(timeout=5000)

        self.go(a, "#/me", "me-view")
        expect(a.get_by_test_id("me-name")).to_have_text("alice")
        expect(a.get_by_test_id("me-peer-type")).not_to_be_empty()
        self.shot(a, "me")

        check(self.alice_topic_msg, "no post of alice's from scenario a")
        self.go(a, f"#/message/{self.alice_topic_msg}", "status-view")
        rc = a.locator("[data-testid=recipient][data-name=bob]")
        expect(rc).to_be_visible()
        # Bob opened #general in scenario a: his device signed that he was
        # shown it (a watermark, via the web app).
        expect(rc.get_by_test_id("recipient-state")).to_have_text("shown", timeout=5000)
        expect(rc.get_by_test_id("recipient-proven")).to_have_text("proven: shown")
        expect(rc.get_by_test_id("recipient-proof")).to_contain_text("via web")
        expect(a.get_by_test_id("delivery-state")).to_have_text("accepted")
        self.shot(a, "status")

        # Bob on the notifications view; alice's direct message shows there
        # live, and opening it leads to the conversation.
        self.go(b, "#/notifications", "notifications-view")
        self.open_chat(a, "#/dm/bob", "dm-view")
        ping = "Ping: the staging database is back."
        self.send(a, ping, "/api/v1/messages")
        item = b.get_by_test_id("notification").filter(has_text=ping)
        expect(item).to_be_visible(timeout=5000)
        expect(b.get_by_test_id("notifications-count")).to_have_text(re.compile(r"[1-9]"))
        self.shot(b, "notifications")
        item.get_by_role("link").click()
        expect(b.get_by_test_id("dm-view")).to_be_visible()
        expect(self.message(b, ping)).to_be_visible()
        expect(b.get_by_test_id("notifications-count")).to_have_count(0, timeout=5000)

    # --- e. peer-supplied markup stays text ------------------------------------

    def xss(self):
        a, b = self.alice, self.bob
        payload = f"look {XSS_SCRIPT} and {XSS_IMG} here"
        topic_text, dm_text = payload + " (topic)", payload + " (dm)"
        self.go(a, "#/groups", "groups-view")  # not reading what bob sends
        self.open_chat(b, "#/topics/general", "topic-view")
        self.send(b, topic_text, "/api/v1/topics/general/messages")
        self.open_chat(b, "#/dm/alice", "dm-view")
        self.send(b, dm_text, "/api/v1/messages")
        # The summary, through bob's Me form (PATCH /api/v1/profile).
        self.go(b, "#/me", "me-view")
        b.get_by_test_id("me-summary").fill(payload)
        with b.expect_response(lambda r: r.request.method == "PATCH" and r.url.endswith("/api/v1/profile")) as info:
            b.get_by_test_id("me-save").click()
        check(info.value.status == 200, f"bob's PATCH /api/v1/profile answered {info.value.status}")
        expect(b.get_by_text("Saved", exact=True)).to_be_visible()
        # A topic whose description is the payload, from bob's page.
        r = self.api(b, "POST", "/api/v1/topics", {"name": "design", "description": payload})
        check(r["status"] == 201, f"bob could not create #design from his page: {r}")

        # Alice sees each where it shows: first that it is there (by a
        # plain part of it), then that nothing of it became markup, then
        # that it reads exactly as bob wrote it.
        def shown_as_text(el, text, where):
            expect(el).to_be_visible(timeout=5000)
            self.no_script_ran(a, "alice", where)
            expect(el).to_have_text(text)

        # The notification (before she opens the conversation) ...
        self.go(a, "#/notifications", "notifications-view")
        shown_as_text(a.get_by_test_id("notification").filter(has_text="(dm)").locator(".excerpt"), dm_text,
                      "the notifications view")
        # ... the topic post ...
        self.open_chat(a, "#/topics/general", "topic-view")
        shown_as_text(self.message(a, "(topic)").get_by_test_id("body"), topic_text, "the topic view")
        # ... the direct message ...
        self.open_chat(a, "#/dm/bob", "dm-view")
        shown_as_text(self.message(a, "(dm)").get_by_test_id("body"), dm_text, "the DM view")
        # ... bob's summary, on the peers view ...
        self.go(a, "#/peers", "peers-view")
        shown_as_text(a.locator("[data-testid=peer][data-peer=bob] .summary").filter(has_text="here"), payload,
                      "the peers view")
        # ... and the topic's description.
        self.go(a, "#/topics/design", "topic-view")
        shown_as_text(a.locator(".view-head .desc"), payload, "the #design topic view")
        self.no_script_ran(b, "bob", "his own views")

    # --- f. the sign-in screen, and a used link -----------------------------

    def signin(self):
        base = self.args.alice_url
        ctx = self.context("fresh", viewport={"width": 1280, "height": 800})
        try:
            page = ctx.new_page()
            page.goto(base + "/")
            expect(page.get_by_test_id("signin")).to_be_visible()
            expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
            expect(page.get_by_text("claudemesh serve open", exact=True)).to_be_visible()
            check(page.evaluate("fetch('/web/session').then((r) => r.status)") == 401,
                  "/web/session without a cookie is not 401")
            self.shot(page, "signin")

            final = page.goto(self.alice_link)  # used by alice's sign-in already
            first = final.request.redirected_from
            check(first is not None, "the used sign-in link did not redirect")
            red = first.response()
            check(red.status == 303, f"the used sign-in link answered {red.status}, not 303")
            check(red.header_value("set-cookie") is None, "the used sign-in link set a cookie")
            check(page.url == base + "/#/signin-failed", f"the used sign-in link led to {page.url}")
            expect(page.get_by_test_id("signin")).to_be_visible()
            expect(page.get_by_test_id("signin-failed")).to_be_visible()
            check(not [c for c in ctx.cookies() if c["name"] == "cm_web"], "a used sign-in link left a cookie")
            check(page.evaluate("fetch('/web/session').then((r) => r.status)") == 401,
                  "a used sign-in link gave a session")
            self.shot(page, "signin-failed")
        finally:
            ctx.close()
            self.contexts.remove(ctx)

        # Signing out: the session ends at the gateway, the cookie goes.
        ctx, page, _ = self.signed_in("signout", base, self.args.alice_home)
        try:
            with page.expect_response(lambda r: r.url == base + "/web/signout") as info:
                page.get_by_test_id("signout").click()
            check(info.value.status == 204, f"POST /web/signout answered {info.value.status}, not 204")
            expect(page.get_by_test_id("signin")).to_be_visible()
            expect(page.get_by_text("You are signed out.")).to_be_visible()
            check(not [c for c in ctx.cookies() if c["name"] == "cm_web"], "signing out left the cookie")
            check(page.evaluate("fetch('/web/session').then((r) => r.status)") == 401, "signing out left a session")
        finally:
            ctx.close()
            self.contexts.remove(ctx)

    # --- g. CSRF: other origins cannot send as alice ---------------------------

    def csrf(self):
        a, b = self.alice, self.bob
        base = self.args.alice_url
        target = base + "/api/v1/messages"
        mark = "ATTACK"
        form_field = json.dumps({"to": "bob", "body": f"{mark} form"})[:-2]  # '{"to": "bob", "body": "ATTACK form'
        pages = {
            "/form.html": f"""<!doctype html><title>form</title>
<form id="f" method="POST" action="{target}" enctype="text/plain">
<input type="hidden" name='{form_field}' value='"}}'>
<button type="submit">Claim your prize</button></form>""",
            "/fetch.html": f"""<!doctype html><title>fetch</title><script>
(async () => {{
  const out = [];
  const tries = [
    ['no-cors', {{ method: 'POST', mode: 'no-cors', credentials: 'include', headers: {{ 'Content-Type': 'text/plain' }},
                  body: JSON.stringify({{ to: 'bob', body: '{mark} fetch no-cors' }}) }}],
    ['cors', {{ method: 'POST', credentials: 'include', headers: {{ 'Content-Type': 'application/json', 'X-CSRF-Token': 'guessed' }},
               body: JSON.stringify({{ to: 'bob', body: '{mark} fetch cors' }}) }}],
  ];
  for (const [label, init] of tries) {{
    try {{ const r = await fetch('{target}', init); out.push(label + ' ' + r.type + ' ' + r.status); }}
    catch (e) {{ out.push(label + ' refused'); }}
  }}
  window.__out = out;
  document.title = 'done';
}})();
</script>""",
        }

        class Evil(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = pages.get(self.path.split("?")[0])
                if body is None:
                    self.send_error(404)
                    return
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        evil = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Evil)
        threading.Thread(target=evil.serve_forever, daemon=True).start()
        port = evil.server_address[1]
        ctx = self.context("attacker")
        ctx.add_cookies(self.alice_ctx.cookies())  # alice's session cookie is in this browser
        answered = []  # (method, status) of every answer from alice's gateway
        ctx.on("response", lambda r: r.url.startswith(base) and answered.append((r.request.method, r.status)))
        try:
            # Cross-site (localhost is another site than 127.0.0.1:
            # SameSite=Strict keeps the cookie home), then same-site but
            # cross-origin (another port: the cookie goes along, the CSRF
            # token and the Origin check must refuse).
            for origin, site in ((f"http://localhost:{port}", "cross-site"), (f"http://127.0.0.1:{port}", "same-site")):
                answered.clear()
                page = ctx.new_page()
                try:
                    page.goto(origin + "/form.html")
                    with page.expect_navigation(url=target, wait_until="commit"):
                        page.get_by_role("button", name="Claim your prize").click()
                    page.goto(origin + "/fetch.html")
                    expect(page).to_have_title("done")
                    out = page.evaluate("window.__out")
                finally:
                    page.close()
                check(out == ["no-cors opaque 0", "cors refused"],
                      f"fetch from {origin} ({site}) got {out}, not an opaque answer and a refused CORS request")
                posts = [s for (m, s) in answered if m == "POST"]
                check(len(posts) == 2, f"expected the form's and the no-cors fetch's POST from {origin}, saw {posts}")
                check(all(s >= 400 for s in posts), f"alice's gateway accepted a POST from {origin}: {posts}")
                # Cross-site, SameSite=Strict keeps the cookie home: no
                # session (401). Same-site, the cookie goes along and the
                # CSRF check refuses (403).
                want = 401 if site == "cross-site" else 403
                check(posts == [want, want], f"POSTs from {origin} ({site}) answered {posts}, not {want}")

            # Python, with alice's cookie: no CSRF token, a wrong Origin.
            cookie = next(c["value"] for c in self.alice_ctx.cookies() if c["name"] == "cm_web")
            csrf = self.api(a, "GET", "/web/session")["json"]["csrf"]

            def post(body, **headers):
                req = urllib.request.Request(target, data=json.dumps({"to": "bob", "body": body}).encode(), method="POST",
                                             headers={"Content-Type": "application/json", "Cookie": f"cm_web={cookie}", **headers})
                try:
                    with urllib.request.urlopen(req, timeout=30) as r:
                        return r.status
                except urllib.error.HTTPError as e:
                    return e.code

            s = post(f"{mark} no token")
            check(s == 403, f"a POST with alice's cookie and no X-CSRF-Token answered {s}, not 403")
            s = post(f"{mark} wrong origin", **{"X-CSRF-Token": csrf, "Origin": "http://evil.test"})
            check(s == 403, f"a POST with alice's cookie and token from Origin http://evil.test answered {s}, not 403")
            s = post(f"{mark} cross-site", **{"X-CSRF-Token": csrf, "Sec-Fetch-Site": "cross-site"})
            check(s == 403, f"a POST with alice's cookie and token, Sec-Fetch-Site: cross-site, answered {s}, not 403")
            s = post("csrf check: same origin, with the token", **{"X-CSRF-Token": csrf, "Origin": base})
            check(s == 201, f"the control POST (cookie, token, own Origin) answered {s}, not 201")

            # Nothing of the attacks was sent: not in alice's conversation
            # with bob, not in bob's inbox (after the control message came).
            expect_deadline = time.time() + 5
            while True:
                inbox = self.api(b, "GET", "/api/v1/messages?unread=false&limit=500")["json"]["messages"]
                if any(m["body"].startswith("csrf check") for m in inbox) or time.time() > expect_deadline:
                    break
                time.sleep(0.2)
            check(any(m["body"].startswith("csrf check") for m in inbox), "bob never got the control message")
            leaked = [m["body"] for m in inbox if mark in m["body"]]
            check(not leaked, f"bob received messages from the attacks: {leaked}")
            conv = self.api(a, "GET", "/api/v1/conversations/bob/messages?limit=200")["json"]["messages"]
            leaked = [m["body"] for m in conv if mark in m["body"]]
            check(not leaked, f"alice's gateway sent messages from the attacks: {leaked}")
        finally:
            ctx.close()
            self.contexts.remove(ctx)
            evil.shutdown()
            evil.server_close()

    # --- h. headers -------------------------------------------------------------

    def headers(self):
        base = self.args.alice_url
        with urllib.request.urlopen(base + "/", timeout=30) as r:
            csp = r.headers.get("Content-Security-Policy") or ""
            xfo = r.headers.get("X-Frame-Options")
            nosniff = r.headers.get("X-Content-Type-Options")
        check("script-src 'self'" in csp, f"/ has no Content-Security-Policy with script-src 'self': {csp!r}")
        check("frame-ancestors 'none'" in csp, f"/'s Content-Security-Policy allows framing: {csp!r}")
        check(xfo == "DENY", f"/ has X-Frame-Options {xfo!r}, not DENY")
        check(nosniff == "nosniff", f"/ has X-Content-Type-Options {nosniff!r}, not nosniff")
        port = base.rsplit(":", 1)[1]
        for host in ("evil.test", f"evil.test:{port}"):
            req = urllib.request.Request(base + "/", headers={"Host": host})
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    status = r.status
            except urllib.error.HTTPError as e:
                status = e.code
            check(status == 421, f"/ with Host: {host} answered {status}, not 421")

    # --- i. a phone's width, and the dark theme ----------------------------------

    def phone_and_dark(self):
        base = self.args.alice_url
        ctx = self.context("phone", viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True,
                           device_scale_factor=2)
        ctx.add_cookies(self.alice_ctx.cookies())
        try:
            page = ctx.new_page()
            page.goto(base + "/#/topics/general")
            expect(page.get_by_test_id("compose")).to_be_visible()
            menu = page.get_by_role("button", name="Menu")
            expect(menu).to_be_visible()
            nav = page.get_by_role("navigation", name="Sidebar")
            expect(nav).to_be_hidden()
            width = page.evaluate("document.documentElement.scrollWidth")
            check(width <= 360, f"the topic view is {width}px wide on a 360px screen")
            self.shot(page, "phone-topic")
            menu.click()
            expect(nav).to_be_visible()
            expect(menu).to_have_attribute("aria-expanded", "true")
            expect(nav.locator("[data-testid=topic-link][data-topic=general]")).to_be_visible()
            self.shot(page, "phone")
            nav.get_by_test_id("nav-peers").click()
            expect(page.get_by_test_id("peers-view")).to_be_visible()
            expect(nav).to_be_hidden()
        finally:
            ctx.close()
            self.contexts.remove(ctx)

        ctx = self.context("dark", color_scheme="dark")
        ctx.add_cookies(self.alice_ctx.cookies())
        try:
            page = ctx.new_page()
            page.goto(base + "/#/topics/general")
            expect(page.get_by_test_id("message").first).to_be_visible()
            bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
            rgb = [int(x) for x in re.findall(r"\d+", bg)[:3]]
            check(len(rgb) == 3 and sum(rgb) / 3 < 96, f"the dark theme's background is {bg}, not dark")
            self.shot(page, "dark")
        finally:
            ctx.close()
            self.contexts.remove(ctx)

    # --- a thread, a mention, and the README's picture -------------------------

    def thread(self):
        a, b = self.alice, self.bob
        r = self.api(a, "POST", "/api/v1/topics", {"name": "releases", "description": "Release planning and deploys"})
        check(r["status"] == 201, f"alice could not create #releases from her page: {r}")
        self.go(b, "#/topics/releases", "topic-view")
        b.get_by_test_id("topic-join").click()
        expect(b.get_by_test_id("compose")).to_be_visible()
        self.open_chat(a, "#/topics/releases", "topic-view")
        self.send(a, "v1.4.0 is tagged. Release notes: docs/CHANGELOG.md", "/api/v1/topics/releases/messages")
        staging = "Staging is green: 212 tests passed, migrations took 3.2 s."
        self.send(b, staging, "/api/v1/topics/releases/messages")
        parent = self.message(a, staging)
        expect(parent).to_be_visible(timeout=5000)
        parent_id = parent.get_attribute("data-id")
        parent.get_by_role("button", name="Reply").click()
        reply = "Thanks! Rolling it out to production at 14:00 UTC."
        self.send(a, reply, "/api/v1/topics/releases/messages")
        nested = a.locator(f".thread:has(> [data-id='{parent_id}']) .replies [data-testid=message]").filter(has_text=reply)
        expect(nested).to_be_visible()
        expect(nested).to_have_attribute("data-reply-to", parent_id)
        expect(self.message(b, reply)).to_be_visible(timeout=5000)
        # @ offers the members; Enter picks one.
        compose = b.get_by_test_id("compose")
        compose.click()
        compose.press_sequentially("@al")
        lb = b.get_by_test_id("mention-list")
        expect(lb).to_be_visible()
        expect(lb.get_by_role("option", name="@alice")).to_be_visible()
        compose.press("Enter")
        expect(compose).to_have_value("@alice ")
        compose.press_sequentially("the dashboard looks calm, I'll watch it.")
        with b.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/api/v1/topics/releases/messages")) as info:
            compose.press("Enter")
        check(info.value.status == 201, f"Enter in the compose box: POST answered {info.value.status}")
        mention = self.message(a, "@alice the dashboard looks calm, I'll watch it.")
        expect(mention).to_be_visible(timeout=5000)
        expect(mention).to_have_class(re.compile(r"\bmentions-me\b"))
        self.shot(a, "topic-thread")
        if self.args.readme_image:
            Path(self.args.readme_image).parent.mkdir(parents=True, exist_ok=True)
            a.evaluate("document.activeElement && document.activeElement.blur()")
            a.screenshot(path=self.args.readme_image)

    # --- m. send later -------------------------------------------------------

    def send_later(self):
        a, b = self.alice, self.bob
        self.open_chat(b, "#/dm/alice", "dm-view")
        self.open_chat(a, "#/dm/bob", "dm-view")

        def schedule(text, seconds):
            """Sends `text` from alice's open DM view to be delivered in
            `seconds`, through "Send later"; returns (id, deliver_at_ms)."""
            a.get_by_test_id("later-toggle").click()
            when = a.evaluate("""(s) => {
              const d = new Date(Date.now() + s * 1000), p = (n) => String(n).padStart(2, '0');
              return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
            }""", seconds)
            a.get_by_test_id("send-at").fill(when)
            a.get_by_test_id("compose").fill(text)
            with a.expect_response(lambda r: r.request.method == "POST" and r.url.split("?")[0].endswith("/api/v1/messages")) as info:
                a.get_by_test_id("send").click()
            resp = info.value
            check(resp.status == 201, f"scheduling from the page answered {resp.status}: {resp.text()[:200]}")
            sent = resp.json()
            check(sent.get("deliver_at_ms"), f"the page sent it at once: {sent}")
            expect(a.get_by_test_id("compose")).to_have_value("")
            expect(a.get_by_test_id("scheduled-note").last).to_be_visible()
            check(self.message(a, text).count() == 0, "alice's page lists a scheduled message as sent")
            return sent["id"], sent["deliver_at_ms"]

        # "Send later" open without a time: nothing is sent, the page says why.
        posts = []
        a.on("request", lambda r: posts.append(r) if r.method == "POST" and "/api/v1/messages" in r.url else None)
        a.get_by_test_id("later-toggle").click()
        a.get_by_test_id("compose").fill("not without a time")
        a.get_by_test_id("send").click()
        expect(a.get_by_test_id("error-detail")).to_contain_text("Pick when to send it")
        expect(a.get_by_test_id("compose")).to_have_value("not without a time")
        check(not posts, "the page sent a message with an empty send-later time")
        a.get_by_test_id("later-toggle").click()  # closed again (and cleared)
        a.get_by_test_id("compose").fill("")

        never = "This reminder gets cancelled."
        never_id, _ = schedule(never, 3600)
        soon = "Reminder: the release train leaves in five minutes."
        _, at = schedule(soon, 4)
        self.go(a, "#/scheduled", "scheduled-view")
        items = a.get_by_test_id("scheduled-item")
        expect(items).to_have_count(2)
        expect(items.first.locator(".where")).to_have_text("bob")
        self.shot(a, "scheduled")
        a.locator(f"[data-testid=scheduled-item][data-id='{never_id}']").get_by_test_id("scheduled-cancel").click()
        expect(items).to_have_count(1)
        # Bob's open page shows it live at its time, not before.
        expect(self.message(b, soon)).to_be_visible(timeout=15000)
        now_ms = time.time() * 1000
        check(now_ms >= at, f"bob's page showed it {at - now_ms:.0f} ms before its time")
        expect(items).to_have_count(1)
        self.go(a, "#/dm/bob", "dm-view")
        self.go(a, "#/scheduled", "scheduled-view")
        expect(a.get_by_test_id("scheduled-list")).to_contain_text("Nothing scheduled.")
        # In alice's conversation at its time; the cancelled one never.
        self.open_chat(a, "#/dm/bob", "dm-view")
        expect(self.message(a, soon)).to_be_visible()
        time.sleep(1)
        check(self.message(b, never).count() == 0, "the cancelled message reached bob")
        check(self.message(a, never).count() == 0, "alice's conversation shows the cancelled message")
        return f"bob's page showed it {now_ms - at:.0f} ms after its time"

    # --- n. team memory -------------------------------------------------------

    def memory(self):
        a, b = self.alice, self.bob
        fact = "The staging database listens on port 5433."
        self.go(a, "#/memory", "memory-view")
        a.locator("#memory-text").fill(fact)
        a.locator("#memory-tags").fill("infra, db")
        with a.expect_response(lambda r: r.request.method == "POST" and r.url.split("?")[0].endswith("/api/v1/memory")) as info:
            a.get_by_role("button", name="Remember").click()
        resp = info.value
        check(resp.status == 201, f"remembering from the page answered {resp.status}: {resp.text()[:200]}")
        note_id = resp.json()["id"]
        expect(a.locator(f"[data-testid=memory-item][data-id='{note_id}']")).to_be_visible()
        # A peer's note with markup: shown as its words on bob's page.
        evil = '<img src="x" onerror="window.__pwned=1">note'
        made = self.api(b, "POST", "/api/v1/memory", {"text": evil})
        check(made["status"] == 201, f"bob's note: {made}")
        # Bob searches by a word of alice's note and finds it.
        self.go(b, "#/memory", "memory-view")
        b.locator("#memory-query").fill("staging port")
        b.get_by_test_id("memory-search").click()
        item = b.locator(f"[data-testid=memory-item][data-id='{note_id}']")
        expect(item).to_be_visible()
        expect(item.get_by_test_id("memory-text")).to_have_text(fact)
        expect(item.locator(".where")).to_have_text("alice")
        self.shot(b, "memory")
        b.locator("#memory-query").fill("")
        b.get_by_test_id("memory-search").click()
        expect(b.locator("[data-testid=memory-text]").filter(has_text=evil)).to_have_count(1)
        self.no_script_ran(b, "bob", "team memory")
        # Bob may not forget alice's note (no button; the API refuses); alice may.
        check(item.get_by_test_id("memory-forget").count() == 0, "bob's page offers to forget alice's note")
        forbid = self.api(b, "DELETE", f"/api/v1/memory/{note_id}")
        check(forbid["status"] == 403, f"bob forgot alice's note: {forbid}")
        a.locator(f"[data-testid=memory-item][data-id='{note_id}']").get_by_test_id("memory-forget").click()
        expect(a.locator(f"[data-testid=memory-item][data-id='{note_id}']")).to_have_count(0)
        b.locator("#memory-query").fill("staging")
        b.get_by_test_id("memory-search").click()
        expect(b.get_by_test_id("memory-list")).to_contain_text("No note matches.")
        return "remembered, found by a word on the other page, forgotten"

    # --- o. tasks, shared state and file leases --------------------------------

    def coordination(self):
        a, b = self.alice, self.bob

        def said(resp):
            """A response's status and the start of its body, if it has one."""
            try:
                return f"{resp.status} {resp.text()[:200]}"
            except PlaywrightError:
                return str(resp.status)

        def posted(page, method, path):
            """Waits for the page's `method` to `path` (no query)."""
            return page.expect_response(lambda r: r.request.method == method and r.url.split("?")[0].endswith(path))

        # Tasks: alice creates one through the form.
        a.get_by_test_id("nav-tasks").click()
        expect(a.locator("section.view[data-testid=tasks-view]")).to_be_visible()
        title = "Renew the TLS certificates on staging before Friday"
        a.locator("#task-title").fill(title)
        a.locator("#task-body").fill("The current ones expire on the 14th.")
        a.locator("#task-priority").select_option("high")
        a.locator("#task-tags").fill("infra, tls")
        with posted(a, "POST", "/api/v1/tasks") as info:
            a.get_by_test_id("task-create").click()
        check(info.value.status == 201, f"creating a task from the page answered {said(info.value)}")
        task = info.value.json()
        tid, short_id = task["id"], task["short_id"]
        check(task["priority"] == "high" and task["tags"] == ["infra", "tls"],
              f"the form sent the wrong priority or tags: {task['priority']} {task['tags']}")
        mine = a.locator(f"[data-testid=task-item][data-id='{tid}']")
        expect(mine.get_by_test_id("task-title")).to_have_text(title)
        expect(mine.get_by_test_id("task-status")).to_have_text("open")
        expect(a.locator("#task-title")).to_have_value("")

        # Bob opens the list, sees it open, claims it.
        self.go(b, "#/tasks", "tasks-view")
        theirs = b.locator(f"[data-testid=task-item][data-id='{tid}']")
        expect(theirs.get_by_test_id("task-title")).to_have_text(title)
        expect(theirs.get_by_test_id("task-status")).to_have_text("open")
        check(theirs.get_by_test_id("task-delete").count() == 0, "bob's page offers to delete alice's task")
        with posted(b, "POST", f"/api/v1/tasks/{tid}/claim") as info:
            theirs.get_by_test_id("task-claim").click()
        check(info.value.status == 200, f"bob's claim answered {said(info.value)}")
        expect(theirs.get_by_test_id("task-status")).to_have_text("claimed by bob")
        expect(theirs.get_by_test_id("task-release")).to_be_visible()
        check(theirs.get_by_test_id("task-claim").count() == 0, "bob's page offers to claim a task he holds")

        # Alice's open page follows, live (the `coordination` event).
        claimed_at = time.monotonic()
        expect(mine.get_by_test_id("task-status")).to_have_text("claimed by bob", timeout=5000)
        live_ms = (time.monotonic() - claimed_at) * 1000
        expect(mine.get_by_test_id("task-force")).to_be_visible()
        check(mine.get_by_test_id("task-claim").count() == 0, "alice's page offers to claim a task bob holds")
        check(mine.get_by_test_id("task-complete").count() == 0, "alice's page offers to complete a task bob holds")

        # A task of bob's with markup in its title: text on alice's page.
        evil_title = f"Deploy {XSS_SCRIPT} {XSS_IMG} now"
        made = self.api(b, "POST", "/api/v1/tasks", {"title": evil_title, "body": XSS_IMG, "tags": ["web"]})
        check(made["status"] == 201, f"bob's task through the API: {made}")
        evil_id = made["json"]["id"]
        evil = a.locator(f"[data-testid=task-item][data-id='{evil_id}']")
        expect(evil).to_be_visible(timeout=5000)
        self.no_script_ran(a, "alice", "the tasks view")
        expect(evil.get_by_test_id("task-title")).to_have_text(evil_title)

        # Someone claims first: alice's page, kept from reloading its list,
        # still offers Claim; the 409's detail shows in the error area.
        block = re.compile(r"/api/v1/tasks\?")
        a.route(block, lambda route: route.abort())
        try:
            got = self.api(b, "POST", f"/api/v1/tasks/{evil_id}/claim", {})
            check(got["status"] == 200, f"bob's claim of his own task: {got}")
            with posted(a, "POST", f"/api/v1/tasks/{evil_id}/claim") as info:
                evil.get_by_test_id("task-claim").click()
            check(info.value.status == 409, f"a claim of a task bob holds answered {info.value.status}, not 409")
            detail = info.value.json().get("detail")
            check(detail, f"the 409 has no detail: {said(info.value)}")
            expect(a.get_by_test_id("error-detail")).to_have_text(detail)
        finally:
            a.unroute(block)

        # Bob completes his claimed task with a result; alice sees it done.
        result = "Renewed; they now expire in March."
        theirs.locator(f"#task-result-{short_id}").fill(result)
        with posted(b, "POST", f"/api/v1/tasks/{tid}/complete") as info:
            theirs.get_by_test_id("task-complete").click()
        check(info.value.status == 200, f"bob's completion answered {said(info.value)}")
        expect(theirs).to_have_count(0)  # done: not in "open, claimed"
        expect(mine).to_have_count(0, timeout=5000)
        a.locator("#tasks-status").select_option("done")
        expect(mine.get_by_test_id("task-status")).to_have_text("done by bob")
        expect(mine.get_by_test_id("task-result")).to_have_text(result)
        check(mine.get_by_test_id("task-complete").count() == 0, "a done task offers Complete")
        a.locator("#tasks-status").select_option("all")
        expect(evil.get_by_test_id("task-status")).to_have_text("claimed by bob")
        self.shot(a, "tasks")
        # Alice (the mesh's owner) may delete bob's task.
        with posted(a, "DELETE", f"/api/v1/tasks/{evil_id}") as info:
            evil.get_by_test_id("task-delete").click()
        check(info.value.status == 204, f"alice's delete of bob's task answered {info.value.status}")
        expect(evil).to_have_count(0)
        expect(mine).to_be_visible()

        # A task sealed to #general through the form's "Sealed to": bob, in
        # the topic, sees it live with its topic's tag.
        a.locator("#task-title").fill("Pin the on-call rota in #general")
        a.locator("#task-topic").select_option("general")
        with posted(a, "POST", "/api/v1/tasks") as info:
            a.get_by_test_id("task-create").click()
        check(info.value.status == 201, f"creating a topic's task from the page answered {said(info.value)}")
        scoped = info.value.json()
        check(scoped.get("topic") == "general", f"the form did not seal the task to #general: {scoped.get('topic')}")
        expect(a.locator("#task-topic")).to_have_value("")
        theirs_scoped = b.locator(f"[data-testid=task-item][data-id='{scoped['id']}']")
        expect(theirs_scoped.get_by_test_id("task-topic-tag")).to_have_text("#general", timeout=5000)

        # Shared state: alice sets a key through the form (JSON value).
        self.go(a, "#/state", "state-view")
        a.locator("#state-key").fill("deploy/lock")
        a.locator("#state-value").fill('{"by":"alice"}')
        with posted(a, "PUT", "/api/v1/state/deploy%2Flock") as info:
            a.get_by_test_id("state-set").click()
        check(info.value.status == 200, f"setting deploy/lock answered {said(info.value)}")
        entry = info.value.json()
        check(entry["value"] == {"by": "alice"}, f"the form did not send the value as JSON: {entry}")
        row = a.locator("[data-testid=state-item][data-key='deploy/lock']")
        expect(row.get_by_test_id("state-value")).to_have_text('{"by":"alice"}')
        # Text that is not JSON is sent as a JSON string.
        a.locator("#state-key").fill("release/train")
        a.locator("#state-value").fill("leaves at 14:00")
        with posted(a, "PUT", "/api/v1/state/release%2Ftrain") as info:
            a.get_by_test_id("state-set").click()
        check(info.value.status == 200 and info.value.json()["value"] == "leaves at 14:00",
              f"setting release/train with text: {said(info.value)}")
        train = a.locator("[data-testid=state-item][data-key='release/train']")
        expect(train.get_by_test_id("state-value")).to_have_text('"leaves at 14:00"')
        # "Only if at version" refuses when the key moved on.
        a.locator("#state-key").fill("deploy/lock")
        a.locator("#state-value").fill('{"by":"mallory"}')
        a.locator("#state-if-version").fill(str(entry["version"] + 5))
        with posted(a, "PUT", "/api/v1/state/deploy%2Flock") as info:
            a.get_by_test_id("state-set").click()
        check(info.value.status == 409, f"a write at a stale version answered {info.value.status}, not 409")
        expect(a.get_by_test_id("error-detail")).to_be_visible()
        expect(row.get_by_test_id("state-value")).to_have_text('{"by":"alice"}')
        a.locator("#state-prefix").fill("deploy/")
        a.get_by_test_id("state-filter").click()
        expect(train).to_have_count(0)
        expect(row).to_be_visible()

        # Bob's page shows it; bob deletes it; alice's list follows.
        self.go(b, "#/state", "state-view")
        theirs = b.locator("[data-testid=state-item][data-key='deploy/lock']")
        expect(theirs.get_by_test_id("state-key")).to_have_text("deploy/lock")
        expect(theirs.get_by_test_id("state-value")).to_have_text('{"by":"alice"}')
        expect(theirs.get_by_test_id("state-writer")).to_have_text("alice")
        self.shot(b, "state")
        with posted(b, "DELETE", "/api/v1/state/deploy%2Flock") as info:
            theirs.get_by_test_id("state-delete").click()
        check(info.value.status == 204, f"bob's delete of deploy/lock answered {said(info.value)}")
        expect(theirs).to_have_count(0)
        expect(row).to_have_count(0, timeout=5000)
        expect(a.get_by_test_id("state-list")).to_contain_text("No key is set.")
        gone = self.api(a, "GET", "/api/v1/state/deploy%2Flock")
        check(gone["status"] == 404, f"deploy/lock after bob deleted it: {gone}")

        # Leases: alice takes one through the API; bob's page shows it,
        # without a Release button; his conflicting take is refused.
        repo = "github.com/example/app"
        took = self.api(a, "POST", "/api/v1/leases",
                        {"repo": repo, "paths": ["src/net/"], "reason": "refactoring the HTTP client", "ttl_minutes": 30})
        check(took["status"] == 201, f"alice's lease: {took}")
        lid = took["json"]["id"]
        self.go(b, "#/leases", "leases-view")
        lease = b.locator(f"[data-testid=lease-item][data-id='{lid}']")
        expect(lease.get_by_test_id("lease-holder")).to_have_text("alice")
        expect(lease.get_by_test_id("lease-paths")).to_have_text("src/net/")
        expect(lease).to_contain_text(repo)
        expect(lease).to_contain_text("exclusive")
        expect(lease).to_contain_text("until")
        check(lease.get_by_test_id("lease-release").count() == 0, "bob's page offers to release alice's lease")
        clash = self.api(b, "POST", "/api/v1/leases", {"repo": repo, "paths": ["src/net/http.rs"]})
        check(clash["status"] == 409, f"bob's lease over alice's answered {clash['status']}, not 409: {clash['json']}")
        self.shot(b, "leases")
        self.go(a, "#/leases", "leases-view")
        ours = a.locator(f"[data-testid=lease-item][data-id='{lid}']")
        expect(ours.get_by_test_id("lease-holder")).to_have_text("alice")
        with posted(a, "DELETE", f"/api/v1/leases/{lid}") as info:
            ours.get_by_test_id("lease-release").click()
        check(info.value.status == 204, f"alice's release answered {said(info.value)}")
        expect(ours).to_have_count(0)
        expect(lease).to_have_count(0, timeout=5000)
        expect(b.get_by_test_id("leases-list")).to_contain_text("No live lease.")
        # Bob takes a shared one through the form, and releases it.
        b.locator("#lease-repo").fill(repo)
        b.locator("#lease-paths").fill("docs/, README.md")
        b.locator("#lease-reason").fill("proofreading")
        b.locator("#lease-shared").check()
        with posted(b, "POST", "/api/v1/leases") as info:
            b.get_by_test_id("lease-take").click()
        check(info.value.status == 201, f"bob's lease through the form answered {said(info.value)}")
        taken = info.value.json()
        check(taken["paths"] == ["docs/", "README.md"] and not taken["exclusive"] and taken["reason"] == "proofreading",
              f"the form sent another lease: {taken}")
        his = b.locator(f"[data-testid=lease-item][data-id='{taken['id']}']")
        expect(his.get_by_test_id("lease-paths")).to_have_text("docs/, README.md")
        expect(his).to_contain_text("shared")
        expect(a.locator(f"[data-testid=lease-item][data-id='{taken['id']}']")).to_be_visible(timeout=5000)
        his.get_by_test_id("lease-release").click()
        expect(his).to_have_count(0)
        self.no_script_ran(a, "alice", "the coordination views")
        self.no_script_ran(b, "bob", "the coordination views")
        return f"alice's page showed bob's claim {live_ms:.0f} ms after it was answered"

    def no_page_errors(self):
        errors = [e if len(e) <= 160 else e[:157] + "..." for e in self.page_errors[:3]]
        check(not self.page_errors, f"{len(self.page_errors)} error(s) in the pages: {' | '.join(errors)}")


def one_line(e):
    if isinstance(e, Fail):
        return str(e)
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip() and not ln.strip().startswith("Call log")]
    where = ""
    for fr in reversed(traceback.extract_tb(e.__traceback__)):
        if fr.filename == __file__:
            where = f" (test_web.py:{fr.lineno}: {fr.line})"
            break
    return f"{type(e).__name__}: {' | '.join(lines[:3])}{where}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default="claudemesh")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--screenshots", default="web-screenshots")
    ap.add_argument("--readme-image")
    ap.add_argument("alice_url")
    ap.add_argument("alice_home")
    ap.add_argument("bob_url")
    ap.add_argument("bob_home")
    args = ap.parse_args()
    args.alice_url, args.bob_url = args.alice_url.rstrip("/"), args.bob_url.rstrip("/")

    failures = 0
    with sync_playwright() as pw:
        try:
            web = Web(args, pw)
        except (Fail, PlaywrightError) as e:
            print(f"FAIL sign-in: {one_line(e)}", flush=True)
            return 1
        scenarios = [
            ("topic message arrives live", web.topic_live),
            ("unread badges", web.unread_badges),
            ("direct messages", web.direct_messages),
            ("verify", web.verify),
            ("invite, me, message status, notifications", web.other_views),
            ("peer markup is text", web.xss),
            ("sign-in screen and used link", web.signin),
            ("csrf", web.csrf),
            ("headers", web.headers),
            ("phone and dark", web.phone_and_dark),
            ("thread and mention", web.thread),
            ("send later", web.send_later),
            ("team memory", web.memory),
            ("tasks, state and leases", web.coordination),
            ("no page errors", web.no_page_errors),
        ]
        for name, fn in scenarios:
            started = time.monotonic()
            try:
                detail = fn()
            except Exception as e:  # noqa: BLE001 - report every scenario
                failures += 1
                print(f"FAIL {name}: {one_line(e)}", flush=True)
                slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
                (web.shots / f"fail-{slug}.txt").write_text("".join(traceback.format_exception(e)))
                for who, page in (("alice", web.alice), ("bob", web.bob)):
                    try:
                        page.screenshot(path=str(web.shots / f"fail-{slug}-{who}.png"))
                    except PlaywrightError:
                        pass
                continue
            took = f"{time.monotonic() - started:.1f}s"
            print(f"ok {name} ({took}{'; ' + detail if detail else ''})", flush=True)
        web.browser.close()
    return min(failures, 100)


if __name__ == "__main__":
    sys.exit(main())
