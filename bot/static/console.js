// careline agent console: queues, waiting list, live chat, context card, canned responses.
// Data: the agent API (docs/openapi.yaml) and the agent WebSocket (/ws/agent).
// Customer text is rendered with textContent only (CL.el / CL.linkify), never as HTML.
(function () {
  'use strict';
  const { api, el, linkify, duration, slaText, badge, time, AgentSocket, SEVERITY_RANK } = window.CL;
  const $ = (id) => document.getElementById(id);
  const BASE_TITLE = document.title;
  const SUPERVISOR_ROLES = ['supervisor', 'admin'];

  const S = {
    me: null,
    config: { queues: [], heartbeat_s: 20 },
    presence: 'offline',
    chats: [],
    queues: [],
    skew: 0, // server clock minus ours, seconds
    fetchedAt: 0,
    filter: '',
    open: null, // the conversation on screen
    card: null,
    headFor: null, // the chat the header's buttons were last set up for
    shown: new Map(), // message id -> list item, for the open chat
    unread: new Map(), // held chat not on screen -> customer messages since last opened
    alerts: 0,
    unseen: 0,
    socket: null,
  };

  const isSupervisor = () => S.me && SUPERVISOR_ROLES.includes(S.me.role);
  const serverNow = () => Date.now() / 1000 + S.skew;

  // ---- feedback ------------------------------------------------------------------------------

  let flashTimer = 0;
  function flash(message, kind) {
    const box = $('flash');
    box.textContent = message;
    box.className = 'flash ' + (kind || 'error');
    box.hidden = false;
    clearTimeout(flashTimer);
    flashTimer = setTimeout(() => { box.hidden = true; }, 6000);
  }

  function report(e) { flash(e && e.message ? e.message : String(e)); }

  // A new critical chat (or a chat handed to me): a short tone and a title that says so.
  function alertAgent(reason) {
    S.alerts += 1;
    S.unseen += 1;
    document.title = `(${S.unseen}) ${reason} · ${BASE_TITLE}`;
    try {
      const Ctx = window.AudioContext || window.webkitAudioContext;
      if (!Ctx) return;
      const ctx = alertAgent.ctx || (alertAgent.ctx = new Ctx());
      const osc = ctx.createOscillator(), gain = ctx.createGain();
      osc.frequency.value = 880;
      gain.gain.setValueAtTime(0.15, ctx.currentTime);
      gain.gain.exponentialRampToValueAtTime(0.001, ctx.currentTime + 0.6);
      osc.connect(gain).connect(ctx.destination);
      osc.start();
      osc.stop(ctx.currentTime + 0.6);
    } catch (e) { /* sound is a nicety; the title still tells */ }
  }

  function seen() {
    if (!S.unseen) return;
    S.unseen = 0;
    document.title = BASE_TITLE;
  }

  // ---- presence, my chats, queues ------------------------------------------------------------

  function renderPresence() {
    for (const b of document.querySelectorAll('.presence button')) {
      b.setAttribute('aria-pressed', String(b.dataset.status === S.presence));
    }
    document.body.dataset.presence = S.presence;
  }

  async function setPresence(status) {
    await api('POST', '/api/agent/presence', { status });
    S.presence = status;
    renderPresence();
    await refreshMe();
  }

  const holds = (cid) => S.chats.some((c) => c.conversation_id === cid);

  async function refreshMe() {
    const me = await api('GET', '/api/agent/me');
    S.presence = me.presence;
    const before = S.chats.map((c) => c.conversation_id);
    S.chats = me.chats;
    // Every held chat is watched, so a customer writing in one that is not on screen shows up.
    for (const c of S.chats) S.socket.watch(c.conversation_id);
    for (const cid of before) {
      if (!holds(cid)) { S.unread.delete(cid); if (cid !== S.open) S.socket.unwatch(cid); }
    }
    renderPresence();
    renderMyChats();
  }

  function renderMyChats() {
    const list = $('my-chats');
    list.replaceChildren(...S.chats.map((c) => el('li', {
      class: 'item' + (c.conversation_id === S.open ? ' active' : ''),
      dataset: { cid: c.conversation_id },
      tabindex: 0,
      onclick: () => openChat(c.conversation_id),
      onkeydown: (e) => { if (e.key === 'Enter') openChat(c.conversation_id); },
    }, badge(c.severity), ' ', el('span', { class: 'q' }, c.queue || ''), ' ',
    el('span', { class: 'meta' }, `${c.channel} · ${c.language} · #${c.conversation_id.slice(0, 6)}`),
    S.unread.get(c.conversation_id) ? el('span', { class: 'unread', title: 'new messages' }, String(S.unread.get(c.conversation_id))) : null)));
    if (!S.chats.length) list.append(el('li', { class: 'none' }, 'No chats yet.'));
    $('my-count').textContent = String(S.chats.length);
  }

  async function refreshQueues() {
    const data = await api('GET', '/api/agent/queues');
    S.skew = data.now - Date.now() / 1000;
    S.fetchedAt = data.now;
    S.queues = data.queues;
    renderQueues();
    renderWaiting();
  }

  function renderQueues() {
    const total = S.queues.reduce((n, q) => n + q.count, 0);
    const item = (name, label, count) => el('li', {}, el('button', {
      type: 'button', class: 'queue' + (S.filter === name ? ' active' : ''), dataset: { queue: name },
      onclick: () => { S.filter = name; renderQueues(); renderWaiting(); },
    }, label, ' ', el('span', { class: 'count' + (count ? ' busy' : '') }, String(count))));
    $('queues').replaceChildren(item('', 'All', total), ...S.queues.map((q) => item(q.name, q.name, q.count)));
  }

  function waitingChats() {
    const all = [];
    for (const q of S.queues) {
      if (S.filter && q.name !== S.filter) continue;
      for (const w of q.waiting) all.push({ ...w, queue: q.name, since: S.fetchedAt - w.waited_s });
    }
    return all.sort((a, b) => (SEVERITY_RANK[a.severity] - SEVERITY_RANK[b.severity]) || (a.since - b.since));
  }

  function renderWaiting() {
    const chats = waitingChats();
    $('waiting').replaceChildren(...chats.map((w) => el('li', {
      class: 'item waiting-item' + (w.conversation_id === S.open ? ' active' : ''),
      dataset: { cid: w.conversation_id, severity: w.severity },
    },
    el('div', { class: 'line' }, badge(w.severity), ' ', el('span', { class: 'q' }, w.queue), ' ',
      el('span', { class: 'meta' }, `${w.channel || ''} · ${w.language || ''}`)),
    el('div', { class: 'reasons' }, distinct(w.reasons).join('; ') || '—'),
    w.note ? el('div', { class: 'note-line' }, 'Note: ', w.note) : null,
    el('div', { class: 'line' },
      el('span', { class: 'waited', dataset: { since: w.since } }, 'waiting ' + duration(serverNow() - w.since)), ' ',
      el('span', { class: 'sla', dataset: { deadline: w.sla_deadline || '' } })),
    el('div', { class: 'line' },
      el('button', { type: 'button', class: 'small', onclick: () => openChat(w.conversation_id) }, 'View'), ' ',
      el('button', { type: 'button', class: 'small primary claim', onclick: () => claim(w.conversation_id) }, 'Claim')))));
    if (!chats.length) $('waiting').append(el('li', { class: 'none' }, 'Nobody is waiting.'));
    $('waiting-count').textContent = String(chats.length);
    tick();
  }

  function tick() {
    const now = serverNow();
    for (const n of document.querySelectorAll('[data-since]')) n.textContent = 'waiting ' + duration(now - Number(n.dataset.since));
    for (const n of document.querySelectorAll('[data-deadline]')) {
      const s = slaText(Number(n.dataset.deadline) || 0, now);
      n.textContent = s.text;
      n.classList.toggle('late', s.late);
      n.classList.toggle('soon', s.soon);
    }
  }

  let refreshTimer = 0;
  function refreshSoon(me) {
    refreshSoon.me = refreshSoon.me || me;
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(async () => {
      const withMe = refreshSoon.me;
      refreshSoon.me = false;
      try {
        await refreshQueues();
        if (withMe) await refreshMe();
        if (S.open && withMe) await loadCard(S.open, false, true);
      } catch (e) { report(e); }
    }, 120);
  }

  // ---- claim ---------------------------------------------------------------------------------

  // Claiming needs presence online; an away agent who claims is clearly here, so the console
  // goes online first (which may hand over the most urgent chat at once: auto-assignment).
  async function claim(cid) {
    try {
      try {
        await api('POST', '/api/agent/claim', { conversation_id: cid });
      } catch (e) {
        if (e.code !== 'agent_offline') throw e;
        await setPresence('online');
        if (!S.chats.some((c) => c.conversation_id === cid)) {
          await api('POST', '/api/agent/claim', { conversation_id: cid });
        }
      }
      seen();
      await refreshMe();
      await refreshQueues();
      await openChat(cid);
    } catch (e) { report(e); await refreshQueues().catch(() => {}); }
  }

  // ---- the open chat -------------------------------------------------------------------------

  const SENDER = { customer: 'Customer', bot: 'Bot', agent: 'Agent', system: 'careline', note: 'Internal note' };

  function messageItem(m) {
    let who = SENDER[m.sender] || m.sender;
    if (m.sender === 'agent' && m.sender_id && S.me && m.sender_id === S.me.id) who = 'You';
    if (m.sender === 'note' && m.by) who = 'Internal note · ' + m.by;
    const li = el('li', { class: 'msg ' + m.sender, dataset: { id: m.id || '' } },
      el('div', { class: 'who' }, who, ' ', el('time', {}, time(m.created_at))),
      el('div', { class: 'bubble' }, linkify(m.text || '')));
    if (m.sender === 'agent') li.append(el('div', { class: 'delivery' }, m.delivery || 'sent ✓'));
    return li;
  }

  // The first human reply meets the first-response SLA: the card stops counting down.
  function humanReplied(at) {
    if (!S.card || S.card.conversation.first_human_reply_at) return;
    S.card.conversation.first_human_reply_at = at || new Date().toISOString();
    renderCard(S.card);
  }

  function addMessage(m) {
    if (m.sender === 'agent') humanReplied(m.created_at);
    if (m.id && S.shown.has(String(m.id))) return;
    const li = messageItem(m);
    if (m.id) S.shown.set(String(m.id), li);
    const log = $('log');
    const stick = log.scrollHeight - log.scrollTop - log.clientHeight < 60;
    log.append(li);
    if (stick || m.mine) log.scrollTop = log.scrollHeight;
  }

  async function openChat(cid) {
    if (S.open && S.open !== cid && !holds(S.open)) S.socket.unwatch(S.open);
    S.unread.delete(cid);
    if (S.open !== cid) {
      S.open = cid;
      S.shown = new Map();
      $('log').replaceChildren();
      $('typing').hidden = true;
      clearHead(); // nothing of the previous chat may be acted on while this one loads
    }
    $('chat-empty').hidden = true;
    $('chat-view').hidden = false;
    renderMyChats();
    renderWaiting();
    S.socket.watch(cid); // before the card: nothing between the card and live events is lost
    await loadCard(cid, true);
  }

  // `after`: a refresh after the chat moved on (transfer, release, reassignment): losing sight
  // of it is expected then, not an error to show.
  async function loadCard(cid, focus, after) {
    let card;
    try {
      card = await api('GET', '/api/agent/conversations/' + encodeURIComponent(cid));
    } catch (e) {
      if (!(after && e.status === 403)) report(e);
      if (e.status === 403 || e.status === 404) closeChat();
      return;
    }
    if (S.open !== cid) return;
    S.card = card;
    for (const m of card.transcript) addMessage(m);
    renderCard(card);
    renderChatHead(card);
    if (focus && !$('text').disabled) $('text').focus();
  }

  function closeChat() {
    if (S.open && !holds(S.open)) S.socket.unwatch(S.open);
    S.open = null;
    S.card = null;
    $('chat-view').hidden = true;
    $('chat-empty').hidden = false;
    $('card').replaceChildren(el('div', { class: 'empty' }, 'The handoff context card appears here.'));
    renderMyChats();
    renderWaiting();
  }

  function clearHead() {
    S.headFor = null;
    for (const id of ['claim', 'transfer', 'release', 'resolve']) {
      $(id).disabled = true;
      resetConfirm($(id));
    }
    $('text').disabled = true;
    $('send').disabled = true;
    $('chat-name').textContent = 'Loading…';
    $('chat-sev').replaceChildren();
    $('chat-state').textContent = '';
    delete $('chat-state').dataset.state;
    $('chat-meta').textContent = '';
  }

  function renderChatHead(card) {
    const c = card.conversation;
    const name = card.customer.display_name || 'Visitor ' + card.customer.id.slice(0, 6);
    $('chat-name').textContent = name;
    $('chat-sev').replaceChildren(badge(c.severity));
    $('chat-state').textContent = c.state;
    $('chat-state').dataset.state = c.state;
    $('chat-meta').textContent = `${c.channel} · ${c.language} · ${c.queue || ''} · #${c.id.slice(0, 6)}`;
    const mine = c.state === 'WITH_AGENT' && c.agent_id === S.me.id;
    const handled = c.state === 'WITH_AGENT' || c.state === 'WAITING_AGENT';
    const canAct = mine || (isSupervisor() && handled);
    $('claim').hidden = c.state !== 'WAITING_AGENT';
    $('claim').disabled = false;
    for (const id of ['transfer', 'release', 'resolve']) {
      $(id).disabled = !canAct;
      // A background refresh must not swallow a pending "click again"; another chat does.
      if (!canAct || S.headFor !== c.id) resetConfirm($(id));
    }
    S.headFor = c.id;
    const noteOnly = !mine && canAct;
    const replyRadio = document.querySelector('input[name=mode][value=reply]');
    replyRadio.disabled = !mine;
    if (noteOnly) document.querySelector('input[name=mode][value=note]').checked = true;
    $('text').disabled = !canAct;
    $('send').disabled = !canAct;
    $('text').placeholder = canAct
      ? (mode() === 'note' ? 'Internal note (the customer never sees it)…' : 'Type a reply… (Enter sends, Shift+Enter new line)')
      : (c.state === 'WAITING_AGENT' ? 'Claim the chat to reply.' : `This chat is ${c.state}.`);
    document.body.dataset.mode = mode();
  }

  function section(title, ...children) {
    return el('section', { class: 'card-section' }, el('h3', {}, title), ...children);
  }

  function dl(pairs) {
    return el('dl', {}, pairs.filter(([, v]) => v !== null && v !== undefined && v !== '')
      .map(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
  }

  function actor(a) {
    if (!a) return '';
    if (S.me && a === S.me.id) return 'you';
    return a.length > 16 ? 'agent ' + a.slice(0, 6) : a;
  }

  // Reasons arrive as "a; b; c" strings, one per escalation step; show each reason once.
  function distinct(reasons) {
    return [...new Set((reasons || []).flatMap((r) => String(r).split('; ')).map((r) => r.trim()).filter(Boolean))];
  }

  function renderCard(card) {
    const c = card.conversation, who = card.customer;
    const sla = el('span', { class: 'sla', dataset: { deadline: c.sla_deadline || '' } });
    const reasons = distinct(card.reasons);
    const confidence = card.confidence === null || card.confidence === undefined ? '' : ` (${Math.round(card.confidence * 100)}%)`;
    $('card').replaceChildren(
      section('Customer', dl([
        ['Name', who.display_name || 'Visitor ' + who.id.slice(0, 6)],
        ['Channel', who.channel], ['Language', who.language || c.language],
        ['Customer since', who.since ? new Date(who.since).toLocaleString() : ''],
        ['Reachable', who.unreachable ? 'no (blocked the bot)' : 'yes'],
      ])),
      section('Handoff', dl([
        ['Severity', badge(c.severity)], ['Queue', c.queue], ['State', c.state],
        ['Bot understood', card.intent ? card.intent + confidence : 'nothing confident'],
        ['First response', c.first_human_reply_at ? time(c.first_human_reply_at) : sla],
      ]),
      el('h4', {}, 'Why it came to a person'),
      el('ul', { class: 'reasons' }, reasons.length ? reasons.map((r) => el('li', {}, r)) : el('li', {}, '—'))),
      section('History', el('ol', { class: 'history' }, card.history.map((h) => el('li', {},
        el('time', {}, time(h.at)), ' ', el('strong', {}, h.kind), ' ', actor(h.actor),
        h.reason ? [' — ', distinct([h.reason]).join('; ')] : null, h.note ? el('div', { class: 'note-line' }, 'Note: ', h.note) : null)))),
      section('Previous conversations', card.previous_conversations.length
        ? el('ul', { class: 'previous' }, card.previous_conversations.map((p) => el('li', {},
          new Date(p.created_at).toLocaleDateString(), ' · ', p.state, ' · ', p.bot_only ? 'bot only' : (p.queue || 'agent'))))
        : el('p', { class: 'meta' }, 'First conversation.')),
    );
    tick();
  }

  // ---- composer ------------------------------------------------------------------------------

  const mode = () => document.querySelector('input[name=mode]:checked').value;

  function clientId() {
    const b = new Uint8Array(12);
    crypto.getRandomValues(b);
    return 'c' + Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  }

  async function deliver(cid, text, clientMsgId, li) {
    const state = li.querySelector('.delivery');
    state.textContent = 'sending…';
    li.classList.remove('failed');
    try {
      const r = await api('POST', `/api/agent/conversations/${encodeURIComponent(cid)}/messages`, { text, client_msg_id: clientMsgId });
      const id = String(r.message.id);
      if (S.open !== cid) return;
      const echo = S.shown.get(id);
      if (echo && echo !== li) echo.remove(); // the live event came first: keep ours, in place
      li.dataset.id = id;
      S.shown.set(id, li);
      state.textContent = 'sent ✓';
      humanReplied();
    } catch (e) {
      li.classList.add('failed');
      state.replaceChildren('not sent: ' + e.message + ' ', el('button', {
        type: 'button', class: 'small', onclick: () => deliver(cid, text, clientMsgId, li),
      }, 'Retry'));
    }
  }

  async function submit(e) {
    e.preventDefault();
    const cid = S.open, box = $('text'), text = box.value.trim();
    if (!cid || !text || box.disabled) return;
    box.value = '';
    stopTyping();
    if (mode() === 'note') {
      try {
        const r = await api('POST', `/api/agent/conversations/${encodeURIComponent(cid)}/notes`, { text });
        addMessage({ id: r.note.id, sender: 'note', text: r.note.text, by: S.me.display_name, created_at: new Date().toISOString(), mine: true });
      } catch (err) { box.value = text; report(err); }
      return;
    }
    const li = messageItem({ sender: 'agent', sender_id: S.me.id, text, created_at: new Date().toISOString(), delivery: 'sending…' });
    li.classList.add('mine');
    $('log').append(li);
    $('log').scrollTop = $('log').scrollHeight;
    await deliver(cid, text, clientId(), li);
  }

  let typingOn = false, typingIdle = 0;
  function typing() {
    if (!S.open || mode() !== 'reply') return;
    if (!typingOn) typingOn = S.socket.send({ type: 'typing', conversation_id: S.open, on: true });
    clearTimeout(typingIdle);
    typingIdle = setTimeout(stopTyping, 4000);
  }
  function stopTyping() {
    clearTimeout(typingIdle);
    if (typingOn && S.open) S.socket.send({ type: 'typing', conversation_id: S.open, on: false });
    typingOn = false;
  }

  let customerTypingTimer = 0;
  function showCustomerTyping(on) {
    clearTimeout(customerTypingTimer);
    $('typing').hidden = !on;
    if (on) customerTypingTimer = setTimeout(() => { $('typing').hidden = true; }, 8000);
  }

  // ---- chat actions --------------------------------------------------------------------------

  // Release and resolve end the agent's part in the chat: the first click asks, the second acts.
  function confirmFirst(button, label, action) {
    if (button.dataset.confirm !== '1') {
      button.dataset.confirm = '1';
      button.dataset.label = button.textContent;
      button.textContent = label;
      button.confirmTimer = setTimeout(() => resetConfirm(button), 5000);
      return;
    }
    resetConfirm(button);
    action();
  }
  function resetConfirm(button) {
    clearTimeout(button.confirmTimer);
    if (button.dataset.confirm === '1') button.textContent = button.dataset.label;
    button.dataset.confirm = '';
  }

  async function act(path, body, done) {
    const cid = S.open;
    try {
      await api('POST', `/api/agent/conversations/${encodeURIComponent(cid)}/${path}`, body || {});
      flash(done, 'ok');
      await refreshMe();
      await refreshQueues();
      if (S.open === cid) await loadCard(cid, false, true);
    } catch (e) { report(e); }
  }

  async function openTransfer() {
    const queue = $('transfer-queue'), agent = $('transfer-agent');
    queue.replaceChildren(el('option', { value: '' }, '—'), ...S.config.queues.map((q) => el('option', { value: q }, q)));
    $('transfer-agent-label').hidden = !isSupervisor();
    if (isSupervisor()) {
      try {
        const { agents } = await api('GET', '/api/supervisor/agents');
        agent.replaceChildren(el('option', { value: '' }, '—'), ...agents.filter((a) => !a.disabled && a.id !== S.me.id)
          .map((a) => el('option', { value: a.id }, `${a.display_name} (${a.presence}, ${a.load}/${a.max_chats})`)));
      } catch (e) { report(e); }
    }
    $('transfer-note').value = '';
    $('transfer-error').hidden = true;
    $('transfer-dialog').showModal();
  }

  async function doTransfer(e) {
    if (e.submitter && e.submitter.value !== 'ok') return;
    e.preventDefault();
    const body = { to_queue: $('transfer-queue').value || undefined, to_agent: $('transfer-agent').value || undefined, note: $('transfer-note').value || undefined };
    if (!body.to_queue && !body.to_agent) {
      $('transfer-error').textContent = 'Choose a queue or an agent.';
      $('transfer-error').hidden = false;
      return;
    }
    $('transfer-dialog').close();
    await act('transfer', body, 'Transferred.');
  }

  // ---- canned responses ----------------------------------------------------------------------

  let cannedTimer = 0;
  async function searchCanned() {
    const params = new URLSearchParams({ q: $('canned-q').value });
    if ($('canned-lang').value) params.set('language', $('canned-lang').value);
    try {
      const { canned } = await api('GET', '/api/agent/canned?' + params);
      $('canned-list').replaceChildren(...canned.map((c) => el('li', {}, el('button', {
        type: 'button', class: 'canned-item', dataset: { id: c.id }, title: c.text,
        onclick: () => insertCanned(c.text),
      }, el('span', { class: 'lang' }, c.language), ' ', el('strong', {}, c.title), el('span', { class: 'preview' }, c.text)))));
      if (!canned.length) $('canned-list').append(el('li', { class: 'none' }, 'No canned response matches.'));
    } catch (e) { report(e); }
  }

  function insertCanned(text) {
    const box = $('text');
    if (box.disabled) return;
    const start = box.selectionStart ?? box.value.length, end = box.selectionEnd ?? box.value.length;
    box.value = box.value.slice(0, start) + text + box.value.slice(end);
    box.focus();
    box.selectionStart = box.selectionEnd = start + text.length;
  }

  // ---- live events ---------------------------------------------------------------------------

  function onConsole(ev) {
    const cid = ev.conversation_id;
    // Mine: addressed to me, or a chat I hold (a supervisor may have reassigned it).
    const aboutMe = ev.agent_id === S.me.id || S.chats.some((c) => c.conversation_id === cid);
    switch (ev.kind) {
      case 'escalated':
        if (ev.severity === 'critical') alertAgent('Critical chat waiting');
        break;
      case 'severity':
        if (ev.severity === 'critical') alertAgent('Chat became critical');
        break;
      case 'assigned':
        if (ev.agent_id === S.me.id) alertAgent('New chat for you');
        break;
      case 'sla_breach':
        if (aboutMe || (S.open && cid === S.open)) flash('SLA breached: a customer has waited too long.', 'warn');
        break;
      case 'note':
        if (cid === S.open && ev.message) addMessage({ ...ev.message, created_at: new Date(ev.at * 1000).toISOString() });
        return;
      default:
        break;
    }
    refreshSoon(aboutMe || (S.open && cid === S.open) || ev.kind === 'presence');
  }

  function onFrame(f) {
    if (f.type === 'console') onConsole(f.event);
    else if (f.type === 'event' && f.conversation_id !== S.open) {
      const ev = f.event;
      if (ev.kind === 'message' && ev.message.sender === 'customer' && holds(f.conversation_id)) {
        S.unread.set(f.conversation_id, (S.unread.get(f.conversation_id) || 0) + 1);
        renderMyChats();
        alertAgent('New message');
      }
    } else if (f.type === 'event' && f.conversation_id === S.open) {
      const ev = f.event;
      if (ev.kind === 'message') {
        addMessage(ev.message);
        if (ev.message.sender === 'customer') showCustomerTyping(false);
      } else if (ev.kind === 'state') {
        loadCard(S.open, false, true);
        refreshSoon(true);
      }
    } else if (f.type === 'typing' && f.conversation_id === S.open) showCustomerTyping(f.on);
    else if (f.type === 'error') flash(f.message);
  }

  function onStatus(status) {
    $('conn').textContent = status === 'live' ? 'live' : status + '…';
    $('conn').dataset.status = status;
    if (status === 'live') refreshSoon(true); // catch up on anything missed while away
  }

  // ---- start ---------------------------------------------------------------------------------

  async function boot() {
    S.me = await window.CL.session();
    S.config = await api('GET', '/api/agent/config');
    $('who').textContent = `${S.me.display_name} (${S.me.role})`;
    $('to-supervisor').hidden = !isSupervisor();
    $('to-reports').hidden = !['manager', 'admin'].includes(S.me.role);
    for (const b of document.querySelectorAll('.presence button')) {
      b.addEventListener('click', () => setPresence(b.dataset.status).catch(report));
    }
    $('logout').addEventListener('click', () => window.CL.logout(false));
    $('logout-all').addEventListener('click', () => window.CL.logout(true));
    $('composer').addEventListener('submit', submit);
    $('text').addEventListener('input', typing);
    $('text').addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); $('composer').requestSubmit(); }
    });
    for (const r of document.querySelectorAll('input[name=mode]')) r.addEventListener('change', () => S.card && renderChatHead(S.card));
    $('claim').addEventListener('click', () => S.open && claim(S.open));
    $('transfer').addEventListener('click', openTransfer);
    $('transfer-form').addEventListener('submit', doTransfer);
    $('release').addEventListener('click', (e) => confirmFirst(e.currentTarget, 'Click again to release', () => act('release', {}, 'Returned to the bot.')));
    $('resolve').addEventListener('click', (e) => confirmFirst(e.currentTarget, 'Click again to resolve', () => act('resolve', {}, 'Resolved: the customer gets the survey.')));
    $('canned-q').addEventListener('input', () => { clearTimeout(cannedTimer); cannedTimer = setTimeout(searchCanned, 150); });
    $('canned-lang').addEventListener('change', searchCanned);
    $('canned').addEventListener('toggle', () => { if ($('canned').open) searchCanned(); });
    for (const ev of ['focus', 'pointerdown', 'keydown']) window.addEventListener(ev, seen);

    S.socket = new AgentSocket({ onFrame, onStatus, heartbeatS: S.config.heartbeat_s });
    S.socket.connect();
    await refreshMe();
    if (S.presence === 'offline') await setPresence('away'); // present, but not taking chats yet
    await refreshQueues();
    setInterval(tick, 1000);
    setInterval(() => refreshQueues().catch(() => {}), 30000); // counts stay right even if an event is missed
    document.body.dataset.ready = '1';
  }

  // Read-only hooks for tests and for support staff looking at a console.
  window.CarelineConsole = Object.freeze({
    state: () => ({
      presence: S.presence, open: S.open, alerts: S.alerts, title: document.title,
      chats: S.chats.map((c) => c.conversation_id),
      waiting: waitingChats().map((w) => w.conversation_id),
    }),
  });

  boot().catch((e) => { if (e.status !== 401) flash('The console could not start: ' + e.message); });
})();
