/*! careline website chat widget - one file, no dependencies, no build step.
 * Embed: <script src="https://gateway.example/widget.js" data-locale="vi"
 *                 data-title="Sao Viet Mobile" data-color="#0a7cff" async></script>
 * Protocol: docs/WIDGET_PROTOCOL.md. Message text is only ever inserted as text nodes.
 * The file is pure ASCII (non-ASCII text as \u escapes), so it works on host pages in any
 * encoding, even when served without "charset=utf-8". */
(() => {
  'use strict';
  if (window.Careline && window.Careline.version) return; // embedded twice: keep the first

  // ---- configuration (from the script tag) --------------------------------------------------
  const script = document.currentScript ||
    [...document.querySelectorAll('script[src]')].find((s) => /\/widget\.js(?:[?#].*)?$/.test(s.getAttribute('src') || ''));
  const attr = (k) => ((script && script.getAttribute('data-' + k)) || '').trim();
  let base;
  try { base = new URL(attr('gateway') || (script && script.src) || location.href, location.href); } catch (_) { base = new URL(location.href); }
  const ORIGIN = base.origin;
  const WS_URL = (base.protocol === 'https:' ? 'wss:' : 'ws:') + '//' + base.host + '/ws/widget';
  const wanted = (attr('locale') || navigator.language || '').toLowerCase();
  const LOCALE = wanted.startsWith('vi') ? 'vi' : 'en';
  let color = attr('color');
  if (!color || !(window.CSS && CSS.supports && CSS.supports('color', color))) color = '#0a7cff';

  // UI strings (Vietnamese is \u-escaped, see the header; `node -p "'\u0110ang'"` decodes one)
  const STRINGS = {
    en: {
      title: 'Chat with us', launcher: 'Chat', open: 'Open chat', close: 'Close chat', end: 'End chat',
      endConfirm: 'End this chat?', log: 'Conversation', input: 'Message', placeholder: 'Type a message\u2026',
      send: 'Send', quick: 'Suggested replies', sending: 'Sending\u2026', failed: 'Not sent', agent: 'Agent',
      botTyping: 'The assistant is typing', agentTyping: 'The agent is typing',
      connecting: 'Connecting\u2026', reconnecting: 'Reconnecting\u2026', blocked: 'Chat is not available on this website.',
      empty: 'Hi! Ask us anything about orders, delivery, warranty or a problem with your device.',
      st: { BOT: 'Virtual assistant \u00b7 replies instantly', WAITING_AGENT: 'Waiting for an agent\u2026',
        WITH_AGENT: 'Chatting with an agent', SURVEY: 'Quick feedback', CLOSED: 'Chat ended' },
      closed: 'This chat has ended. Send a message any time to start a new one.',
      place: 'number {n} in line', eta: 'about {m} min',
      err: {
        rate_limited: "You're sending messages too fast \u2014 please wait a moment.",
        text_too_long: 'That message is too long (max {n} characters).', empty_text: 'That message is empty.',
        internal: 'Something went wrong on our side \u2014 we will retry shortly.',
        unavailable: 'We cannot save messages just now \u2014 yours will be sent as soon as we can.',
        too_many_connections: 'Too many chats are open from your network \u2014 retrying shortly.',
        origin_not_allowed: 'Chat is not available on this website.', generic: 'Something went wrong. Please try again.',
      },
    },
    vi: {
      title: 'Chat v\u1edbi ch\u00fang t\u00f4i', launcher: 'Nh\u1eafn tin', open: 'M\u1edf khung chat', close: '\u0110\u00f3ng khung chat',
      end: 'K\u1ebft th\u00fac', endConfirm: 'K\u1ebft th\u00fac chat?', log: 'Cu\u1ed9c tr\u00f2 chuy\u1ec7n', input: 'Tin nh\u1eafn',
      placeholder: 'Nh\u1eadp tin nh\u1eafn\u2026', send: 'G\u1eedi', quick: 'G\u1ee3i \u00fd tr\u1ea3 l\u1eddi', sending: '\u0110ang g\u1eedi\u2026',
      failed: 'Ch\u01b0a g\u1eedi \u0111\u01b0\u1ee3c', agent: 'Nh\u00e2n vi\u00ean', botTyping: 'Tr\u1ee3 l\u00fd \u0111ang so\u1ea1n tin', agentTyping: 'Nh\u00e2n vi\u00ean \u0111ang so\u1ea1n tin',
      connecting: '\u0110ang k\u1ebft n\u1ed1i\u2026', reconnecting: '\u0110ang k\u1ebft n\u1ed1i l\u1ea1i\u2026', blocked: 'Khung chat ch\u01b0a \u0111\u01b0\u1ee3c b\u1eadt cho trang web n\u00e0y.',
      empty: 'Xin ch\u00e0o! B\u1ea1n c\u1ea7n h\u1ed7 tr\u1ee3 v\u1ec1 \u0111\u01a1n h\u00e0ng, giao h\u00e0ng, b\u1ea3o h\u00e0nh hay s\u1ef1 c\u1ed1 m\u00e1y? C\u1ee9 nh\u1eafn cho ch\u00fang t\u00f4i nh\u00e9.',
      st: { BOT: 'Tr\u1ee3 l\u00fd \u1ea3o \u00b7 tr\u1ea3 l\u1eddi ngay', WAITING_AGENT: '\u0110ang ch\u1edd nh\u00e2n vi\u00ean\u2026',
        WITH_AGENT: '\u0110ang chat v\u1edbi nh\u00e2n vi\u00ean', SURVEY: 'G\u00f3p \u00fd nhanh', CLOSED: '\u0110\u00e3 k\u1ebft th\u00fac' },
      closed: 'Cu\u1ed9c tr\u00f2 chuy\u1ec7n \u0111\u00e3 k\u1ebft th\u00fac. B\u1ea1n c\u00f3 th\u1ec3 nh\u1eafn b\u1ea5t c\u1ee9 l\u00fac n\u00e0o \u0111\u1ec3 b\u1eaft \u0111\u1ea7u cu\u1ed9c m\u1edbi.',
      place: 'v\u1ecb tr\u00ed s\u1ed1 {n}', eta: 'kho\u1ea3ng {m} ph\u00fat',
      err: {
        rate_limited: 'B\u1ea1n g\u1eedi tin h\u01a1i nhanh \u2014 vui l\u00f2ng \u0111\u1ee3i m\u1ed9t ch\u00fat nh\u00e9.',
        text_too_long: 'Tin nh\u1eafn qu\u00e1 d\u00e0i (t\u1ed1i \u0111a {n} k\u00fd t\u1ef1).', empty_text: 'Tin nh\u1eafn \u0111ang tr\u1ed1ng.',
        internal: 'H\u1ec7 th\u1ed1ng \u0111ang g\u1eb7p s\u1ef1 c\u1ed1 \u2014 ch\u00fang t\u00f4i s\u1ebd th\u1eed g\u1eedi l\u1ea1i sau gi\u00e2y l\u00e1t.',
        unavailable: 'H\u1ec7 th\u1ed1ng \u0111ang t\u1ea1m gi\u00e1n \u0111o\u1ea1n \u2014 tin nh\u1eafn c\u1ee7a b\u1ea1n s\u1ebd \u0111\u01b0\u1ee3c g\u1eedi ngay khi c\u00f3 th\u1ec3.',
        too_many_connections: 'C\u00f3 qu\u00e1 nhi\u1ec1u khung chat \u0111ang m\u1edf t\u1eeb m\u1ea1ng c\u1ee7a b\u1ea1n \u2014 \u0111ang th\u1eed l\u1ea1i.',
        origin_not_allowed: 'Khung chat ch\u01b0a \u0111\u01b0\u1ee3c b\u1eadt cho trang web n\u00e0y.', generic: '\u0110\u00e3 c\u00f3 l\u1ed7i x\u1ea3y ra, b\u1ea1n vui l\u00f2ng th\u1eed l\u1ea1i.',
      },
    },
  };
  const T = STRINGS[LOCALE];
  const TITLE = attr('title') || T.title;

  // ---- persistence (localStorage, key prefix "careline:" + gateway origin) ------------------
  const PREFIX = 'careline:' + ORIGIN + ':';
  const mem = {};
  const store = {
    get(k) {
      try { const v = localStorage.getItem(PREFIX + k); return v == null ? null : JSON.parse(v); } catch (_) { return k in mem ? mem[k] : null; }
    },
    set(k, v) {
      mem[k] = v;
      try { if (v == null) localStorage.removeItem(PREFIX + k); else localStorage.setItem(PREFIX + k, JSON.stringify(v)); } catch (_) { /* private mode */ }
    },
  };
  const CMID_RE = /^[A-Za-z0-9_-]{8,64}$/;
  // read-modify-write on every change so that two tabs of the same site do not drop each other's items
  const outbox = {
    all() {
      const v = store.get('outbox');
      return Array.isArray(v) ? v.filter((x) => x && CMID_RE.test(x.client_msg_id) && typeof x.text === 'string') : [];
    },
    add(item) { store.set('outbox', outbox.all().filter((x) => x.client_msg_id !== item.client_msg_id).concat([item])); },
    remove(cmid) { const l = outbox.all(), n = l.filter((x) => x.client_msg_id !== cmid); if (n.length !== l.length) store.set('outbox', n); },
  };
  const newId = () => {
    try { if (crypto.randomUUID) return crypto.randomUUID(); } catch (_) { /* insecure context */ }
    const b = new Uint8Array(16);
    crypto.getRandomValues(b);
    return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  };
  const eidParts = (e) => { const m = /^(\d+)-(\d+)$/.exec(String(e)); return m ? [Number(m[1]), Number(m[2])] : null; };
  const newer = (a, b) => { // is stream id a after b? (unknown formats count as newer: never drop data)
    if (b == null) return true;
    const x = eidParts(a), y = eidParts(b);
    return !x || !y || x[0] > y[0] || (x[0] === y[0] && x[1] > y[1]);
  };
  const fmt = (s, vars) => s.replace(/\{(\w+)\}/g, (_, k) => (vars && k in vars ? vars[k] : ''));

  // ---- DOM helpers: every string child becomes a text node ---------------------------------
  const h = (tag, attrs, ...kids) => {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of kids) if (c != null) el.append(c);
    return el;
  };
  const ICON = '<svg viewBox="0 0 24 24" aria-hidden="true" focusable="false"><path fill="currentColor" d="M12 3C6.5 3 2 6.9 2 11.7c0 2.6 1.3 4.9 3.4 6.5L4.6 21.4c-.1.4.3.7.7.5l3.9-1.9c.9.2 1.8.3 2.8.3 5.5 0 10-3.9 10-8.6S17.5 3 12 3Z"/></svg>';
  const onColor = (() => { // readable text colour on the brand colour
    const m = /^#([0-9a-f]{3}|[0-9a-f]{6})$/i.exec(color);
    if (!m) return '#fff';
    const hex = m[1].length === 3 ? [...m[1]].map((c) => c + c).join('') : m[1];
    const [r, g, b] = [0, 2, 4].map((i) => parseInt(hex.slice(i, i + 2), 16) / 255).map((c) => (c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4));
    return 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.45 ? '#111' : '#fff';
  })();

  const CSS_TEXT = `
:host{all:initial}
*{box-sizing:border-box}
[hidden]{display:none!important}
.w{font:15px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,"Noto Sans",sans-serif;color:#1c1e21;-webkit-font-smoothing:antialiased}
button,textarea{font:inherit;color:inherit;margin:0}
:focus-visible{outline:2px solid var(--ink);outline-offset:2px}
.launcher{position:fixed;right:20px;bottom:20px;z-index:2147483000;display:flex;align-items:center;gap:8px;height:52px;padding:0 20px 0 16px;border:0;border-radius:26px;background:var(--c);color:var(--on);font-weight:600;cursor:pointer;box-shadow:0 6px 20px rgba(0,0,0,.22);transition:transform .15s}
.launcher:hover{transform:translateY(-2px)}
.launcher svg{width:24px;height:24px}
.badge{position:absolute;top:-5px;right:-3px;min-width:20px;height:20px;padding:0 6px;border-radius:10px;background:#e0245e;color:#fff;font-size:12px;line-height:20px;text-align:center}
.panel{position:fixed;right:20px;bottom:88px;z-index:2147483001;width:370px;height:min(620px,calc(100vh - 112px));display:flex;flex-direction:column;background:#fff;border-radius:16px;overflow:hidden;box-shadow:0 12px 48px rgba(0,0,0,.22);animation:cl-in .18s ease-out}
@keyframes cl-in{from{opacity:0;transform:translateY(12px)}}
.head{display:flex;align-items:center;gap:6px;padding:12px 10px 12px 18px;background:var(--c);color:var(--on)}
.head :focus-visible{outline-color:var(--on)}
.tw{flex:1;min-width:0}
.title{margin:0;font-size:16px;font-weight:650;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.sub{display:flex;align-items:center;gap:6px;font-size:12.5px;opacity:.92;white-space:nowrap;overflow:hidden}
.sub span+span{overflow:hidden;text-overflow:ellipsis}
.dot{flex:none;width:8px;height:8px;border-radius:50%;background:#b0b3b8}
.dot.on{background:#42d76b}
.hb{flex:none;border:0;border-radius:8px;background:rgba(255,255,255,.18);cursor:pointer;padding:6px 10px;font-size:13px}
.hb:hover{background:rgba(255,255,255,.3)}
.x{font-size:22px;line-height:1;padding:3px 10px 5px}
.status{padding:6px 12px;background:#fff4e5;color:#7a4a00;font-size:13px;text-align:center}
.scroll{flex:1;overflow-y:auto;padding:16px 14px 10px;overscroll-behavior:contain}
.empty{margin:12px 8px 18px;color:#65676b;font-size:14px;text-align:center}
.log{display:flex;flex-direction:column;gap:6px}
.row{display:flex;flex-direction:column;align-items:flex-start}
.row.customer{align-items:flex-end}
.bubble{max-width:82%;padding:9px 13px;border-radius:18px;background:#f0f2f5;white-space:pre-wrap;overflow-wrap:anywhere}
.customer .bubble{background:var(--c);color:var(--on);border-bottom-right-radius:6px}
.bot .bubble{border-bottom-left-radius:6px}
.agent .bubble{background:#e6f4ea;border-bottom-left-radius:6px}
.who{margin:4px 0 2px 8px;font-size:12px;font-weight:600;color:#1e7a3c}
.meta{margin:2px 8px 0;font-size:11.5px;color:#65676b}
.pending .bubble{opacity:.62}
.failed .meta{color:#c5221f}
.line{align-items:center;margin:6px 0}
.line .txt{max-width:90%;color:#65676b;font-size:12.5px;text-align:center;white-space:pre-wrap}
.line.err .txt{color:#a04100}
.qr{display:flex;flex-wrap:wrap;gap:6px;padding-top:8px}
.chip{border:1px solid var(--c);border-radius:16px;background:#fff;color:var(--ink);padding:6px 12px;font-size:14px;cursor:pointer}
.chip:hover{background:#f2f6ff}
.typing{margin-top:6px}
.typing .bubble{display:inline-flex;gap:4px;padding:12px 14px;border-bottom-left-radius:6px}
.typing i{width:7px;height:7px;border-radius:50%;background:#8a8d91;animation:cl-dot 1.2s infinite}
.typing i:nth-child(2){animation-delay:.2s}.typing i:nth-child(3){animation-delay:.4s}
@keyframes cl-dot{0%,60%,100%{opacity:.3}30%{opacity:1}}
.composer{display:flex;align-items:flex-end;gap:8px;padding:10px 12px;border-top:1px solid #e4e6eb;background:#fff}
textarea{flex:1;min-height:40px;max-height:120px;resize:none;border:1px solid #ccd0d5;border-radius:20px;padding:9px 14px;line-height:1.35;background:#fff;color:#1c1e21}
textarea:focus{outline:none;border-color:var(--ink);box-shadow:0 0 0 1px var(--ink)}
.send{flex:none;height:40px;padding:0 16px;border:0;border-radius:20px;background:var(--c);color:var(--on);font-weight:600;cursor:pointer}
@media (max-width:480px){
.panel{inset:0;width:auto;height:auto;border-radius:0}
.launcher{right:14px;bottom:14px}
.launcher.open{display:none}
textarea{font-size:16px}}
@media (prefers-reduced-motion:reduce){*{animation:none!important;transition:none!important}}`;

  // ---- state --------------------------------------------------------------------------------
  let ws = null, ready = false, everConnected = false, wantConnection = false, fatal = false;
  let attempt = 0, reconnectTimer = 0, pingTimer = 0, lastRx = 0, flushTimer = 0, holdUntil = 0;
  let conversationId = store.get('conversation_id'), convState = null;
  let lastEventId = null; // only what THIS page rendered; a reload starts from `history`
  let maxChars = 0, maxFrame = 0, isOpen = false, unread = 0, typingSent = false, typingIdle = 0, typingTimer = 0;
  let endArmed = false, endTimer = 0, pendingEnd = false, statusTimer = 0;
  const inflight = new Set(); // client_msg_ids sent on the current connection, not yet acked
  const retries = new Map();
  const byId = new Map(), byCmid = new Map(), recs = new WeakMap();

  // ---- build the UI -------------------------------------------------------------------------
  const host = document.createElement('careline-widget');
  host.style.setProperty('all', 'initial', 'important'); // the page's CSS cannot hide or restyle us
  host.style.setProperty('--c', color);
  host.style.setProperty('--on', onColor);
  host.style.setProperty('--ink', onColor === '#fff' ? color : '#1c1e21'); // brand colour as text only if dark enough
  const root = host.attachShadow({ mode: 'open' });
  if (root.adoptedStyleSheets && window.CSSStyleSheet && 'replaceSync' in CSSStyleSheet.prototype) {
    const sheet = new CSSStyleSheet(); // not blocked by a host page's style-src CSP
    sheet.replaceSync(CSS_TEXT);
    root.adoptedStyleSheets = [sheet];
  } else root.append(h('style', null, CSS_TEXT));

  const badge = h('span', { class: 'badge', hidden: true, 'aria-hidden': 'true' });
  const icon = h('span', { 'aria-hidden': 'true' });
  icon.innerHTML = ICON; // constant markup, no data
  const launcher = h('button', { type: 'button', class: 'launcher', 'aria-label': T.open, 'aria-expanded': 'false', 'aria-controls': 'cl-panel', title: T.open },
    icon, h('span', null, T.launcher), badge);
  const subText = h('span', null, T.st.BOT), dot = h('span', { class: 'dot', 'aria-hidden': 'true' });
  const endBtn = h('button', { type: 'button', class: 'hb', hidden: true, title: T.end }, T.end);
  const closeBtn = h('button', { type: 'button', class: 'hb x', 'aria-label': T.close, title: T.close }, '\u00d7');
  const status = h('div', { class: 'status', role: 'status', hidden: true });
  const empty = h('p', { class: 'empty' }, T.empty);
  const log = h('div', { class: 'log', role: 'log', 'aria-live': 'polite', 'aria-label': T.log });
  const qr = h('div', { class: 'qr', role: 'group', 'aria-label': T.quick });
  const typing = h('div', { class: 'row bot typing', role: 'status', hidden: true }, h('div', { class: 'bubble' }, h('i'), h('i'), h('i')));
  const scroller = h('div', { class: 'scroll' }, empty, log, qr, typing);
  const input = h('textarea', { rows: 1, 'aria-label': T.input, placeholder: T.placeholder, enterkeyhint: 'send', autocomplete: 'off' });
  const form = h('form', { class: 'composer', novalidate: true }, input, h('button', { type: 'submit', class: 'send', title: T.send }, T.send));
  const panel = h('div', { class: 'panel', id: 'cl-panel', role: 'dialog', 'aria-label': TITLE, hidden: true },
    h('div', { class: 'head' }, h('div', { class: 'tw' }, h('h2', { class: 'title' }, TITLE), h('div', { class: 'sub' }, dot, subText)), endBtn, closeBtn),
    status, scroller, form);
  root.append(h('div', { class: 'w', lang: LOCALE }, launcher, panel));

  // ---- rendering ----------------------------------------------------------------------------
  const atBottom = () => scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80;
  const toBottom = () => { scroller.scrollTop = scroller.scrollHeight; };
  const refreshEmpty = () => { empty.hidden = log.childElementCount > 0; };
  const firstPendingExcept = (node) => [...log.children].find((n) => n !== node && n.classList.contains('pending'));
  // server-ordered rows go above the customer's still-pending messages, which stay at the bottom
  const place = (node) => log.insertBefore(node, firstPendingExcept(node) || null);

  function msgRow(sender, text) {
    if (sender === 'system') return h('div', { class: 'row line' }, h('div', { class: 'txt' }, text));
    const row = h('div', { class: 'row ' + sender });
    if (sender === 'agent') row.append(h('div', { class: 'who' }, T.agent));
    row.append(h('div', { class: 'bubble' }, text));
    return row;
  }
  function setMeta(node, text) {
    let meta = node.querySelector('.meta');
    if (!text) { if (meta) meta.remove(); return; }
    if (!meta) node.append((meta = h('div', { class: 'meta' })));
    meta.textContent = text;
  }
  function note(text, kind) {
    const stick = atBottom();
    log.append(h('div', { class: 'row line' + (kind === 'err' ? ' err' : '') }, h('div', { class: 'txt' }, text)));
    refreshEmpty();
    if (stick || kind === 'err') toBottom();
  }
  let lastErr = { text: '', at: 0 };
  function errNote(code) {
    const text = fmt(T.err[code === 'frame_too_large' ? 'text_too_long' : code] || T.err.generic, { n: maxChars || '?' });
    if (text === lastErr.text && Date.now() - lastErr.at < 5000) return; // don't spam the same line
    lastErr = { text, at: Date.now() };
    note(text, 'err');
  }
  function setQuickReplies(list) {
    qr.replaceChildren();
    for (const q of Array.isArray(list) ? list.slice(0, 12) : []) {
      if (!q || typeof q.title !== 'string' || !q.title) continue;
      qr.append(h('button', { type: 'button', class: 'chip', onclick: () => sendQuick(q) }, q.title));
    }
    qr.hidden = !qr.childElementCount;
  }
  function setTyping(on, who) {
    clearTimeout(typingTimer);
    const stick = atBottom();
    typing.hidden = !on;
    if (!on) return;
    typing.setAttribute('aria-label', who === 'agent' ? T.agentTyping : T.botTyping);
    typingTimer = setTimeout(() => setTyping(false), 20000); // never spin forever
    if (stick) toBottom();
  }
  function confirmNode(node, id) {
    const rec = recs.get(node);
    rec.pending = false;
    node.classList.remove('pending', 'failed');
    setMeta(node, '');
    if (id && !rec.id) { rec.id = id; byId.set(id, node); }
    place(node);
  }
  function addMessage(m, live) {
    if (!m || typeof m !== 'object') return;
    const sender = ['customer', 'bot', 'agent', 'system'].includes(m.sender) ? m.sender : 'system';
    const text = typeof m.text === 'string' ? m.text : '';
    const id = m.id == null ? null : String(m.id);
    const cmid = sender === 'customer' && typeof m.client_msg_id === 'string' ? m.client_msg_id : null;
    if (cmid) { outbox.remove(cmid); inflight.delete(cmid); } // it is stored
    if (id && byId.has(id)) return;
    const stick = atBottom();
    let node = cmid && byCmid.get(cmid);
    if (node) confirmNode(node, id);
    else {
      node = msgRow(sender, text);
      recs.set(node, { id, sender, text, pending: false });
      if (id) byId.set(id, node);
      if (cmid) byCmid.set(cmid, node);
      place(node);
    }
    if (m.created_at) { const d = new Date(m.created_at); if (!isNaN(d)) node.title = d.toLocaleString(LOCALE); }
    if (sender === 'bot' || sender === 'agent') {
      setQuickReplies(convState === 'CLOSED' ? null : m.quick_replies);
      if (live) {
        setTyping(false);
        if (!isOpen) { unread++; badge.textContent = String(unread); badge.hidden = false; }
      }
    } else if (sender === 'customer') setQuickReplies(null);
    refreshEmpty();
    if (stick || sender === 'customer') toBottom();
  }
  function renderPending(item) {
    if (byCmid.has(item.client_msg_id)) return;
    const node = msgRow('customer', item.text);
    node.classList.add('pending');
    setMeta(node, T.sending);
    recs.set(node, { id: null, sender: 'customer', text: item.text, pending: true });
    byCmid.set(item.client_msg_id, node);
    log.append(node);
    refreshEmpty();
    toBottom();
  }
  function failed(cmid) {
    outbox.remove(cmid);
    inflight.delete(cmid);
    const node = byCmid.get(cmid);
    if (!node || recs.get(node).id) return;
    node.classList.replace('pending', 'failed');
    recs.get(node).pending = false;
    setMeta(node, T.failed);
  }
  function setConvState(s, live) {
    if (typeof s !== 'string') return;
    const was = convState;
    convState = s;
    subText.textContent = T.st[s] || T.st.BOT;
    refreshEnd();
    if (s === 'CLOSED') setQuickReplies(null);
    if (live && s === 'CLOSED' && was !== 'CLOSED') note(T.closed);
  }
  // Place in line, refreshed by the server as the line moves (shown in the header, not logged).
  function setPlace(ev) {
    if (convState !== 'WAITING_AGENT' || !Number.isInteger(ev.position) || ev.position < 1) return;
    let text = T.st.WAITING_AGENT + ' \u00b7 ' + fmt(T.place, { n: ev.position });
    if (Number.isFinite(ev.eta_s) && ev.eta_s > 0) text += ' \u00b7 ' + fmt(T.eta, { m: Math.max(1, Math.round(ev.eta_s / 60)) });
    subText.textContent = text;
  }
  function refreshEnd() { endBtn.hidden = !conversationId || convState === 'CLOSED' || convState === 'SURVEY'; }
  function setConversation(cid) {
    cid = cid == null ? null : String(cid);
    if (cid === conversationId) return;
    conversationId = cid;
    store.set('conversation_id', cid);
    if (cid && convState === 'CLOSED') setConvState('BOT', false); // a new conversation began
    refreshEnd();
  }
  function setLastEid(eid) {
    if (!eid || !newer(eid, lastEventId)) return;
    lastEventId = String(eid);
    store.set('last_event_id', lastEventId);
  }
  function updateStatus() {
    clearTimeout(statusTimer);
    dot.classList.toggle('on', ready);
    if (ready || !isOpen) { status.hidden = true; return; }
    const show = () => {
      status.textContent = fatal ? T.blocked : everConnected ? T.reconnecting : T.connecting;
      status.hidden = false;
    };
    if (fatal || everConnected) show(); else statusTimer = setTimeout(show, 700); // no flash on a fast first connect
  }

  // ---- connection ---------------------------------------------------------------------------
  const sendFrame = (f) => {
    if (!ws || ws.readyState !== 1) return false;
    try { ws.send(JSON.stringify(f)); return true; } catch (_) { return false; }
  };
  function connect() {
    wantConnection = true;
    if (ws || fatal) return;
    clearTimeout(reconnectTimer);
    reconnectTimer = 0;
    let sock;
    try { sock = new WebSocket(WS_URL); } catch (_) { scheduleReconnect(false); return; }
    ws = sock;
    ready = false;
    updateStatus();
    sock.onopen = () => {
      const hello = { type: 'hello', locale: LOCALE, page: location.origin + location.pathname };
      const token = store.get('token');
      if (typeof token === 'string' && token) hello.token = token;
      if (lastEventId) hello.last_event_id = lastEventId; // resume; a fresh page asks for `history`
      sock.send(JSON.stringify(hello));
    };
    sock.onmessage = (e) => {
      if (ws !== sock) return;
      lastRx = Date.now();
      let f;
      try { f = JSON.parse(e.data); } catch (_) { return; }
      if (f && typeof f === 'object') handle(f);
    };
    sock.onclose = (e) => dropped(sock, e.code);
  }
  function dropped(sock, code) {
    if (ws !== sock) return;
    ws = null;
    ready = false;
    if (code === 1009) { for (const c of inflight) failed(c); errNote('frame_too_large'); } // never resend those
    inflight.clear();
    typingSent = false;
    clearInterval(pingTimer);
    setTyping(false);
    if (code === 4403) fatal = true;
    else scheduleReconnect(code === 4429);
    updateStatus();
  }
  function scheduleReconnect(slow) {
    if (reconnectTimer || fatal) return;
    const delay = slow ? 15000 : Math.min(15000, 500 * 2 ** attempt);
    attempt++;
    reconnectTimer = setTimeout(() => { reconnectTimer = 0; connect(); }, delay * (0.5 + Math.random() * 0.5));
  }
  function reconnectNow() {
    if (!wantConnection || ws || fatal) return;
    attempt = 0;
    clearTimeout(reconnectTimer);
    reconnectTimer = 0;
    connect();
  }
  window.addEventListener('online', reconnectNow);
  document.addEventListener('visibilitychange', () => { if (!document.hidden) reconnectNow(); });

  function handle(f) {
    switch (f.type) {
      case 'welcome': {
        if (typeof f.token === 'string' && f.token) store.set('token', f.token);
        const lim = f.limits || {};
        if (Number(lim.max_text_chars) > 0) maxChars = Number(lim.max_text_chars);
        if (Number(lim.max_frame_bytes) > 0) maxFrame = Number(lim.max_frame_bytes);
        const cid = f.conversation_id == null ? null : String(f.conversation_id);
        if (cid !== conversationId) lastEventId = null; // a different (or no) conversation: old stream ids mean nothing
        setConversation(cid);
        setConvState(f.state, false);
        ready = true;
        everConnected = true;
        attempt = 0;
        updateStatus();
        clearInterval(pingTimer);
        const sock = ws;
        pingTimer = setInterval(() => {
          if (Date.now() - lastRx > 70000) { sock.onclose = null; sock.close(); dropped(sock, 1006); return; } // dead link
          sendFrame({ type: 'ping' });
        }, 25000);
        if (pendingEnd && sendFrame({ type: 'end' })) pendingEnd = false;
        flush();
        break;
      }
      case 'history':
        setConversation(f.conversation_id);
        for (const m of Array.isArray(f.messages) ? f.messages : []) addMessage(m, false);
        setLastEid(f.last_event_id);
        toBottom();
        break;
      case 'event': {
        const ev = f.event;
        if (!ev || typeof ev !== 'object') return;
        if (f.eid && lastEventId && !newer(f.eid, lastEventId)) return; // already rendered
        if (ev.kind === 'message') addMessage(ev.message, true);
        else if (ev.kind === 'state') setConvState(ev.state, true);
        else if (ev.kind === 'notice' && typeof ev.text === 'string') note(ev.text);
        else if (ev.kind === 'queue') setPlace(ev);
        setLastEid(f.eid);
        break;
      }
      case 'ack': {
        const cmid = f.client_msg_id;
        outbox.remove(cmid);
        inflight.delete(cmid);
        retries.delete(cmid);
        if (f.conversation_id != null) setConversation(f.conversation_id);
        const node = byCmid.get(cmid);
        if (!node || recs.get(node).id) break;
        const mid = f.message_id == null ? null : String(f.message_id);
        const other = mid && byId.get(mid);
        if (other && other !== node) { node.remove(); byCmid.set(cmid, other); } // the event came first
        else confirmNode(node, mid);
        break;
      }
      case 'typing':
        if (f.who !== 'customer') setTyping(!!f.on, f.who);
        break;
      case 'error': onError(f); break;
      default: break; // pong and anything newer
    }
  }
  function onError(f) {
    const code = String(f.code || ''), cmid = typeof f.client_msg_id === 'string' ? f.client_msg_id : null;
    if (code === 'rate_limited' || code === 'unavailable') { // not stored: keep it in the outbox and send again later
      const wait = Math.max(1, Number(f.retry_after) || 2) * 1000;
      holdUntil = Math.max(holdUntil, Date.now() + wait);
      if (cmid) inflight.delete(cmid); else inflight.clear();
      scheduleFlush(wait);
    } else if (cmid && ['text_too_long', 'empty_text', 'bad_request', 'frame_too_large'].includes(code)) {
      failed(cmid); // resending the same text cannot succeed
    } else if (code === 'internal' && cmid) {
      const n = (retries.get(cmid) || 0) + 1;
      retries.set(cmid, n);
      if (n > 3) failed(cmid); else { inflight.delete(cmid); scheduleFlush(2000 * n); }
    } else if (code === 'origin_not_allowed') { fatal = true; updateStatus(); }
    errNote(code);
  }
  function scheduleFlush(ms) {
    clearTimeout(flushTimer);
    flushTimer = setTimeout(flush, ms + 50);
  }
  function flush() {
    if (!ready) return;
    const wait = holdUntil - Date.now();
    if (wait > 0) { scheduleFlush(wait); return; }
    for (const it of outbox.all()) {
      if (inflight.has(it.client_msg_id)) continue;
      const frame = it.type === 'quick_reply'
        ? { type: 'quick_reply', client_msg_id: it.client_msg_id, payload: String(it.payload), text: it.text }
        : { type: 'message', client_msg_id: it.client_msg_id, text: it.text };
      if (sendFrame(frame)) inflight.add(it.client_msg_id);
    }
  }

  // ---- actions ------------------------------------------------------------------------------
  function enqueue(item) {
    outbox.add(item);
    setQuickReplies(null);
    renderPending(item);
    stopTyping();
    connect();
    flush();
  }
  function send(text) {
    text = String(text == null ? '' : text).replace(/\r\n?/g, '\n').trim();
    if (!text) return false;
    const frameBytes = new TextEncoder().encode(JSON.stringify({ type: 'message', client_msg_id: newId(), text })).length;
    if ((maxChars && [...text].length > maxChars) || (maxFrame && frameBytes > maxFrame)) { // code points, like the server
      errNote('text_too_long');
      return false;
    }
    enqueue({ type: 'message', client_msg_id: newId(), text });
    return true;
  }
  function sendQuick(q) {
    enqueue({ type: 'quick_reply', client_msg_id: newId(), payload: q.payload == null ? q.title : q.payload, text: q.title });
    if (finePointer()) input.focus();
  }
  function stopTyping() {
    clearTimeout(typingIdle);
    if (typingSent) { typingSent = false; sendFrame({ type: 'typing', on: false }); }
  }
  function setOpen(on) {
    isOpen = on;
    panel.hidden = !on;
    launcher.classList.toggle('open', on);
    launcher.setAttribute('aria-expanded', String(on));
    try { if (on) sessionStorage.setItem(PREFIX + 'open', '1'); else sessionStorage.removeItem(PREFIX + 'open'); } catch (_) { /* off */ }
  }
  function open() {
    if (!isOpen) { setOpen(true); unread = 0; badge.hidden = true; toBottom(); }
    connect();
    updateStatus();
    if (finePointer()) input.focus(); // no surprise keyboard on phones
  }
  function close() {
    if (!isOpen) return;
    const hadFocus = root.activeElement && panel.contains(root.activeElement);
    setOpen(false);
    stopTyping();
    updateStatus();
    if (hadFocus) launcher.focus();
  }
  const finePointer = () => !!(window.matchMedia && matchMedia('(pointer: fine)').matches);
  const autosize = () => { input.style.height = 'auto'; input.style.height = Math.min(input.scrollHeight + 2, 120) + 'px'; };

  launcher.addEventListener('click', () => (isOpen ? close() : open()));
  closeBtn.addEventListener('click', close);
  panel.addEventListener('keydown', (e) => { if (e.key === 'Escape') close(); });
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    if (send(input.value)) { input.value = ''; autosize(); }
    input.focus();
  });
  input.addEventListener('keydown', (e) => {
    // Enter sends, Shift+Enter is a newline; never while an IME (Vietnamese Telex/VNI) is composing
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
      e.preventDefault();
      form.requestSubmit ? form.requestSubmit() : form.dispatchEvent(new Event('submit', { cancelable: true }));
    }
  });
  input.addEventListener('input', () => {
    autosize();
    if (!input.value) return;
    setQuickReplies(null);
    if (!ready) return;
    if (!typingSent) typingSent = sendFrame({ type: 'typing', on: true });
    clearTimeout(typingIdle);
    typingIdle = setTimeout(stopTyping, 4000);
  });
  endBtn.addEventListener('click', () => {
    clearTimeout(endTimer);
    if (!endArmed) { // two-step, so a stray tap does not end the chat
      endArmed = true;
      endBtn.textContent = T.endConfirm;
      endTimer = setTimeout(() => { endArmed = false; endBtn.textContent = T.end; }, 4000);
      return;
    }
    endArmed = false;
    endBtn.textContent = T.end;
    stopTyping();
    if (!sendFrame({ type: 'end' })) { pendingEnd = true; connect(); }
  });

  // ---- public API ---------------------------------------------------------------------------
  window.Careline = Object.freeze({
    version: '1',
    open, close,
    send(text) { open(); return send(text); },
    state: () => ({
      connected: ready,
      conversationId,
      lastEventId,
      messages: [...log.children].filter((n) => recs.has(n)).map((n) => {
        const r = recs.get(n);
        return { id: r.id, sender: r.sender, text: r.text, pending: r.pending };
      }),
    }),
  });

  // ---- start ----------------------------------------------------------------------------------
  function start() {
    document.body.appendChild(host);
    setQuickReplies(null);
    for (const it of outbox.all()) renderPending(it); // unacknowledged from an earlier page: re-sent after hello
    refreshEmpty();
    refreshEnd();
    let reopen = false;
    try { reopen = sessionStorage.getItem(PREFIX + 'open') === '1'; } catch (_) { /* ignore */ }
    if (reopen) open();
    else if (conversationId || outbox.all().length) connect(); // returning visitor: get agent replies live
  }
  if (document.body) start(); else document.addEventListener('DOMContentLoaded', start);
})();
