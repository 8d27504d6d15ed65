// careline console: helpers shared by the agent console and the supervisor view.
//
// Safety rules every page follows through these helpers:
// - Text from customers (and from anyone) is put in the DOM with textContent, never innerHTML.
// - Only http(s) links become clickable, and they open in a new tab without an opener.
// - Every state-changing request carries the session's CSRF token (X-CSRF-Token).
(function () {
  'use strict';

  let csrf = '';

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  function toLogin() {
    location.assign('/login?next=' + encodeURIComponent(location.pathname + location.search));
  }

  // JSON over fetch; a lost session sends the user to the login page.
  async function api(method, path, body) {
    const headers = { Accept: 'application/json' };
    if (method !== 'GET') headers['X-CSRF-Token'] = csrf;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let resp;
    try {
      resp = await fetch(path, {
        method, headers, credentials: 'same-origin',
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      throw new ApiError(0, 'network', 'Cannot reach the server; check your connection.');
    }
    const data = await resp.json().catch(() => ({}));
    if (resp.status === 401) { toLogin(); throw new ApiError(401, 'unauthenticated', 'signed out'); }
    if (!resp.ok) {
      const err = data.error || {};
      throw new ApiError(resp.status, err.code || 'http_' + resp.status, err.message || 'Request failed (' + resp.status + ')');
    }
    return data;
  }

  async function session() {
    const s = await api('GET', '/api/auth/session');
    csrf = s.csrf_token;
    return s.principal;
  }

  // el('div', {class: 'x', onclick: fn}, 'text', childNode, ...): children are text or nodes.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
      else if (k === 'dataset') Object.assign(node.dataset, v);
      else node.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat(Infinity)) {
      if (c === undefined || c === null || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  const URL_RE = /\bhttps?:\/\/[^\s<>"'`]+/gi;

  // Text with http(s) URLs as safe links; everything else stays plain text nodes.
  function linkify(text) {
    const frag = document.createDocumentFragment();
    let last = 0;
    for (const m of String(text).matchAll(URL_RE)) {
      let raw = m[0].replace(/[),.;:!?]+$/, '');
      let url = null;
      try { url = new URL(raw); } catch (e) { url = null; }
      if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) continue;
      frag.append(document.createTextNode(text.slice(last, m.index)));
      frag.append(el('a', { href: url.href, target: '_blank', rel: 'noopener noreferrer nofollow' }, raw));
      last = m.index + raw.length;
    }
    frag.append(document.createTextNode(String(text).slice(last)));
    return frag;
  }

  function duration(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    const mm = String(m).padStart(h ? 2 : 1, '0'), ss = String(r).padStart(2, '0');
    return h ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
  }

  // "SLA 0:42" before the deadline, "SLA over by 0:10" after it.
  function slaText(deadline, now) {
    if (!deadline) return { text: '', late: false, soon: false };
    const left = deadline - now;
    if (left < 0) return { text: 'SLA over by ' + duration(-left), late: true, soon: false };
    return { text: 'SLA ' + duration(left), late: false, soon: left < 60 };
  }

  const SEVERITY_RANK = { critical: 0, high: 1, normal: 2, low: 3 };

  function badge(severity) {
    const s = SEVERITY_RANK[severity] === undefined ? 'normal' : severity;
    return el('span', { class: 'badge sev-' + s }, s);
  }

  function time(iso) {
    if (!iso) return '';
    const d = new Date(iso);
    return isNaN(d) ? '' : d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  }

  // The agent WebSocket: reconnects with backoff, sends the presence heartbeat, re-watches.
  class AgentSocket {
    constructor({ onFrame, onStatus, heartbeatS }) {
      this.onFrame = onFrame;
      this.onStatus = onStatus;
      this.heartbeatS = heartbeatS || 20;
      this.ws = null;
      this.watched = new Map(); // conversation id -> last event id seen
      this.backoff = 500;
      this.timer = 0;
      this.closed = false;
    }
    connect() {
      const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
      const ws = new WebSocket(scheme + location.host + '/ws/agent');
      this.ws = ws;
      this.onStatus('connecting');
      ws.onopen = () => {
        this.backoff = 500;
        this.onStatus('live');
        for (const [cid, after] of this.watched) this.send({ type: 'watch', conversation_id: cid, after: after || undefined });
        clearInterval(this.timer);
        this.send({ type: 'heartbeat' });
        this.timer = setInterval(() => this.send({ type: 'heartbeat' }), this.heartbeatS * 1000);
      };
      ws.onmessage = (e) => {
        let frame;
        try { frame = JSON.parse(e.data); } catch (err) { return; }
        if (frame.type === 'event' && this.watched.has(frame.conversation_id)) this.watched.set(frame.conversation_id, frame.eid);
        if (frame.type === 'watching' && this.watched.has(frame.conversation_id) && !this.watched.get(frame.conversation_id)) {
          this.watched.set(frame.conversation_id, frame.last_event_id);
        }
        this.onFrame(frame);
      };
      ws.onclose = () => {
        clearInterval(this.timer);
        if (this.closed) return;
        this.onStatus('reconnecting');
        setTimeout(() => this.connect(), this.backoff);
        this.backoff = Math.min(this.backoff * 2, 10000);
      };
    }
    send(frame) {
      if (this.ws && this.ws.readyState === WebSocket.OPEN) { this.ws.send(JSON.stringify(frame)); return true; }
      return false;
    }
    watch(cid) {
      if (this.watched.has(cid)) return;
      this.watched.set(cid, '');
      this.send({ type: 'watch', conversation_id: cid });
    }
    unwatch(cid) {
      if (!this.watched.delete(cid)) return;
      this.send({ type: 'unwatch', conversation_id: cid });
    }
  }

  async function logout(everywhere) {
    try { await api('POST', everywhere ? '/api/auth/logout-all' : '/api/auth/logout'); } catch (e) { /* signed out anyway */ }
    location.assign('/login');
  }

  window.CL = Object.freeze({ api, session, el, linkify, duration, slaText, badge, time, ApiError, AgentSocket, logout, SEVERITY_RANK });
})();
