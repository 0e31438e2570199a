/* claudemesh web app: the page `claudemesh serve` serves at `/`.
 *
 * Plain ES2020: no framework, no dependency, no build step. The CSP allows
 * no inline script or style, so every node is built with h() below, and
 * every string a peer supplies (bodies, names, summaries, descriptions,
 * statuses) becomes a text node or an attribute value, never markup:
 * there is no innerHTML, insertAdjacentHTML, document.write or eval here.
 *
 * Parts, in file order:
 *   1. DOM helpers     h(), text and time formatting
 *   2. State           S: session, current mesh, peers, topics, unread
 *   3. API             api(): same-origin fetch with CSRF and mesh headers
 *   4. Screens         sign-in screen, app shell, error area, banner
 *   5. Sidebar         mesh switcher, topics, direct messages, links, badges
 *   6. Data refresh    peers, topic unread counts, the inbox's unread
 *   7. Conversation    message list with threads + compose with @mentions
 *                      (shared by the topic view and the DM view)
 *   8. Views           one function per hash route
 *   9. Router          hash -> view, and each view's lifecycle
 *  10. Live events     one EventSource for the current mesh
 *  11. Boot
 */
'use strict';

(() => {
  // -----------------------------------------------------------------------
  // 1. DOM helpers
  // -----------------------------------------------------------------------

  /** h('a', {href, class, onclick: fn, 'data-x': 1}, 'text', node, [more]).
   *  Strings and numbers become text nodes; null/false/true are skipped;
   *  `on*` keys with a function become listeners (not attributes);
   *  `value` is set as a property after the children (for <select>). */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    let value;
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k === 'value') value = v;
      else if (k === 'class') el.className = v;
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    appendAll(el, children);
    if (value !== undefined) el.value = value;
    return el;
  }

  /** add(el, child, ...): appends children as h() does; fill() replaces them. */
  const add = (el, ...children) => appendAll(el, children);
  const fill = (el, ...children) => { el.replaceChildren(); return appendAll(el, children); };

  function appendAll(el, children) {
    for (const c of children) {
      if (c == null || c === false || c === true) continue;
      if (Array.isArray(c)) appendAll(el, c);
      else el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  const $ = (id) => document.getElementById(id);
  const seg = encodeURIComponent; // one path segment: a `/` in a name becomes %2F
  const short = (hex) => (hex ? String(hex).slice(0, 8) : '?');
  const srOnly = (text) => h('span', { class: 'sr-only' }, text);
  const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;
  const isDataImage = (s) => typeof s === 'string' && s.startsWith('data:image/');
  let uid = 0;

  function excerpt(s, n) {
    const t = String(s || '').replace(/\s+/g, ' ').trim();
    return t.length > n ? t.slice(0, n - 1) + '…' : t;
  }

  function fmtTime(ms) {
    const d = new Date(ms);
    if (isNaN(d)) return '';
    const now = new Date();
    const sameDay = d.toDateString() === now.toDateString();
    return sameDay
      ? d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
      : d.toLocaleString([], { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
  }

  function timeEl(ms) {
    const d = new Date(ms);
    if (!ms || isNaN(d)) return null;
    return h('time', { datetime: d.toISOString(), title: d.toLocaleString() }, fmtTime(ms));
  }

  /** 'infra, db' -> ['infra', 'db']: a comma list typed in a form. */
  const tagList = (v) => String(v || '').split(',').map((t) => t.trim()).filter(Boolean);

  function debounce(fn, ms) {
    let t;
    return (...args) => { clearTimeout(t); t = setTimeout(() => fn(...args), ms); };
  }

  /** A fresh Idempotency-Key for one message. */
  function newKey() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  }

  /** Rebuilds a container, then gives focus back to the element with the
   *  same data-fkey if focus was inside (so live updates do not steal it). */
  function keepFocus(container, rebuild) {
    const a = document.activeElement;
    const key = a && container.contains(a) ? a.getAttribute('data-fkey') : null;
    rebuild();
    if (key) {
      const el = Array.from(container.querySelectorAll('[data-fkey]')).find((e) => e.getAttribute('data-fkey') === key);
      if (el) el.focus();
    }
  }

  /** Rebuilds a container, keeping what was typed in its inputs (by id):
   *  a live reload must not wipe a half-written field. */
  function keepValues(container, rebuild) {
    const typed = new Map();
    for (const el of container.querySelectorAll('input[id], textarea[id]')) {
      if (el.type !== 'checkbox' && el.value) typed.set(el.id, el.value);
    }
    rebuild();
    for (const [id, v] of typed) {
      const el = container.querySelector('#' + CSS.escape(id));
      if (el) el.value = v;
    }
  }

  // -----------------------------------------------------------------------
  // 2. State
  // -----------------------------------------------------------------------

  const S = {
    ready: false,      // boot has asked /web/session
    signedIn: false,
    csrf: '',          // from /web/session, sent as X-CSRF-Token
    meshes: [],        // from /web/session
    mesh: '',          // current mesh name, sent as X-Claudemesh-Mesh
    me: null,          // GET /api/v1/profile
    peers: [],         // GET /api/v1/peers
    topics: [],        // GET /api/v1/topics (with `unread`)
    unread: [],        // GET /api/v1/messages?unread=true (the inbox's unread)
    link: 'up',        // the gateway's link to the broker of this mesh
    linkReason: null,
    liveDown: false,   // the event stream is reconnecting
    es: null,          // the EventSource
    esRetry: 0,
    view: null,        // the open view's context (see route())
    seq: 0,            // route generation: a stale async render checks it
  };
  const ui = {};       // shell elements, filled by buildShell()
  const Q = { quiet: true };

  const isDirect = (m) => /^(member|session):/.test(m.target || '');
  const isMine = (m) => m.you === true || (!!S.me && m.from === S.me.key);
  const senderName = (m) => m.from_name || short(m.from);
  const peerNames = () => S.peers.filter((p) => !p.you).map((p) => p.name);
  const byName = (a, b) => a.name.localeCompare(b.name);
  const callView = (name, ...args) => {
    const v = S.view;
    return v && typeof v[name] === 'function' ? v[name](...args) : undefined;
  };

  /** Where a message belongs: a hash route, or null (group / broadcast). */
  function linkFor(m) {
    const t = m.target || '';
    if (t.startsWith('#')) return '#/topics/' + seg(t.slice(1));
    if (isDirect(m) && m.from_name) return '#/dm/' + seg(m.from_name);
    return null;
  }
  function whereLabel(m) {
    const t = m.target || '';
    if (isDirect(m)) return 'Direct message';
    if (t === '*') return 'Everyone';
    return t; // #topic or @group
  }

  // -----------------------------------------------------------------------
  // 3. API
  // -----------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, problem) {
      super((problem && (problem.detail || problem.title)) || 'HTTP ' + status);
      this.status = status;
      this.problem = problem || {};
    }
  }

  /** JSON in and out, same origin, cookie auth. Non-GET carries the CSRF
   *  token; /api/ calls name the mesh. 401 -> sign-in screen; any other
   *  error is shown in the error area (unless opts.quiet) and thrown. */
  async function api(method, path, body, opts = {}) {
    const headers = { Accept: 'application/json, application/problem+json' };
    if (method !== 'GET') headers['X-CSRF-Token'] = S.csrf;
    if (path.startsWith('/api/') && S.mesh) headers['X-Claudemesh-Mesh'] = S.mesh;
    Object.assign(headers, opts.headers || {});
    const init = { method, headers, credentials: 'same-origin', cache: 'no-store' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (e) {
      return fail(new ApiError(0, {
        title: 'The gateway does not answer',
        detail: 'The request did not reach claudemesh serve.',
        hint: 'Is `claudemesh serve` still running?',
      }), opts);
    }
    const type = res.headers.get('Content-Type') || '';
    const data = res.status !== 204 && type.includes('json') ? await res.json().catch(() => null) : null;
    if (res.status === 401) {
      showSignin();
      throw new ApiError(401, data);
    }
    if (!res.ok) {
      const p = data && typeof data === 'object' ? data : { title: res.statusText || 'Error', detail: 'HTTP ' + res.status };
      return fail(new ApiError(res.status, p), opts);
    }
    return data;
  }

  function fail(err, opts) {
    if (!opts.quiet) showProblem(err.problem);
    throw err;
  }

  /** Runs an async action; an ApiError was already shown, others are shown here. */
  function guard(fn) {
    return Promise.resolve().then(fn).catch((e) => {
      if (e instanceof ApiError) return;
      console.error(e);
      showProblem({ title: 'Something went wrong in the page', detail: String(e && e.message || e) });
    });
  }

  // -----------------------------------------------------------------------
  // 4. Screens: sign-in, shell, errors, banner, live region
  // -----------------------------------------------------------------------

  function showSignin(signedOut) {
    S.signedIn = false;
    S.seq++;
    S.view = null;
    if (S.es) { S.es.close(); S.es = null; }
    clearTimeout(S.esRetry);
    for (const k of Object.keys(ui)) delete ui[k];
    const failed = location.hash === '#/signin-failed';
    fill($('app'), h('main', { id: 'main', class: 'signin-main' },
      h('section', { class: 'card signin', 'data-testid': 'signin', 'aria-labelledby': 'signin-h' },
        h('img', { src: '/assets/icon.svg', alt: '', width: 48, height: 48 }),
        h('h1', { id: 'signin-h' }, 'Sign in'),
        failed && h('p', { class: 'alert danger', role: 'alert', 'data-testid': 'signin-failed' },
          'That sign-in link was already used or has expired. Each link works only once; ask for a new one.'),
        signedOut && h('p', { role: 'status', class: 'ok-text' }, 'You are signed out.'),
        h('p', null, 'To open the claudemesh web app, run this in a terminal on this computer:'),
        h('pre', null, h('code', null, 'claudemesh serve open')),
        h('p', { class: 'muted' }, 'It prints a one-time sign-in link and opens it in your browser.'))));
    document.title = 'Sign in · claudemesh';
  }

  function buildShell() {
    ui.menu = h('button', {
      type: 'button', class: 'menu-btn', 'aria-expanded': 'false', 'aria-controls': 'sidebar',
      onclick: () => toggleMenu(),
    }, 'Menu');
    ui.banner = h('div', { class: 'banner', role: 'status', 'data-testid': 'connection-banner', hidden: true });
    ui.meshSelect = h('select', {
      id: 'mesh-select', 'data-testid': 'mesh-switcher',
      onchange: (e) => guard(() => switchMesh(e.target.value)),
    }, S.meshes.map((m) => h('option', { value: m.name }, m.display_name ? `${m.name} (${m.display_name})` : m.name)));
    ui.meshSelect.value = S.mesh;
    ui.navLists = h('div', { class: 'nav-lists' });
    ui.sidebar = h('nav', { id: 'sidebar', class: 'sidebar', 'aria-label': 'Sidebar' },
      h('div', { class: 'mesh-box' }, h('label', { for: 'mesh-select' }, 'Mesh'), ui.meshSelect),
      ui.navLists);
    ui.errors = h('div', { class: 'errors', role: 'alert', 'data-testid': 'error-area' });
    ui.view = h('div', { class: 'view-host' });
    ui.main = h('main', { id: 'main', tabindex: '-1' }, ui.banner, ui.errors, ui.view);
    ui.live = h('div', { class: 'sr-only', 'aria-live': 'polite', 'data-testid': 'live-region' });
    const skip = h('a', {
      class: 'skip', href: '#main',
      onclick: (e) => { e.preventDefault(); ui.main.focus(); },
    }, 'Skip to content');
    const header = h('header', { class: 'topbar' }, ui.menu,
      h('a', { class: 'brand', href: '#/' }, h('img', { src: '/assets/icon.svg', alt: '', width: 22, height: 22 }), 'claudemesh'));
    fill($('app'), skip, header, h('div', { class: 'layout' }, ui.sidebar, ui.main), ui.live);
    document.addEventListener('keydown', (e) => {
      if (e.key === 'Escape' && ui.sidebar && ui.sidebar.classList.contains('open')) { toggleMenu(false); ui.menu.focus(); }
    });
  }

  function toggleMenu(open) {
    if (!ui.sidebar) return;
    const o = open != null ? open : !ui.sidebar.classList.contains('open');
    ui.sidebar.classList.toggle('open', o);
    ui.menu.setAttribute('aria-expanded', String(o));
    if (o) { const first = ui.sidebar.querySelector('select, a, button'); if (first) first.focus(); }
  }

  /** Shows a problem+json (title, detail, hint) as text in the error area. */
  function showProblem(p) {
    if (!ui.errors) return;
    fill(ui.errors, h('div', { class: 'problem' },
      h('strong', null, p.title || 'Error'),
      p.detail && h('p', { 'data-testid': 'error-detail' }, p.detail),
      p.hint && h('p', { class: 'hint' }, p.hint),
      h('button', { type: 'button', class: 'link', onclick: clearErrors }, 'Dismiss')));
  }
  function clearErrors() { if (ui.errors) fill(ui.errors); }

  /** The banner: the broker link when it is not up, and a stalled event stream. */
  function renderBanner() {
    if (!ui.banner) return;
    const parts = [];
    const reason = S.linkReason ? ` (${S.linkReason})` : '';
    if (S.link === 'connecting') parts.push('Connecting to the broker…');
    else if (S.link === 'down') parts.push(`The link to the broker is down${reason}; reconnecting. Messages wait until it is back.`);
    else if (S.link && S.link !== 'up') parts.push(`The broker is ${S.link}${reason}.`);
    if (S.liveDown) parts.push('Live updates interrupted; reconnecting…');
    ui.banner.textContent = parts.join(' ');
    ui.banner.hidden = !parts.length;
  }

  /** Says a new message out loud to screen readers (aria-live region). */
  function announce(text) {
    if (!ui.live) return;
    ui.live.appendChild(h('p', null, text));
    while (ui.live.childNodes.length > 3) ui.live.removeChild(ui.live.firstChild);
  }

  function updateTitle() {
    const n = S.unread.length;
    const title = S.view && S.view.title ? S.view.title + ' · ' : '';
    document.title = (n ? `(${n}) ` : '') + title + 'claudemesh';
  }

  // -----------------------------------------------------------------------
  // 5. Sidebar: topics, direct messages, links (rebuilt on every change)
  // -----------------------------------------------------------------------

  const badge = (n) => [h('span', { class: 'badge', 'data-testid': 'unread-badge' }, String(n)), srOnly(' unread')];
  const dot = (online) => h('span', {
    class: 'dot ' + (online ? 'on' : 'off'), role: 'img',
    'aria-label': online ? 'online' : 'offline', title: online ? 'online' : 'offline',
  });
  const current = (href) => (S.view && S.view.href === href ? 'page' : null);

  function dmUnread(p) {
    return S.unread.filter((m) => isDirect(m) && (m.from === p.key || m.from_name === p.name));
  }

  function renderSidebar() {
    if (!ui.navLists) return;
    const topics = S.topics.slice().sort((a, b) => (b.joined - a.joined) || byName(a, b));
    const topicItems = topics.map((t) => {
      const href = '#/topics/' + seg(t.name);
      const n = t.unread || 0;
      const mention = S.unread.some((m) => m.mentions_me && m.target === '#' + t.name);
      return h('li', null, h('a', {
        href, class: 'navlink' + (t.joined ? '' : ' not-joined'), 'data-testid': 'topic-link',
        'data-topic': t.name, 'data-fkey': href, 'aria-current': current(href),
      },
      h('span', { class: 'navname' }, '#' + t.name),
      !t.joined && srOnly(' (not joined)'),
      mention && [h('span', { class: 'mention-mark', 'data-testid': 'mention-marker', 'aria-hidden': 'true' }, '@'), srOnly(', mentions you,')],
      n > 0 && badge(n)));
    });
    const dmItems = S.peers.filter((p) => !p.you).sort(byName).map((p) => {
      const href = '#/dm/' + seg(p.name);
      const n = dmUnread(p).length;
      return h('li', null, h('a', {
        href, class: 'navlink', 'data-testid': 'dm-link', 'data-peer': p.name, 'data-fkey': href,
        'aria-current': current(href),
      }, dot(p.online), h('span', { class: 'navname' }, p.name), n > 0 && badge(n)));
    });
    const link = (href, label, testid, extra) => h('li', null, h('a', {
      href, class: 'navlink', 'data-testid': testid, 'data-fkey': href, 'aria-current': current(href),
    }, h('span', { class: 'navname' }, label), extra));
    const nUnread = S.unread.length;
    keepFocus(ui.navLists, () => fill(ui.navLists,
      h('h2', { id: 'nav-topics' }, 'Topics'),
      h('ul', { class: 'navlist', 'aria-labelledby': 'nav-topics' }, topicItems.length ? topicItems : h('li', { class: 'muted' }, 'No topics yet')),
      h('h2', { id: 'nav-dms' }, 'Direct messages'),
      h('ul', { class: 'navlist', 'aria-labelledby': 'nav-dms' }, dmItems.length ? dmItems : h('li', { class: 'muted' }, 'No one else yet')),
      h('h2', { id: 'nav-more', class: 'sr-only' }, 'More'),
      h('ul', { class: 'navlist links', 'aria-labelledby': 'nav-more' },
        link('#/peers', 'Peers', 'nav-peers'),
        link('#/groups', 'Groups', 'nav-groups'),
        link('#/invite', 'Invite', 'nav-invite'),
        link('#/scheduled', 'Scheduled', 'nav-scheduled'),
        link('#/memory', 'Memory', 'nav-memory'),
        link('#/tasks', 'Tasks', 'nav-tasks'),
        link('#/state', 'Shared state', 'nav-state'),
        link('#/leases', 'File leases', 'nav-leases'),
        link('#/notifications', 'Notifications', 'nav-notifications',
          nUnread > 0 && [h('span', { class: 'badge', 'data-testid': 'notifications-count' }, String(nUnread)), srOnly(' unread')]),
        link('#/me', 'Me', 'nav-me')),
      h('div', { class: 'account' },
        S.me && h('p', { class: 'muted' }, 'Signed in as ', h('strong', null, S.me.name)),
        h('button', { type: 'button', 'data-testid': 'signout', 'data-fkey': 'signout', onclick: () => guard(signOut) }, 'Sign out'))));
    updateTitle();
  }

  async function signOut() {
    await api('POST', '/web/signout');
    showSignin(true);
  }

  // -----------------------------------------------------------------------
  // 6. Data refresh (each drops its answer if the mesh changed meanwhile)
  // -----------------------------------------------------------------------

  /** Every unread inbox message (pages of 500, at most 10 pages). */
  async function loadUnread(opts) {
    const out = [];
    let after = 0;
    for (let i = 0; i < 10; i++) {
      const r = await api('GET', `/api/v1/messages?unread=true&limit=500&after=${after}`, undefined, opts);
      const page = (r && r.messages) || [];
      out.push(...page);
      if (page.length < 500 || r.next_cursor == null || r.next_cursor === after) break;
      after = r.next_cursor;
    }
    return out;
  }

  async function loadCounts(opts) {
    const mesh = S.mesh;
    const [topics, unread] = await Promise.all([api('GET', '/api/v1/topics', undefined, opts), loadUnread(opts)]);
    if (mesh !== S.mesh) return;
    S.topics = topics || [];
    S.unread = unread;
    renderSidebar();
    callView('onCounts');
  }

  async function loadPeers(opts) {
    const mesh = S.mesh;
    const peers = await api('GET', '/api/v1/peers', undefined, opts);
    if (mesh !== S.mesh) return;
    S.peers = peers || [];
    renderSidebar();
    callView('onPeers');
  }

  const refreshCounts = debounce(() => guard(() => loadCounts(Q)), 120);
  const refreshPeers = debounce(() => guard(() => loadPeers(Q)), 200);

  /** Everything about the current mesh; (re)opens its event stream first
   *  so nothing that happens while loading is missed. */
  async function loadMesh() {
    const mesh = S.mesh;
    connectEvents();
    const [me, , , meshes] = await Promise.allSettled([
      api('GET', '/api/v1/profile'),
      loadPeers(),
      loadCounts(),
      api('GET', '/api/v1/meshes', undefined, Q),
    ]);
    if (mesh !== S.mesh) return;
    if (me.status === 'fulfilled') S.me = me.value;
    if (meshes.status === 'fulfilled' && Array.isArray(meshes.value)) {
      const m = meshes.value.find((x) => x.name === mesh) || meshes.value[0];
      if (m) { S.link = m.link || 'up'; S.linkReason = m.link_error || null; }
    }
    renderSidebar();
    renderBanner();
  }

  async function switchMesh(name) {
    if (!name || name === S.mesh) return;
    S.mesh = name;
    try { sessionStorage.setItem('cm.mesh', name); } catch (e) { /* private mode */ }
    Object.assign(S, { me: null, peers: [], topics: [], unread: [], link: 'up', linkReason: null });
    renderSidebar();
    await loadMesh();
    // Topic, DM, verify and status views name things of the old mesh.
    const def = ROUTES[parseHash().name];
    if (def && def.perMesh && location.hash !== '#/') location.hash = '#/';
    else route(false);
  }

  // -----------------------------------------------------------------------
  // 7. Conversation: message list with threads, compose with @mentions
  // -----------------------------------------------------------------------

  const byTime = (a, b) => (a.sent_at - b.sent_at) || ((a.seq || 0) - (b.seq || 0)) || (a.id < b.id ? -1 : 1);

  /** One message. `all` is the loaded set (to know if its parent is there). */
  function messageEl(m, all, onReply) {
    const mine = isMine(m);
    return h('article', {
      class: 'msg' + (mine ? ' mine' : '') + (m.mentions_me ? ' mentions-me' : ''),
      'data-testid': 'message', 'data-id': m.id, 'data-reply-to': m.reply_to || null,
    },
    h('div', { class: 'meta' },
      h('span', { class: 'sender', 'data-testid': 'sender' }, senderName(m)),
      mine && h('span', { class: 'tag' }, 'you'),
      m.pin_mismatch && h('strong', { class: 'tag danger', title: 'This name belongs to a verified peer with another key' }, 'KEY CHANGED'),
      m.name_ambiguous && h('span', { class: 'tag warn', title: 'Another member has a name that looks the same' }, 'name ambiguous'),
      timeEl(m.sent_at),
      m.priority && m.priority !== 'next' && h('span', { class: 'tag' }, m.priority),
      m.expired && h('span', { class: 'tag warn' }, 'expired'),
      m.mentions_me && h('span', { class: 'tag mention' }, '@ mentions you')),
    m.reply_to && !all.has(m.reply_to) && h('p', { class: 'replyref' }, 'In reply to an earlier message'),
    h('div', { class: 'body', 'data-testid': 'body' }, m.body),
    h('div', { class: 'actions' },
      h('button', { type: 'button', class: 'link', onclick: () => onReply(m) }, 'Reply'),
      mine && h('a', { href: '#/message/' + seg(m.id), 'data-testid': 'status-link' }, 'Status')));
  }

  /** The compose box. o: {placeholder, names(), send(body, replyTo, key, at)}.
   *  Enter sends, Shift+Enter is a newline; `@` opens the member listbox.
   *  "Later" reveals a time: the broker then holds the message until it
   *  (`at`, an ISO time; null: now). */
  function composeBox(o) {
    const id = 'compose-' + (++uid);
    const listId = id + '-mentions';
    const ta = h('textarea', {
      id, 'data-testid': 'compose', rows: 2, placeholder: o.placeholder,
      'aria-autocomplete': 'list', 'aria-controls': listId,
    });
    const lb = h('ul', { id: listId, role: 'listbox', class: 'mention-list', 'data-testid': 'mention-list', 'aria-label': 'Members to mention', hidden: true });
    const sendBtn = h('button', { type: 'submit', class: 'primary', 'data-testid': 'send' }, 'Send');
    const replyBar = h('div', { class: 'replying', hidden: true });
    const atId = id + '-at';
    const atInput = h('input', { id: atId, type: 'datetime-local', step: '1', 'data-testid': 'send-at' });
    const laterRow = h('div', { class: 'compose-later', hidden: true },
      h('label', { for: atId }, 'Send at '), atInput,
      h('span', { class: 'muted' }, ' (your time; the broker holds it until then)'));
    const laterBtn = h('button', {
      type: 'button', class: 'link', 'data-testid': 'later-toggle', 'aria-expanded': 'false', 'aria-controls': atId,
      onclick: () => setLater(laterRow.hidden),
    }, 'Send later…');
    function setLater(open) {
      laterRow.hidden = !open;
      laterBtn.setAttribute('aria-expanded', String(open));
      if (!open) atInput.value = '';
      else atInput.focus();
    }
    let reply = null, sending = false, key = newKey(), keyFor = null;
    let opts = [], active = 0, tokenStart = -1;

    function setReply(m) {
      reply = m;
      replyBar.hidden = !m;
      fill(replyBar);
      if (m) {
        add(replyBar, h('span', null, 'Replying to ', h('strong', null, senderName(m)), ': ', excerpt(m.body, 80)),
          h('button', { type: 'button', class: 'link', onclick: () => setReply(null) }, 'Cancel reply'));
        ta.focus();
      }
    }

    // --- @mention autocomplete -------------------------------------------
    function mentionQuery() {
      const upto = ta.value.slice(0, ta.selectionStart);
      const m = /(^|[\s(])@([^\s@]*)$/.exec(upto);
      return m ? { start: upto.length - m[2].length - 1, q: m[2].toLowerCase() } : null;
    }
    function closeMentions() {
      lb.hidden = true;
      fill(lb);
      opts = [];
      ta.removeAttribute('aria-activedescendant');
    }
    function renderOptions() {
      fill(lb, ...opts.map((n, i) => h('li', {
        id: `${listId}-${i}`, role: 'option', 'aria-selected': String(i === active),
        class: i === active ? 'active' : null,
        onmousedown: (e) => { e.preventDefault(); pick(i); },
      }, '@' + n)));
      lb.hidden = false;
      ta.setAttribute('aria-activedescendant', `${listId}-${active}`);
    }
    function updateMentions(resetActive) {
      const mq = mentionQuery();
      const names = mq ? Array.from(new Set(o.names())).filter((n) => n.toLowerCase().startsWith(mq.q)).sort().slice(0, 8) : [];
      if (!names.length) return closeMentions();
      tokenStart = mq.start;
      opts = names;
      active = resetActive ? 0 : Math.min(active, names.length - 1);
      renderOptions();
    }
    function pick(i) {
      const before = ta.value.slice(0, tokenStart);
      const after = ta.value.slice(ta.selectionStart);
      const ins = '@' + opts[i] + ' ';
      ta.value = before + ins + after;
      const pos = before.length + ins.length;
      ta.setSelectionRange(pos, pos);
      closeMentions();
      ta.focus();
    }

    // --- sending ---------------------------------------------------------
    async function submit() {
      const body = ta.value;
      if (!body.trim() || sending) return;
      const replyId = reply ? reply.id : null;
      let at = null;
      if (!laterRow.hidden) {
        // An empty or half-typed time reads as '': never send at once then.
        const when = atInput.value ? new Date(atInput.value) : null;
        if (!when || isNaN(when)) {
          showProblem({ title: 'Not a time', detail: 'Pick when to send it, or close "Send later" to send now.' });
          atInput.focus();
          return;
        }
        at = when.toISOString();
      }
      // The same Idempotency-Key for a retry of the same message only.
      const what = body + '\u0000' + replyId + '\u0000' + at;
      if (keyFor !== what) { key = newKey(); keyFor = what; }
      sending = true;
      sendBtn.disabled = true;
      try {
        await o.send(body, replyId, key, at);
        ta.value = '';
        keyFor = null;
        setReply(null);
        setLater(false);
      } catch (e) {
        if (!(e instanceof ApiError)) throw e;
      } finally {
        sending = false;
        sendBtn.disabled = false;
        ta.focus();
      }
    }

    ta.addEventListener('input', () => updateMentions(true));
    ta.addEventListener('click', () => updateMentions(false));
    ta.addEventListener('blur', () => setTimeout(closeMentions, 150));
    ta.addEventListener('keydown', (e) => {
      if (!lb.hidden && opts.length) {
        if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
          e.preventDefault();
          active = (active + (e.key === 'ArrowDown' ? 1 : opts.length - 1)) % opts.length;
          renderOptions();
          return;
        }
        if (e.key === 'Enter' || e.key === 'Tab') { e.preventDefault(); pick(active); return; }
        if (e.key === 'Escape') { e.preventDefault(); e.stopPropagation(); closeMentions(); return; }
      }
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); guard(submit); return; }
      if (e.key === 'Escape' && reply) { e.stopPropagation(); setReply(null); }
    });

    const el = h('form', { class: 'compose', onsubmit: (e) => { e.preventDefault(); guard(submit); } },
      replyBar,
      h('label', { for: id, class: 'sr-only' }, 'Message'),
      lb,
      h('div', { class: 'compose-row' }, ta, sendBtn),
      laterRow,
      h('div', { class: 'compose-foot' },
        h('p', { class: 'compose-help muted' }, 'Enter sends, Shift+Enter adds a line, @ mentions a member.'),
        laterBtn));
    return { el, ta, setReply };
  }

  /** A message list (threads, "Load older") and a compose box, in ctx.root.
   *  o: {placeholder, load(before) -> {messages newest first, more, ...},
   *      send(body, replyTo, key) -> the sent message, names()}. */
  function conversation(ctx, o) {
    const msgs = new Map();
    let oldest = null, more = false;
    const older = h('button', { type: 'button', class: 'older', 'data-testid': 'load-older', hidden: true, onclick: () => guard(loadOlder) }, 'Load older');
    const notes = h('div', { class: 'notes' });
    const list = h('div', { class: 'messages', 'data-testid': 'messages', tabindex: '0', 'aria-label': 'Messages' });
    const box = composeBox({
      placeholder: o.placeholder,
      names: o.names,
      send: async (body, replyTo, key, at) => {
        const m = await o.send(body, replyTo, key, at);
        if (m && m.deliver_at_ms) {
          // Held by the broker: it joins the list when it is sent.
          const note = h('p', { class: 'alert ok', 'data-testid': 'scheduled-note' }, 'Scheduled for ', timeEl(m.deliver_at_ms), '. ',
            h('a', { href: '#/scheduled' }, 'Scheduled messages'));
          add(notes, note);
          announce('Scheduled for ' + new Date(m.deliver_at_ms).toLocaleString());
        } else if (m) { msgs.set(m.id, m); render(true); }
      },
    });
    add(ctx.root, notes, list, box.el);

    /** Rebuilds the list: roots in time order, replies nested under their
     *  parent (a reply whose parent is not loaded, or a cycle, is a root). */
    function render(toBottom) {
      const stick = toBottom || list.scrollHeight - list.scrollTop - list.clientHeight < 80;
      const kids = new Map();
      const roots = [];
      for (const m of Array.from(msgs.values()).sort(byTime)) {
        let p = m.reply_to, hops = 0;
        const seen = new Set([m.id]);
        while (p && msgs.has(p) && !seen.has(p) && hops++ < 1000) { seen.add(p); p = msgs.get(p).reply_to; }
        const cyclic = p && seen.has(p);
        if (m.reply_to && msgs.has(m.reply_to) && !cyclic) {
          if (!kids.has(m.reply_to)) kids.set(m.reply_to, []);
          kids.get(m.reply_to).push(m);
        } else roots.push(m);
      }
      const thread = (m) => {
        const art = messageEl(m, msgs, box.setReply);
        const children = kids.get(m.id);
        if (!children) return art;
        return h('div', { class: 'thread' }, art,
          h('div', { class: 'replies', role: 'group', 'aria-label': 'Replies to ' + senderName(m) }, children.map(thread)));
      };
      older.hidden = !more;
      fill(list, older, roots.length ? roots.map(thread) : h('p', { class: 'empty muted' }, 'No messages yet.'));
      if (stick) list.scrollTop = list.scrollHeight;
    }

    async function load(before) {
      const r = await o.load(before);
      if (!ctx.alive()) return null;
      const page = (r && r.messages) || [];
      for (const m of page) msgs.set(m.id, m);
      if (page.length) oldest = page[page.length - 1].id;
      more = !!(r && r.more);
      return r;
    }

    async function loadOlder() {
      older.disabled = true;
      const fromBottom = list.scrollHeight - list.scrollTop;
      try { await load(oldest); } finally { older.disabled = false; }
      render(false);
      list.scrollTop = list.scrollHeight - fromBottom;
    }

    return {
      msgs,
      notes,
      compose: box,
      async start() { const r = await load(null); render(true); return r; },
      add(m) { if (m && m.id) { msgs.set(m.id, Object.assign(msgs.get(m.id) || {}, m)); render(false); } },
    };
  }

  // -----------------------------------------------------------------------
  // 8. Views (ctx: {arg, root, head, alive(), on* hooks}; see route())
  // -----------------------------------------------------------------------

  const visible = () => document.visibilityState === 'visible';

  // --- Topic: #/topics/<name> --------------------------------------------
  async function viewTopic(ctx) {
    const name = ctx.arg;
    const path = '/api/v1/topics/' + seg(name);
    const topic = await api('GET', path);
    if (!ctx.alive()) return;
    const joinBtn = (label, verb) => h('button', {
      type: 'button', 'data-testid': 'topic-' + verb,
      onclick: () => guard(async () => { await api('POST', `${path}/${verb}`); refreshCounts(); route(false); }),
    }, label);
    add(ctx.head,
      topic.description && h('p', { class: 'desc' }, topic.description),
      h('p', { class: 'sub muted' }, plural(topic.members || 0, 'member'), topic.private ? ' · private' : '',
        topic.needs_rekey ? ' · needs a new key' : '', ' ', topic.joined && joinBtn('Leave', 'leave')));
    if (!topic.joined) {
      add(ctx.root, h('div', { class: 'card' },
        h('p', null, topic.private
          ? `#${name} is private: one of its members must add you.`
          : `You are not in #${name}. Join it to read and post.`),
        !topic.private && joinBtn('Join #' + name, 'join')));
      return;
    }
    let members = [];
    api('GET', path + '/members', undefined, Q)
      .then((r) => { members = (r || []).filter((m) => !m.you).map((m) => m.name); })
      .catch(() => {});
    let pending = false;
    const markRead = async () => {
      if (!visible()) { pending = true; return; }
      pending = false;
      await api('POST', path + '/read', undefined, Q).catch(() => {});
      refreshCounts();
    };
    const conv = conversation(ctx, {
      placeholder: 'Message #' + name,
      names: () => (members.length ? members : peerNames()),
      load: (before) => api('GET', `${path}/messages?limit=50${before ? '&before=' + seg(before) : ''}`),
      send: async (body, replyTo, key, at) => {
        const r = await api('POST', path + '/messages', { body, reply_to: replyTo || undefined, at: at || undefined }, { headers: { 'Idempotency-Key': key } });
        return {
          id: r.id, seq: r.seq, deliver_at_ms: r.deliver_at_ms, from: S.me && S.me.key, from_name: S.me ? S.me.name : 'you', target: '#' + name,
          body, priority: 'next', reply_to: replyTo, sent_at: Date.now(), you: true, mentions_me: false,
        };
      },
    });
    ctx.onMessage = async (m) => {
      if (m.target !== '#' + name) return false;
      conv.add(m);
      if (!m.read) await markRead();
      return true;
    };
    ctx.onVisible = () => { if (pending) guard(markRead); };
    const r = await conv.start();
    if (!r || !ctx.alive()) return;
    add(conv.notes,
      r.unreadable > 0 && h('p', { class: 'muted' }, `${plural(r.unreadable, 'older message')} could not be opened (sent before you could read this topic).`),
      r.rejected && r.rejected.length > 0 && h('p', { class: 'alert warn' }, `${plural(r.rejected.length, 'message')} failed verification and are not shown.`));
    await markRead();
  }

  // --- Direct messages: #/dm/<peer> ---------------------------------------
  async function viewDm(ctx) {
    const name = ctx.arg;
    let peerKey = null;
    const presence = h('p', { class: 'sub muted' });
    add(ctx.head, presence);
    const renderPresence = () => {
      const p = S.peers.find((x) => x.name === name);
      fill(presence);
      if (!p) return;
      add(presence, dot(p.online), ' ', p.online ? 'online' : 'offline',
        p.status && ` · ${p.status}`, p.summary && ` · ${p.summary}`, ' · ',
        p.key_changed ? h('strong', { class: 'tag danger' }, 'KEY CHANGED') : p.verified ? h('span', { class: 'tag ok' }, 'Verified') : 'not verified',
        ' · ', h('a', { href: '#/peer/' + seg(name) }, 'Verify'));
    };
    renderPresence();
    ctx.onPeers = renderPresence;
    const fromPeer = (m) => isDirect(m) && !isMine(m) && ((peerKey && m.from === peerKey) || m.from_name === name);
    let pending = false;
    const markRead = async (candidates) => {
      const ids = new Set(candidates.filter((m) => !isMine(m) && m.read === false).map((m) => m.id));
      for (const m of S.unread) if (fromPeer(m)) ids.add(m.id);
      if (!ids.size) return;
      if (!visible()) { pending = true; return; }
      pending = false;
      await api('POST', '/api/v1/messages/read', { ids: Array.from(ids) }, Q).catch(() => {});
      for (const m of conv.msgs.values()) if (ids.has(m.id)) m.read = true;
      refreshCounts();
    };
    const conv = conversation(ctx, {
      placeholder: 'Message ' + name,
      names: () => [name].concat(peerNames()),
      load: async (before) => {
        const r = await api('GET', `/api/v1/conversations/${seg(name)}/messages?limit=50${before ? '&before=' + seg(before) : ''}`);
        if (r && r.key) peerKey = r.key;
        return r;
      },
      send: async (body, replyTo, key, at) => {
        const r = await api('POST', '/api/v1/messages', { to: name, body, reply_to: replyTo || undefined, at: at || undefined }, { headers: { 'Idempotency-Key': key } });
        return {
          id: r.id, seq: r.seq, deliver_at_ms: r.deliver_at_ms, from: S.me && S.me.key, from_name: S.me ? S.me.name : 'you', to_name: name,
          target: 'member:' + (r.to_key || peerKey || ''), body, priority: 'next', reply_to: replyTo,
          sent_at: Date.now(), you: true, read: true,
        };
      },
    });
    ctx.onMessage = async (m) => {
      if (!fromPeer(m)) return false;
      conv.add(m);
      await markRead([m]);
      return true;
    };
    ctx.onVisible = () => { if (pending) guard(() => markRead(Array.from(conv.msgs.values()))); };
    const r = await conv.start();
    if (!r || !ctx.alive()) return;
    await markRead(r.messages || []);
  }

  // --- Peers: #/peers -----------------------------------------------------
  function viewPeers(ctx) {
    const list = h('ul', { class: 'peers' });
    add(ctx.root, list);
    const kv = (label, value) => value != null && value !== '' && [h('dt', null, label), h('dd', null, String(value))];
    const render = () => keepFocus(list, () => fill(list, ...S.peers.slice().sort((a, b) => (b.you - a.you) || byName(a, b)).map((p) =>
      h('li', { class: 'card peer', 'data-testid': 'peer', 'data-peer': p.name },
        h('div', { class: 'peer-head' },
          dot(p.online),
          h('strong', { class: 'peer-name' }, p.name),
          p.you && h('span', { class: 'tag' }, 'you'),
          p.peer_type && h('span', { class: 'tag', 'data-testid': 'peer-type' }, p.peer_type),
          p.role && p.role !== 'member' && h('span', { class: 'tag' }, p.role),
          h('span', { class: 'tag status-' + (p.status || 'idle'), 'data-testid': 'peer-status' }, p.status || ''),
          p.key_changed && h('strong', { class: 'tag danger', 'data-testid': 'peer-key-changed' }, 'KEY CHANGED'),
          !p.key_changed && p.verified && h('span', { class: 'tag ok', 'data-testid': 'peer-verified' }, 'Verified')),
        p.summary && h('p', { class: 'summary' }, p.summary),
        !p.online && p.last_seen_ms && h('p', { class: 'muted' }, 'Last seen ', timeEl(p.last_seen_ms)),
        p.sessions && p.sessions.length > 0 && h('ul', { class: 'sessions', 'aria-label': 'Sessions of ' + p.name },
          p.sessions.map((s) => h('li', { class: 'session', 'data-testid': 'session' },
            h('span', { class: 'session-name' }, s.name || short(s.key)), s.this_session && h('span', { class: 'tag' }, 'this gateway'),
            h('dl', { class: 'kv' },
              kv('Host', s.host), kv('Directory', s.cwd), kv('Branch', s.branch), kv('Repository', s.repo),
              kv('Status', s.status), kv('Summary', s.summary !== p.summary ? s.summary : null),
              kv('Live push', s.live_push ? 'yes' : 'no'))))),
        !p.you && h('p', { class: 'actions' },
          h('a', { href: '#/peer/' + seg(p.name), 'data-fkey': 'v:' + p.name }, 'Verify'), ' ',
          h('a', { href: '#/dm/' + seg(p.name), 'data-fkey': 'm:' + p.name }, 'Message'))))));
    ctx.onPeers = render;
    render();
    return loadPeers();
  }

  // --- Verify a peer: #/peer/<name> ---------------------------------------
  async function viewVerify(ctx) {
    const name = ctx.arg;
    const body = h('div');
    add(ctx.root, body);
    const load = async () => {
      const s = await api('GET', `/api/v1/peers/${seg(name)}/safety`);
      if (!ctx.alive()) return;
      const groups = s.groups && s.groups.length ? s.groups : String(s.safety_number || '').trim().split(/\s+/);
      fill(body,
        s.key_changed && h('div', { class: 'alert danger', role: 'alert', 'data-testid': 'key-changed' },
          h('strong', null, 'KEY CHANGED. '),
          `${s.name}'s key is not the one you verified before. Someone may be impersonating ${s.name}: do not trust messages under this name until you compare the safety number again.`),
        h('p', null, `Compare this safety number with the one ${s.name}'s device shows for you, in person or over a channel you trust. If every digit matches, mark ${s.name} as verified.`),
        h('p', { class: 'safety', 'data-testid': 'safety-number' }, groups.join(' ')),
        isDataImage(s.qr) && h('img', { class: 'qr', src: s.qr, alt: 'QR code of the safety number', width: 220, height: 220 }),
        h('p', null, 'State: ', h('strong', { 'data-testid': 'verify-state', class: s.verified ? 'ok-text' : null }, s.verified ? 'Verified' : 'Not verified')),
        h('p', { class: 'muted' }, 'Key: ', h('code', { class: 'key' }, s.key)),
        h('button', {
          type: 'button', class: 'primary', 'data-testid': 'mark-verified',
          onclick: () => guard(async () => {
            await api('POST', `/api/v1/peers/${seg(name)}/verify`, {});
            refreshPeers();
            await load();
          }),
        }, 'Mark as verified'));
    };
    await load();
  }

  // --- Groups: #/groups ---------------------------------------------------
  async function viewGroups(ctx) {
    const list = h('ul', { class: 'groups' });
    const join = async (group, role) => {
      await api('POST', `/api/v1/groups/${seg(group.replace(/^@/, ''))}/join`, role ? { role } : {});
      await load();
    };
    const nameIn = h('input', { id: 'group-new-name', required: true, autocomplete: 'off', placeholder: 'eng/backend' });
    const roleIn = h('input', { id: 'group-new-role', autocomplete: 'off', placeholder: 'lead' });
    add(ctx.root, h('form', {
      class: 'card form-row', 'aria-label': 'Join a group',
      onsubmit: (e) => { e.preventDefault(); guard(async () => { await join(nameIn.value.trim(), roleIn.value.trim()); nameIn.value = ''; roleIn.value = ''; }); },
    },
    h('label', null, 'Group name', nameIn), h('label', null, 'Role (optional)', roleIn),
    h('button', { type: 'submit', class: 'primary' }, 'Join')), list);
    const load = async () => {
      const groups = await api('GET', '/api/v1/groups');
      if (!ctx.alive()) return;
      keepFocus(list, () => fill(list, ...(groups.length ? groups.sort(byName).map((g) => {
        const rid = 'group-role-' + (++uid);
        const role = h('input', { id: rid, autocomplete: 'off', 'data-fkey': 'r:' + g.name });
        return h('li', { class: 'card group', 'data-testid': 'group', 'data-group': g.name },
          h('h2', null, '@' + g.name, g.joined && h('span', { class: 'tag ok' }, 'joined')),
          h('ul', { class: 'members' }, g.members.map((m) => h('li', null, m.name, m.role && ` (${m.role})`, m.you && h('span', { class: 'tag' }, 'you')))),
          g.joined
            ? h('button', { type: 'button', 'data-fkey': 'l:' + g.name, onclick: () => guard(async () => { await api('POST', `/api/v1/groups/${seg(g.name)}/leave`); await load(); }) }, `Leave @${g.name}`)
            : h('div', { class: 'form-row' }, h('label', { for: rid }, `Role in @${g.name} (optional)`), role,
              h('button', { type: 'button', 'data-fkey': 'j:' + g.name, onclick: () => guard(() => join(g.name, role.value.trim())) }, `Join @${g.name}`)));
      }) : [h('li', { class: 'muted' }, 'No group has members yet.')])));
    };
    ctx.onMembership = () => guard(() => load());
    await load();
  }

  // --- Invite: #/invite ---------------------------------------------------
  function viewInvite(ctx) {
    const uses = h('input', { id: 'invite-uses', type: 'number', min: 1, max: 1000, value: '1', required: true });
    const expiry = h('select', { id: 'invite-expiry', value: '604800' },
      [['3600', '1 hour'], ['86400', '1 day'], ['604800', '7 days'], ['2592000', '30 days']].map(([v, t]) => h('option', { value: v }, t)));
    const role = h('select', { id: 'invite-role', value: 'member' }, h('option', { value: 'member' }, 'member'), h('option', { value: 'admin' }, 'admin'));
    const out = h('div', { class: 'invite-out' });
    add(ctx.root,
      h('p', null, `Anyone with the link can join ${S.mesh} (as many times as it allows, until it expires). Send it privately.`),
      h('form', {
        class: 'card form-row',
        onsubmit: (e) => {
          e.preventDefault();
          guard(async () => {
            const r = await api('POST', '/api/v1/invites', { uses: Number(uses.value) || 1, expires_in: Number(expiry.value), role: role.value });
            if (ctx.alive()) showInvite(r);
          });
        },
      },
      h('label', { for: 'invite-uses' }, 'Uses'), uses,
      h('label', { for: 'invite-expiry' }, 'Expires in'), expiry,
      h('label', { for: 'invite-role' }, 'Role'), role,
      h('button', { type: 'submit', class: 'primary', 'data-testid': 'create-invite' }, 'Create invite')),
      out);
    function showInvite(r) {
      const link = h('input', { id: 'invite-link', readonly: true, 'data-testid': 'invite-link', value: r.url });
      const copied = h('span', { role: 'status', class: 'muted' });
      fill(out, h('section', { class: 'card', 'aria-label': 'The invite' },
        h('label', { for: 'invite-link' }, 'Invite link'),
        h('div', { class: 'form-row' }, link,
          h('button', { type: 'button', 'data-testid': 'copy-invite', onclick: () => guard(() => copy(link, copied)) }, 'Copy'), copied),
        isDataImage(r.qr) && h('img', { class: 'qr', src: r.qr, alt: 'QR code of the invite link', width: 220, height: 220 }),
        h('p', { class: 'muted' }, `${plural(r.max_uses, 'use')}, role ${r.role}, expires `,
          timeEl(r.expires_at * 1000), '. Join with: ', h('code', null, 'claudemesh join <link>')),
        r.app_url && h('p', { class: 'muted' }, 'App link: ', h('code', { class: 'key' }, r.app_url))));
      link.focus();
      link.select();
    }
  }

  async function copy(input, status) {
    try {
      await navigator.clipboard.writeText(input.value);
    } catch (e) {
      input.select();
      document.execCommand('copy');
    }
    status.textContent = 'Copied';
    setTimeout(() => { status.textContent = ''; }, 2000);
  }

  // --- Notifications: #/notifications (and the home page) ----------------
  // --- Scheduled: #/scheduled --------------------------------------------
  /** Messages the broker holds for later (sent with "Send later"): whom,
   *  when, and a Cancel each. The broker holds only the sealed envelope,
   *  so there is no text to show. */
  async function viewScheduled(ctx) {
    const list = h('ul', { class: 'notifs', 'data-testid': 'scheduled-list' });
    add(ctx.root, h('p', { class: 'muted' }, 'Sent with "Send later": the broker holds each, sealed, until its time. It cannot read them, and neither can this list.'), list);
    const load = async () => {
      const r = await api('GET', '/api/v1/scheduled');
      if (!ctx.alive()) return;
      const items = (r && r.messages) || [];
      keepFocus(list, () => fill(list, ...(items.length ? items.map((m) => h('li', {
        class: 'card held', 'data-testid': 'scheduled-item', 'data-id': m.id,
      },
      h('div', null,
        h('span', { class: 'meta' }, h('span', { class: 'where' }, m.to), ' · ',
          h('time', { datetime: new Date(m.deliver_at_ms).toISOString() }, new Date(m.deliver_at_ms).toLocaleString()),
          m.state === 'failed' && [' ', h('span', { class: 'tag danger' }, 'failed')]),
        m.error && h('p', { class: 'excerpt' }, m.error)),
      h('button', {
        type: 'button', 'data-testid': 'scheduled-cancel', 'data-fkey': 'c:' + m.id,
        'aria-label': `Cancel the message to ${m.to} at ${new Date(m.deliver_at_ms).toLocaleString()}`,
        onclick: () => guard(async () => { await api('DELETE', '/api/v1/scheduled/' + seg(m.id)); announce('Cancelled'); await load(); }),
      }, 'Cancel'))) : [h('li', { class: 'muted' }, 'Nothing scheduled.')])));
    };
    await load();
  }

  // --- Memory: #/memory ---------------------------------------------------
  /** The team's memory: notes sealed to the mesh (the broker cannot read
   *  them), searched on this device. Remember one, search, forget. A
   *  peer's note is shown as its words, never as markup. */
  async function viewMemory(ctx) {
    const list = h('ul', { class: 'notifs', 'data-testid': 'memory-list' });
    const textIn = h('textarea', { id: 'memory-text', required: true, rows: 2, maxlength: 8192, placeholder: 'The staging database listens on port 5433' });
    const tagsIn = h('input', { id: 'memory-tags', autocomplete: 'off', placeholder: 'infra, db' });
    const queryIn = h('input', { id: 'memory-query', type: 'search', autocomplete: 'off', placeholder: 'staging port' });
    let query = '';
    const load = async () => {
      const q = query ? '?q=' + encodeURIComponent(query) : '';
      const r = await api('GET', '/api/v1/memory' + q);
      if (!ctx.alive()) return;
      const notes = (r && r.notes) || [];
      keepFocus(list, () => fill(list, ...(notes.length ? notes.map((n) => h('li', {
        class: 'card', 'data-testid': 'memory-item', 'data-id': n.id,
      },
      h('div', null,
        h('span', { class: 'meta' }, h('span', { class: 'where' }, n.author_name || n.author.slice(0, 8)),
          n.departed && [' ', h('span', { class: 'tag' }, 'left')], ' · ', timeEl(n.at_ms),
          n.tags.map((t) => [' ', h('span', { class: 'tag' }, t)])),
        h('p', { class: 'excerpt', 'data-testid': 'memory-text' }, n.text)),
      n.forgettable && h('button', {
        type: 'button', 'data-testid': 'memory-forget', 'data-fkey': 'f:' + n.id,
        'aria-label': 'Forget the note ' + excerpt(n.text, 40),
        onclick: () => guard(async () => { await api('DELETE', '/api/v1/memory/' + seg(n.id)); announce('Forgotten'); await load(); }),
      }, 'Forget'))) : [h('li', { class: 'muted' }, query ? 'No note matches.' : 'Nothing remembered yet.')])));
    };
    add(ctx.root,
      h('p', { class: 'muted' }, 'Notes for the whole mesh: facts, decisions, gotchas. Sealed on this device; the broker stores them and cannot read them.'),
      h('form', {
        class: 'card form-row', 'aria-label': 'Remember a note', 'data-testid': 'memory-form',
        onsubmit: (e) => {
          e.preventDefault();
          guard(async () => {
            await api('POST', '/api/v1/memory', { text: textIn.value, tags: tagList(tagsIn.value) });
            textIn.value = ''; tagsIn.value = '';
            announce('Remembered');
            await load();
          });
        },
      },
      h('label', null, 'Note', textIn), h('label', null, 'Tags (optional)', tagsIn),
      h('button', { type: 'submit', class: 'primary' }, 'Remember')),
      h('form', {
        class: 'form-row', role: 'search', 'aria-label': 'Search the memory',
        onsubmit: (e) => { e.preventDefault(); query = queryIn.value.trim(); guard(load); },
      },
      h('label', null, 'Search', queryIn), h('button', { type: 'submit', 'data-testid': 'memory-search' }, 'Search')),
      list);
    const reload = debounce(() => { if (ctx.alive()) guard(load); }, 150);
    ctx.onCoordination = (d) => { if (concerns(d, 'memory')) reload(); };
    await load();
  }

  // --- Coordination views: tasks, shared state, file leases ----------------
  /** Whether a `coordination` event ({kinds: [...]}) concerns `kind`
   *  (`task` also covers the acts on a task: `task_claim`, `task_release`,
   *  `task_done`); an event that names no kinds concerns every view. */
  const concerns = (d, kind) => !d || !Array.isArray(d.kinds) ||
    d.kinds.some((k) => k === kind || String(k).startsWith(kind + '_'));

  /** A view's list loader that drops stale answers: of two loads under way
   *  only the last one started renders. Returns load(opts). */
  function latest(ctx, fetchIt, render) {
    let gen = 0;
    return async (opts) => {
      const n = ++gen;
      const data = await fetchIt(opts);
      if (!ctx.alive() || n !== gen) return;
      render(data);
    };
  }

  // --- Tasks: #/tasks ------------------------------------------------------
  /** The mesh's shared task list: create, claim, release, complete, delete.
   *  Titles, bodies and results are a peer's words: text only. Claims are
   *  arbitrated by the broker: of two claimants one gets 409, shown as the
   *  problem's detail. */
  async function viewTasks(ctx) {
    const list = h('ul', { class: 'notifs', 'data-testid': 'tasks-list' });
    const statusSel = h('select', { id: 'tasks-status', value: 'open,claimed', onchange: () => guard(() => load()) },
      h('option', { value: 'open,claimed' }, 'Open and claimed'), h('option', { value: 'done' }, 'Done'), h('option', { value: 'all' }, 'All'));
    const titleIn = h('input', { id: 'task-title', required: true, maxlength: 256, autocomplete: 'off', placeholder: 'Fix the flaky login test' });
    const bodyIn = h('textarea', { id: 'task-body', rows: 2, maxlength: 8192, placeholder: 'Details (optional)' });
    const prioSel = h('select', { id: 'task-priority', value: 'normal' },
      ['low', 'normal', 'high', 'urgent'].map((p) => h('option', { value: p }, p)));
    const tagsIn = h('input', { id: 'task-tags', autocomplete: 'off', placeholder: 'ci, auth' });
    const names = h('datalist', { id: 'task-assignee-names' });
    const assigneeIn = h('input', { id: 'task-assignee', autocomplete: 'off', list: 'task-assignee-names', placeholder: 'bob' });
    const renderNames = () => fill(names, S.peers.map((p) => h('option', { value: p.name })));
    renderNames();
    ctx.onPeers = renderNames;
    // Sealed to the whole mesh, or to one topic this member is in (its
    // members alone see the task).
    const scopeSel = h('select', { id: 'task-topic', 'data-testid': 'task-topic', value: '' });
    const renderScopes = () => {
      const chosen = scopeSel.value;
      fill(scopeSel, h('option', { value: '' }, 'The whole mesh'),
        ...S.topics.filter((t) => t.joined).map((t) => h('option', { value: t.name }, '#' + t.name + (t.private ? ' (private)' : ''))));
      scopeSel.value = S.topics.some((t) => t.joined && t.name === chosen) ? chosen : '';
    };
    renderScopes();
    ctx.onCounts = renderScopes;

    const who = (name, key) => name || short(key);
    const statusText = (t) => {
      if (t.status === 'claimed') {
        return 'claimed by ' + who(t.holder_name, t.holder) +
          (t.holder_refused ? ' (your grants refuse them tasks)'
            : t.holder_departed ? (t.topic ? ' (left #' + t.topic + ' or the mesh: anyone in it may claim it)' : ' (left the mesh: anyone may claim it)') : '');
      }
      if (t.status === 'done') return t.holder || t.holder_name ? 'done by ' + who(t.holder_name, t.holder) : 'done';
      return t.status;
    };
    /** Runs one action on a task; whatever its answer (a 409 is shown in
     *  the error area), the list is read again to show where it stands. */
    const act = (fn, said) => guard(async () => {
      try {
        await fn();
        if (said) announce(said);
      } finally {
        if (ctx.alive()) await load(Q).catch(() => {});
      }
    });
    const taskPath = (t) => '/api/v1/tasks/' + seg(t.id);

    const card = (t) => {
      const rid = 'task-result-' + t.short_id;
      const label = excerpt(t.title, 40);
      // A claim of a member who left binds no one: anyone may claim or
      // complete the task.
      const free = t.status === 'open' || (t.status === 'claimed' && t.holder_departed);
      const canComplete = free || (t.status === 'claimed' && t.held_by_me);
      const resultIn = h('input', { id: rid, autocomplete: 'off', maxlength: 8192, 'data-fkey': 'ri:' + t.id, placeholder: 'What was done' });
      return h('li', { class: 'card task', 'data-testid': 'task-item', 'data-id': t.id },
        h('h2', { 'data-testid': 'task-title' }, t.title),
        h('p', { class: 'meta muted' },
          t.priority && t.priority !== 'normal' && h('span', { class: 'tag' + (t.priority === 'urgent' ? ' danger' : t.priority === 'high' ? ' warn' : '') }, t.priority),
          t.topic && h('span', { class: 'tag', 'data-testid': 'task-topic-tag', title: 'Sealed to the members of #' + t.topic }, '#' + t.topic),
          (t.tags || []).map((g) => h('span', { class: 'tag' }, g)),
          ' ', 'by ', who(t.creator_name, t.creator), t.mine && ' (you)', ' · ', timeEl(t.created_at_ms),
          (t.assignee || t.assignee_name) && [' · for ', who(t.assignee_name, t.assignee)],
          t.due_ms && [' · due ', timeEl(t.due_ms)],
          ' · ', h('code', { class: 'key' }, t.short_id)),
        h('p', null, 'Status: ', h('strong', { 'data-testid': 'task-status', class: t.holder_refused ? 'danger-text' : null }, statusText(t))),
        t.body && h('p', { class: 'excerpt task-body' }, t.body),
        t.status === 'done' && t.result && h('p', null, h('span', { class: 'muted' }, 'Result: '), h('span', { class: 'excerpt', 'data-testid': 'task-result' }, t.result)),
        h('div', { class: 'actions' },
          free && h('button', {
            type: 'button', class: 'primary', 'data-testid': 'task-claim', 'data-fkey': 'c:' + t.id, 'aria-label': 'Claim the task ' + label,
            onclick: () => act(() => api('POST', taskPath(t) + '/claim', {}), 'Claimed'),
          }, 'Claim'),
          t.status === 'claimed' && t.held_by_me && h('button', {
            type: 'button', 'data-testid': 'task-release', 'data-fkey': 'r:' + t.id, 'aria-label': 'Release the task ' + label,
            onclick: () => act(() => api('POST', taskPath(t) + '/release', {}), 'Released'),
          }, 'Release'),
          t.status === 'claimed' && !t.held_by_me && !t.holder_departed && t.can_force && h('button', {
            type: 'button', 'data-testid': 'task-force', 'data-fkey': 'f:' + t.id,
            'aria-label': `Take the task ${label} from ${who(t.holder_name, t.holder)} (force release)`,
            onclick: () => act(() => api('POST', taskPath(t) + '/release', { force: true }), 'Released'),
          }, 'Force release'),
          (t.mine || t.can_force) && h('button', {
            type: 'button', 'data-testid': 'task-delete', 'data-fkey': 'd:' + t.id, 'aria-label': 'Delete the task ' + label,
            onclick: () => act(() => api('DELETE', taskPath(t)), 'Deleted'),
          }, 'Delete'),
          canComplete && h('form', {
            class: 'form-row', 'aria-label': 'Complete the task ' + label,
            onsubmit: (e) => {
              e.preventDefault();
              const result = resultIn.value.trim();
              act(() => api('POST', taskPath(t) + '/complete', result ? { result } : {}), 'Completed');
            },
          },
          h('label', { for: rid, class: 'sr-only' }, 'Result (optional)'), resultIn,
          h('button', { type: 'submit', 'data-testid': 'task-complete', 'data-fkey': 'k:' + t.id }, 'Complete'))));
    };
    const load = latest(ctx,
      (opts) => api('GET', '/api/v1/tasks?status=' + encodeURIComponent(statusSel.value), undefined, opts),
      (r) => {
        const tasks = (r && r.tasks) || [];
        keepFocus(list, () => keepValues(list, () => fill(list, ...(tasks.length ? tasks.map(card) : [h('li', { class: 'muted' }, 'No task.')]))));
      });
    const reload = debounce(() => { if (ctx.alive()) guard(() => load(Q)); }, 150);
    ctx.onCoordination = (d) => { if (concerns(d, 'task')) reload(); };

    add(ctx.root,
      h('p', { class: 'muted' }, 'The mesh\'s shared work: anyone may claim an open task; the broker lets exactly one claimant win. Titles, details and results are sealed to the mesh, or to the members of the topic you choose.'),
      h('form', {
        class: 'card form-row', 'aria-label': 'Create a task', 'data-testid': 'task-form',
        onsubmit: (e) => {
          e.preventDefault();
          guard(async () => {
            const body = { title: titleIn.value.trim(), priority: prioSel.value, tags: tagList(tagsIn.value) };
            if (bodyIn.value.trim()) body.body = bodyIn.value;
            if (assigneeIn.value.trim()) body.assignee = assigneeIn.value.trim();
            if (scopeSel.value) body.topic = scopeSel.value;
            await api('POST', '/api/v1/tasks', body);
            titleIn.value = ''; bodyIn.value = ''; tagsIn.value = ''; assigneeIn.value = ''; prioSel.value = 'normal'; scopeSel.value = '';
            announce('Task created');
            await load();
          });
        },
      },
      h('label', null, 'Title', titleIn), h('label', null, 'Details (optional)', bodyIn),
      h('label', null, 'Priority', prioSel), h('label', null, 'Tags (optional)', tagsIn),
      h('label', null, 'For (optional)', assigneeIn), names,
      h('label', null, 'Sealed to', scopeSel),
      h('button', { type: 'submit', class: 'primary', 'data-testid': 'task-create' }, 'Create task')),
      h('div', { class: 'form-row' }, h('label', { for: 'tasks-status' }, 'Show'), statusSel),
      list);
    await load();
  }

  // --- Shared state: #/state -----------------------------------------------
  /** The mesh's shared key/value state: each key a JSON value, a version,
   *  its last writer. Set (optionally only at a version), delete. */
  async function viewState(ctx) {
    const list = h('ul', { class: 'notifs', 'data-testid': 'state-list' });
    const prefixIn = h('input', { id: 'state-prefix', type: 'search', autocomplete: 'off', placeholder: 'deploy/' });
    const keyIn = h('input', { id: 'state-key', required: true, autocomplete: 'off', placeholder: 'deploy/lock' });
    const valueIn = h('textarea', { id: 'state-value', rows: 2, placeholder: '{"by":"alice"}' });
    const ifIn = h('input', { id: 'state-if-version', type: 'number', min: 0, step: 1, inputmode: 'numeric', autocomplete: 'off' });
    let prefix = '';
    const statePath = (key) => '/api/v1/state/' + seg(key);
    /** What was typed: JSON when it parses, else the text as a JSON string. */
    const parseValue = (v) => { try { return JSON.parse(v); } catch (e) { return v; } };
    const compact = (v) => { try { return JSON.stringify(v); } catch (e) { return String(v); } };
    const row = (e) => h('li', { class: 'card held coord', 'data-testid': 'state-item', 'data-key': e.key },
      h('div', null,
        h('code', { class: 'key state-key', 'data-testid': 'state-key' }, e.key),
        h('p', { class: 'excerpt' }, h('code', { class: 'key', 'data-testid': 'state-value' }, compact(e.value))),
        h('p', { class: 'meta muted' }, 'version ', h('span', { 'data-testid': 'state-version' }, String(e.version)),
          ' · by ', h('span', { 'data-testid': 'state-writer' }, e.writer_name || short(e.writer)), ' · ', timeEl(e.updated_at_ms))),
      h('button', {
        type: 'button', 'data-testid': 'state-delete', 'data-fkey': 'd:' + e.key,
        'aria-label': 'Delete the key ' + e.key,
        onclick: () => guard(async () => {
          try {
            await api('DELETE', `${statePath(e.key)}?if_version=${encodeURIComponent(e.version)}`);
            announce('Deleted ' + e.key);
          } finally {
            if (ctx.alive()) await load(Q).catch(() => {});
          }
        }),
      }, 'Delete'));
    const load = latest(ctx,
      (opts) => api('GET', '/api/v1/state' + (prefix ? '?prefix=' + encodeURIComponent(prefix) : ''), undefined, opts),
      (r) => {
        const entries = (r && r.entries) || [];
        keepFocus(list, () => fill(list, ...(entries.length ? entries.map(row) : [h('li', { class: 'muted' }, 'No key is set.')])));
      });
    const reload = debounce(() => { if (ctx.alive()) guard(() => load(Q)); }, 150);
    ctx.onCoordination = (d) => { if (concerns(d, 'state')) reload(); };
    const filter = () => { prefix = prefixIn.value.trim(); return load(); };
    const typed = debounce(() => { if (ctx.alive()) guard(filter); }, 300);
    prefixIn.addEventListener('input', typed);

    add(ctx.root,
      h('p', { class: 'muted' }, 'Keys the whole mesh reads and writes, each holding a JSON value. "Only if at version" refuses the write when someone changed the key since.'),
      h('form', {
        class: 'card form-row', 'aria-label': 'Set a key', 'data-testid': 'state-form',
        onsubmit: (ev) => {
          ev.preventDefault();
          guard(async () => {
            const key = keyIn.value.trim();
            const body = { value: parseValue(valueIn.value) };
            if (ifIn.value.trim() !== '') body.if_version = Number(ifIn.value);
            try {
              await api('PUT', statePath(key), body);
              keyIn.value = ''; valueIn.value = ''; ifIn.value = '';
              announce('Set ' + key);
            } finally {
              if (ctx.alive()) await load(Q).catch(() => {});
            }
          });
        },
      },
      h('label', null, 'Key', keyIn), h('label', null, 'Value (JSON, or text)', valueIn),
      h('label', null, 'Only if at version (optional)', ifIn),
      h('button', { type: 'submit', class: 'primary', 'data-testid': 'state-set' }, 'Set')),
      h('form', {
        class: 'form-row', role: 'search', 'aria-label': 'Filter the keys',
        onsubmit: (ev) => { ev.preventDefault(); guard(filter); },
      },
      h('label', null, 'Keys starting with', prefixIn), h('button', { type: 'submit', 'data-testid': 'state-filter' }, 'Filter')),
      list);
    await load();
  }

  // --- File leases: #/leases -----------------------------------------------
  /** Who is editing which paths of which repository: leases taken by the
   *  agents' tools (or here), each until it expires or is released. */
  async function viewLeases(ctx) {
    const list = h('ul', { class: 'notifs', 'data-testid': 'leases-list' });
    const repoIn = h('input', { id: 'lease-repo', required: true, autocomplete: 'off', placeholder: 'github.com/example/app' });
    const pathsIn = h('input', { id: 'lease-paths', required: true, autocomplete: 'off', placeholder: 'src/net/, Cargo.toml' });
    const reasonIn = h('input', { id: 'lease-reason', autocomplete: 'off', maxlength: 280, placeholder: 'refactoring the HTTP client' });
    const sharedIn = h('input', { id: 'lease-shared', type: 'checkbox' });
    const ttlIn = h('input', { id: 'lease-ttl', type: 'number', min: 1, step: 1, value: '30', inputmode: 'numeric' });
    let expiry = 0;
    const untilEl = (ms) => {
      const d = new Date(ms);
      if (!ms || isNaN(d)) return null;
      return h('time', { datetime: d.toISOString(), title: d.toLocaleString() }, d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }));
    };
    const card = (l) => h('li', { class: 'card held coord', 'data-testid': 'lease-item', 'data-id': l.id },
      h('div', null,
        h('p', { class: 'meta' }, h('strong', { 'data-testid': 'lease-repo' }, l.repo),
          h('span', { class: 'tag' + (l.exclusive ? ' warn' : ''), 'data-testid': 'lease-kind' }, l.exclusive ? 'exclusive' : 'shared')),
        h('p', { class: 'excerpt' }, h('code', { class: 'key', 'data-testid': 'lease-paths' }, (l.paths || []).join(', '))),
        h('p', { class: 'meta muted' }, 'held by ', h('span', { 'data-testid': 'lease-holder' }, l.holder_name || short(l.holder)),
          l.mine && ' (you)', ' · until ', untilEl(l.expires_at_ms)),
        l.reason && h('p', { class: 'excerpt', 'data-testid': 'lease-reason' }, l.reason)),
      l.can_release && h('button', {
        type: 'button', 'data-testid': 'lease-release', 'data-fkey': 'r:' + l.id,
        'aria-label': `Release the lease on ${(l.paths || []).join(', ')} in ${l.repo}`,
        onclick: () => guard(async () => {
          try {
            await api('DELETE', '/api/v1/leases/' + seg(l.id));
            announce('Released');
          } finally {
            if (ctx.alive()) await load(Q).catch(() => {});
          }
        }),
      }, 'Release'));
    const load = latest(ctx,
      (opts) => api('GET', '/api/v1/leases', undefined, opts),
      (r) => {
        const leases = (r && r.leases) || [];
        keepFocus(list, () => fill(list, ...(leases.length ? leases.map(card) : [h('li', { class: 'muted' }, 'No live lease.')])));
        // An expired lease leaves the list at its time, without an event.
        clearTimeout(expiry);
        const next = Math.min(...leases.map((l) => l.expires_at_ms).filter((ms) => ms > 0));
        if (isFinite(next)) {
          expiry = setTimeout(() => { if (ctx.alive()) guard(() => load(Q)); }, Math.min(Math.max(next - Date.now(), 0) + 1000, 2 ** 31 - 1));
        }
      });
    const reload = debounce(() => { if (ctx.alive()) guard(() => load(Q)); }, 150);
    ctx.onCoordination = (d) => { if (concerns(d, 'lease')) reload(); };

    add(ctx.root,
      h('p', { class: 'muted' }, 'Paths an agent or person is working on: an exclusive lease stands in the way of every other; shared ones only of an exclusive one. Agents take them through their tools.'),
      list,
      h('form', {
        class: 'card form-row', 'aria-label': 'Take a lease', 'data-testid': 'lease-form',
        onsubmit: (e) => {
          e.preventDefault();
          guard(async () => {
            const body = { repo: repoIn.value.trim(), paths: tagList(pathsIn.value), shared: sharedIn.checked };
            const ttl = Number(ttlIn.value);
            if (ttlIn.value.trim() !== '' && ttl > 0) body.ttl_minutes = ttl;
            if (reasonIn.value.trim()) body.reason = reasonIn.value.trim();
            try {
              await api('POST', '/api/v1/leases', body);
              pathsIn.value = ''; reasonIn.value = ''; sharedIn.checked = false;
              announce('Lease taken');
            } finally {
              if (ctx.alive()) await load(Q).catch(() => {});
            }
          });
        },
      },
      h('label', null, 'Repository', repoIn), h('label', null, 'Paths (comma list)', pathsIn),
      h('label', null, 'Reason (optional)', reasonIn), h('label', null, 'Minutes', ttlIn),
      h('label', { class: 'check' }, sharedIn, ' Shared'),
      h('button', { type: 'submit', class: 'primary', 'data-testid': 'lease-take' }, 'Take lease')));
    await load();
  }

  function viewNotifications(ctx) {
    const list = h('ul', { class: 'notifs' });
    const tools = h('p', { class: 'actions' });
    add(ctx.root, tools, list);
    const markRead = (body) => guard(async () => { await api('POST', '/api/v1/messages/read', body); await loadCounts(Q); });
    const render = () => {
      const items = S.unread.slice().sort((a, b) => (b.mentions_me - a.mentions_me) || (b.sent_at - a.sent_at));
      fill(tools,
        items.length > 0 && h('button', { type: 'button', onclick: () => markRead({ up_to: Math.max(...items.map((m) => m.cursor || 0)) }) }, 'Mark all read'),
        ' ',
        'Notification' in window && Notification.permission === 'default' &&
          h('button', { type: 'button', onclick: () => guard(async () => { await Notification.requestPermission(); render(); }) }, 'Enable desktop notifications'));
      keepFocus(list, () => fill(list, ...(items.length ? items.map((m) => {
        const href = linkFor(m);
        const content = [
          h('span', { class: 'meta' }, h('span', { class: 'where' }, whereLabel(m)), ' · ', h('span', { class: 'sender' }, senderName(m)), ' · ', timeEl(m.sent_at),
            m.mentions_me && h('span', { class: 'tag mention' }, '@ mentions you')),
          h('span', { class: 'excerpt' }, href ? excerpt(m.body, 200) : m.body)];
        return h('li', { class: 'card notif' + (m.mentions_me ? ' mentions-me' : ''), 'data-testid': 'notification', 'data-id': m.id },
          href ? h('a', { href, class: 'notif-link', 'data-fkey': 'n:' + m.id }, content) : h('div', { class: 'notif-link' }, content),
          !href && h('button', { type: 'button', 'data-fkey': 'r:' + m.id, onclick: () => markRead({ ids: [m.id] }) }, 'Mark read'));
      }) : [h('li', { class: 'muted' }, 'Nothing unread.')])));
    };
    ctx.onCounts = render;
    render();
    return loadCounts();
  }

  /** A desktop notification for a direct message or a mention, when the
   *  page is hidden and the user allowed them. */
  function desktopNotify(m) {
    if (!('Notification' in window) || Notification.permission !== 'granted') return;
    if (!isDirect(m) && !m.mentions_me) return;
    const n = new Notification(`${senderName(m)} · ${whereLabel(m)}`, { body: excerpt(m.body, 200), tag: m.id });
    const href = linkFor(m);
    n.onclick = () => { window.focus(); if (href) location.hash = href; n.close(); };
  }

  // --- Me: #/me -----------------------------------------------------------
  async function viewMe(ctx) {
    const p = await api('GET', '/api/v1/profile');
    if (!ctx.alive()) return;
    S.me = p;
    const status = h('select', { id: 'me-status', 'data-testid': 'me-status', value: p.status || 'idle' },
      h('option', { value: 'idle' }, 'idle'), h('option', { value: 'working' }, 'working'), h('option', { value: 'dnd' }, 'dnd (do not disturb)'));
    const summary = h('input', { id: 'me-summary', 'data-testid': 'me-summary', maxlength: 280, value: p.summary || '', autocomplete: 'off' });
    const saved = h('span', { role: 'status', class: 'ok-text' });
    add(ctx.root,
      h('dl', { class: 'kv card' },
        h('dt', null, 'Name'), h('dd', { 'data-testid': 'me-name' }, p.name),
        h('dt', null, 'Peer type'), h('dd', { 'data-testid': 'me-peer-type' }, p.peer_type || ''),
        h('dt', null, 'Session'), h('dd', null, p.session || ''),
        h('dt', null, 'Key'), h('dd', null, h('code', { class: 'key' }, p.key || ''))),
      h('form', {
        class: 'card stack',
        onsubmit: (e) => {
          e.preventDefault();
          guard(async () => {
            saved.textContent = '';
            S.me = await api('PATCH', '/api/v1/profile', { status: status.value, summary: summary.value.replace(/[\r\n]+/g, ' ') });
            saved.textContent = 'Saved';
            renderSidebar();
          });
        },
      },
      h('label', { for: 'me-status' }, 'Status'), status,
      h('label', { for: 'me-summary' }, 'Summary'), summary,
      h('p', { class: 'muted' }, 'One line that peers see next to your name. While you are working or dnd, only urgent (now) messages arrive live.'),
      h('div', { class: 'form-row' }, h('button', { type: 'submit', class: 'primary', 'data-testid': 'me-save' }, 'Save'), saved)));
  }

  // --- Message status: #/message/<id> -------------------------------------
  async function viewStatus(ctx) {
    const id = ctx.arg;
    const body = h('div');
    add(ctx.root, body);
    const recipient = (rc) => h('li', { class: 'card recipient', 'data-testid': 'recipient', 'data-name': rc.name },
      h('h2', null, rc.name,
        rc.name_ambiguous && h('span', { class: 'tag warn' }, 'name ambiguous'),
        rc.pin_mismatch && h('strong', { class: 'tag danger' }, 'KEY CHANGED')),
      h('p', null, 'State: ', h('strong', { 'data-testid': 'recipient-state' }, rc.state || 'unknown'),
        rc.observed && rc.observed !== rc.state && h('span', { class: 'muted' }, ` (the broker says ${rc.observed})`)),
      h('p', { 'data-testid': 'recipient-proven' }, rc.proven
        ? h('span', { class: 'tag ok' }, `proven: ${rc.proven}`)
        : h('span', { class: 'tag warn' }, 'broker only')),
      rc.proof && h('p', { class: 'proof', 'data-testid': 'recipient-proof' }, rc.proof),
      rc.proofs && rc.proofs.length > 0 && h('details', null, h('summary', null, `Receipts (${rc.proofs.length})`),
        h('ul', { class: 'proofs' }, rc.proofs.map((p) => h('li', { class: p.ok ? null : 'bad' },
          `${p.state} · ${p.kind} · via ${p.via} · `, timeEl(p.at_ms), ` · session ${short(p.session)}`,
          p.ok ? ' · signature verified' : h('strong', { class: 'danger-text' }, ` · does not hold: ${p.error || 'invalid'}`))))));
    const load = async () => {
      const r = await api('GET', '/api/v1/messages/' + seg(id));
      if (!ctx.alive()) return;
      const d = r.delivery;
      fill(body,
        h('p', { class: 'muted' }, 'Message ', h('code', { class: 'key' }, r.id || id)),
        !d && h('p', null, 'This device has no delivery record for it: only messages sent through this gateway have one.'),
        d && h('p', null, 'Sent: ', h('strong', { 'data-testid': 'delivery-state' }, d.state),
          d.target && [' · to ', d.target.startsWith('member:') ? ((d.recipients || [])[0] || {}).name || 'a member' : d.target],
          d.deadline_ms && [' · expires ', timeEl(d.deadline_ms)]),
        d && h('p', { class: 'muted' }, 'A state is proven only when the recipient\'s device signed a receipt for it; "broker only" is the broker\'s word.'),
        d && h('ul', { class: 'recipients' }, (d.recipients || []).map(recipient)));
    };
    const reload = debounce(() => guard(load), 150);
    ctx.onStatus = (d) => { if (d && d.id === id) reload(); };
    await load();
  }

  // --- A used or expired sign-in link, while a session is still valid ------
  function viewSigninFailed(ctx) {
    add(ctx.root,
      h('p', { class: 'alert warn', 'data-testid': 'signin-failed' }, 'That sign-in link was already used or has expired. You are still signed in here.'),
      h('p', null, h('a', { href: '#/' }, 'Continue')));
  }

  // -----------------------------------------------------------------------
  // 9. Router
  // -----------------------------------------------------------------------

  // title(arg) -> the view's heading; testid on its section; perMesh: the
  // route names something of one mesh (left on a mesh switch); arg: needs one.
  const ROUTES = {
    '': { title: () => 'Notifications', testid: 'notifications-view', view: viewNotifications },
    notifications: { title: () => 'Notifications', testid: 'notifications-view', view: viewNotifications },
    topics: { title: (a) => '#' + a, testid: 'topic-view', view: viewTopic, perMesh: true, arg: true, chat: true },
    dm: { title: (a) => a, testid: 'dm-view', view: viewDm, perMesh: true, arg: true, chat: true },
    peers: { title: () => 'Peers', testid: 'peers-view', view: viewPeers },
    peer: { title: (a) => 'Verify ' + a, testid: 'verify-view', view: viewVerify, perMesh: true, arg: true },
    groups: { title: () => 'Groups', testid: 'groups-view', view: viewGroups },
    invite: { title: () => 'Invite', testid: 'invite-view', view: viewInvite },
    scheduled: { title: () => 'Scheduled messages', testid: 'scheduled-view', view: viewScheduled },
    memory: { title: () => 'Team memory', testid: 'memory-view', view: viewMemory },
    tasks: { title: () => 'Tasks', testid: 'tasks-view', view: viewTasks },
    state: { title: () => 'Shared state', testid: 'state-view', view: viewState },
    leases: { title: () => 'File leases', testid: 'leases-view', view: viewLeases },
    me: { title: () => 'Me', testid: 'me-view', view: viewMe },
    message: { title: () => 'Message status', testid: 'status-view', view: viewStatus, perMesh: true, arg: true },
    'signin-failed': { title: () => 'Sign-in link not valid', testid: 'signin-failed-view', view: viewSigninFailed },
  };

  function parseHash() {
    const m = /^#\/([a-z-]*)(?:\/(.*))?$/.exec(location.hash);
    if (!m) return { name: '', arg: null };
    let arg = null;
    if (m[2]) {
      try { arg = decodeURIComponent(m[2]); } catch (e) { arg = m[2]; }
    }
    return { name: m[1], arg };
  }

  /** Opens the view the hash names: a section with its heading at once,
   *  then the view fills it. ctx.alive() is false once another route ran. */
  function route(focus) {
    if (!S.ready) return;
    if (!S.signedIn) { showSignin(); return; }
    if (location.hash && !location.hash.startsWith('#/')) return; // e.g. #main
    let r = parseHash();
    let def = ROUTES[r.name];
    if (!def || (def.arg && !r.arg)) { r = { name: '', arg: null }; def = ROUTES['']; }
    clearErrors();
    toggleMenu(false);
    const seq = ++S.seq;
    const title = def.title(r.arg);
    const h1 = h('h1', { id: 'view-title', tabindex: '-1' }, title);
    const head = h('header', { class: 'view-head' }, h1);
    const root = h('section', { class: 'view' + (def.chat ? ' chat' : ''), 'data-testid': def.testid, 'aria-labelledby': 'view-title' }, head);
    const ctx = {
      name: r.name, arg: r.arg, title, root, head,
      href: r.name ? '#/' + r.name + (r.arg ? '/' + seg(r.arg) : '') : '#/',
      alive: () => seq === S.seq && S.signedIn,
    };
    S.view = ctx;
    fill(ui.view, root);
    renderSidebar();
    if (focus) h1.focus();
    guard(async () => {
      try { await def.view(ctx); } catch (e) { ctx.failed = true; throw e; }
    });
  }

  // -----------------------------------------------------------------------
  // 10. Live events: one EventSource on the current mesh
  // -----------------------------------------------------------------------

  function connectEvents() {
    if (S.es) S.es.close();
    clearTimeout(S.esRetry);
    const es = new EventSource('/api/v1/events?mesh=' + seg(S.mesh));
    S.es = es;
    const on = (kind, fn) => es.addEventListener(kind, (ev) => {
      if (S.es !== es) return;
      let d;
      try { d = JSON.parse(ev.data); } catch (e) { return; }
      guard(() => fn(d));
    });
    on('message', onMessageEvent);
    on('status', (d) => callView('onStatus', d));
    on('presence', () => refreshPeers());
    on('coordination', (d) => callView('onCoordination', d));
    on('membership', () => { refreshPeers(); refreshCounts(); callView('onMembership'); });
    on('connection', (d) => {
      S.link = d.state || 'up';
      S.linkReason = d.reason || null;
      renderBanner();
      if (S.link === 'up') { refreshPeers(); refreshCounts(); if (S.view && S.view.failed) route(false); }
    });
    on('rejected', (d) => showProblem({
      title: 'A message failed verification and was not shown',
      detail: `From ${d.sender ? short(d.sender) : 'an unknown sender'}: ${d.reason || 'no reason given'}`,
    }));
    es.addEventListener('open', () => {
      if (S.es !== es) return;
      if (S.liveDown) { S.liveDown = false; renderBanner(); refreshCounts(); refreshPeers(); }
    });
    es.addEventListener('error', () => {
      if (S.es !== es) return;
      // The browser retries by itself (with Last-Event-ID, so nothing is
      // lost); say so only if it takes a while, and if it gave up (an HTTP
      // error), check the session and open a new stream.
      setTimeout(() => { if (S.es === es && es.readyState !== 1) { S.liveDown = true; renderBanner(); } }, 1500);
      if (es.readyState === 2) {
        S.esRetry = setTimeout(() => guard(async () => {
          await api('GET', '/web/session', undefined, Q);
          if (S.signedIn && S.es === es) connectEvents();
        }), 3000);
      }
    });
  }

  /** A message was stored: the open view shows it (and marks it read if it
   *  is on screen), the badges follow, screen readers hear of it. */
  async function onMessageEvent(m) {
    const shown = await callView('onMessage', m);
    if (!m.read && !isMine(m)) {
      const where = isDirect(m) ? '' : ` in ${whereLabel(m)}`;
      announce(`New message from ${senderName(m)}${where}: ${excerpt(m.body, 140)}`);
      if (!visible()) desktopNotify(m);
      if (!shown && !S.unread.some((x) => x.id === m.id)) {
        // Show the badge at once; refreshCounts() below brings the truth.
        S.unread.push(m);
        const t = (m.target || '').startsWith('#') && S.topics.find((x) => '#' + x.name === m.target);
        if (t) t.unread = (t.unread || 0) + 1;
        renderSidebar();
        callView('onCounts');
      }
    }
    refreshCounts();
  }

  // -----------------------------------------------------------------------
  // 11. Boot
  // -----------------------------------------------------------------------

  async function boot() {
    window.addEventListener('hashchange', () => route(true));
    document.addEventListener('visibilitychange', () => { if (visible()) callView('onVisible'); });
    let sess;
    try {
      sess = await api('GET', '/web/session', undefined, Q);
    } catch (e) {
      S.ready = true;
      if (e.status !== 401) {
        const p = e.problem || {};
        fill($('app'), h('main', { id: 'main', class: 'signin-main' }, h('section', { class: 'card signin', role: 'alert' },
          h('h1', null, 'The gateway does not answer'), h('p', null, p.detail || String(e.message)), p.hint && h('p', { class: 'hint' }, p.hint),
          h('button', { type: 'button', class: 'primary', onclick: () => location.reload() }, 'Try again'))));
      }
      return;
    }
    S.ready = true;
    S.signedIn = true;
    S.csrf = sess.csrf || '';
    S.meshes = sess.meshes || [];
    let saved = null;
    try { saved = sessionStorage.getItem('cm.mesh'); } catch (e) { /* private mode */ }
    const pick = S.meshes.find((m) => m.name === saved) || S.meshes.find((m) => m.default) || S.meshes[0];
    if (!pick) {
      fill($('app'), h('main', { id: 'main', class: 'signin-main' }, h('section', { class: 'card signin' },
        h('h1', null, 'No mesh yet'), h('p', null, 'This gateway serves no mesh. Create or join one with the command line:'),
        h('pre', null, h('code', null, 'claudemesh join <invite link>')))));
      return;
    }
    S.mesh = pick.name;
    buildShell();
    fill(ui.view, h('p', { class: 'muted loading' }, 'Loading…'));
    await loadMesh();
    if (S.signedIn) route(false);
  }

  window.addEventListener('unhandledrejection', (e) => { if (e.reason instanceof ApiError) e.preventDefault(); });
  boot();
})();
