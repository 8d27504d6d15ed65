// careline supervisor view: all queues, agents with load and presence, SLA breaches, reassign.
// Live through the agent WebSocket (supervisors receive every console event).
(function () {
  'use strict';
  const { api, el, duration, slaText, badge, time, AgentSocket, SEVERITY_RANK } = window.CL;
  const $ = (id) => document.getElementById(id);

  const S = { me: null, agents: [], chats: [], queues: [], breaches: [], fresh: new Set(), skew: 0 };
  const serverNow = () => Date.now() / 1000 + S.skew;

  let flashTimer = 0;
  function flash(message, kind) {
    const box = $('flash');
    box.textContent = message;
    box.className = 'flash ' + (kind || 'error');
    box.hidden = false;
    clearTimeout(flashTimer);
    flashTimer = setTimeout(() => { box.hidden = true; }, 6000);
  }

  const agentName = (id) => {
    const a = S.agents.find((x) => x.id === id);
    return a ? a.display_name : (id ? id.slice(0, 6) : '—');
  };

  async function load() {
    const [agents, chats, queues, breaches] = await Promise.all([
      api('GET', '/api/supervisor/agents'),
      api('GET', '/api/supervisor/chats'),
      api('GET', '/api/agent/queues'),
      api('GET', '/api/supervisor/breaches'),
    ]);
    S.skew = queues.now - Date.now() / 1000;
    S.agents = agents.agents;
    S.chats = chats.chats;
    S.queues = queues.queues.map((q) => ({ ...q, since: queues.now }));
    S.breaches = breaches.breaches;
    render();
  }

  function render() {
    const waiting = S.queues.flatMap((q) => q.waiting);
    $('t-waiting').textContent = String(waiting.length);
    $('t-critical').textContent = String(waiting.filter((w) => w.severity === 'critical').length);
    $('t-held').textContent = String(S.chats.filter((c) => c.state === 'WITH_AGENT').length);
    $('t-online').textContent = String(S.agents.filter((a) => a.presence === 'online').length);
    $('t-breaches').textContent = String(S.breaches.length);

    $('queues').replaceChildren(...S.queues.map((q) => {
      const longest = q.waiting.reduce((m, w) => Math.max(m, w.waited_s), 0);
      const next = q.waiting.map((w) => w.sla_deadline).filter(Boolean).sort()[0];
      return el('tr', { dataset: { queue: q.name } },
        el('td', {}, el('strong', {}, q.name)), el('td', {}, String(q.count)),
        el('td', {}, String(q.waiting.filter((w) => w.severity === 'critical').length)),
        el('td', { dataset: { since: longest ? q.since - longest : '' } }, longest ? duration(longest) : '—'),
        el('td', {}, el('span', { class: 'sla', dataset: { deadline: next || '' } })));
    }));

    $('agents').replaceChildren(...S.agents.map((a) => el('tr', { dataset: { agent: a.id } },
      el('td', {}, el('span', { class: 'dot ' + a.presence, title: a.presence }), a.display_name,
        ' ', el('span', { class: 'meta' }, '@' + a.username + (a.disabled ? ' (disabled)' : ''))),
      el('td', {}, a.role), el('td', {}, `${a.load} / ${a.max_chats}`),
      el('td', { class: 'meta' }, (a.queues || []).join(', ') || 'all'))));

    const chats = [...S.chats].sort((a, b) => (SEVERITY_RANK[a.severity] ?? 9) - (SEVERITY_RANK[b.severity] ?? 9));
    $('chats').replaceChildren(...chats.map((c) => {
      const pick = el('select', { 'aria-label': 'Reassign to' }, el('option', { value: '' }, 'choose an agent…'),
        ...S.agents.filter((a) => !a.disabled && a.id !== c.agent_id)
          .map((a) => el('option', { value: a.id }, `${a.display_name} (${a.presence}, ${a.load}/${a.max_chats})`)));
      return el('tr', { dataset: { cid: c.conversation_id } },
        el('td', {}, badge(c.severity)), el('td', {}, c.queue || ''), el('td', {}, c.state),
        el('td', { class: 'agent' }, c.agent_id ? agentName(c.agent_id) : '—'), el('td', {}, `${c.channel} · ${c.language}`),
        el('td', {}, el('span', { class: 'sla', dataset: { deadline: c.sla_deadline || '' } })),
        el('td', {}, pick, ' ', el('button', { type: 'button', class: 'small primary', onclick: () => reassign(c.conversation_id, pick.value) }, 'Assign')));
    }));
    if (!chats.length) $('chats').append(el('tr', {}, el('td', { colspan: 7, class: 'meta' }, 'No chat is waiting or with an agent.')));

    $('breaches').replaceChildren(...S.breaches.map((b) => el('tr', { class: S.fresh.has(b.conversation_id) ? 'breach-new' : '' },
      el('td', {}, b.at ? new Date(b.at).toLocaleString() : time(b.at)), el('td', {}, badge(b.severity)),
      el('td', {}, b.queue || ''), el('td', {}, '#' + b.conversation_id.slice(0, 8)), el('td', {}, b.reason || ''))));
    if (!S.breaches.length) $('breaches').append(el('tr', {}, el('td', { colspan: 5, class: 'meta' }, 'No SLA breach.')));
    tick();
  }

  function tick() {
    const now = serverNow();
    for (const n of document.querySelectorAll('[data-deadline]')) {
      const s = slaText(Number(n.dataset.deadline) || 0, now);
      n.textContent = s.text;
      n.classList.toggle('late', s.late);
      n.classList.toggle('soon', s.soon);
    }
    for (const n of document.querySelectorAll('td[data-since]')) {
      if (n.dataset.since) n.textContent = duration(now - Number(n.dataset.since));
    }
  }

  async function reassign(cid, agentId) {
    if (!agentId) { flash('Choose an agent first.'); return; }
    try {
      await api('POST', `/api/supervisor/conversations/${encodeURIComponent(cid)}/assign`, { agent_id: agentId });
      flash('Reassigned to ' + agentName(agentId) + '.', 'ok');
      await load();
    } catch (e) { flash(e.message); }
  }

  // ---- canned responses (supervisors manage them; agents search and insert them) -------------

  let editing = null;

  async function loadCanned() {
    const { canned } = await api('GET', '/api/agent/canned');
    $('canned-rows').replaceChildren(...canned.map((c) => el('tr', { dataset: { canned: c.id } },
      el('td', {}, c.language), el('td', {}, el('strong', {}, c.title)), el('td', { class: 'text' }, c.text),
      el('td', {},
        el('button', { type: 'button', class: 'small', onclick: () => editCanned(c) }, 'Edit'), ' ',
        el('button', { type: 'button', class: 'small delete', onclick: (e) => deleteCanned(e.currentTarget, c) }, 'Delete')))));
    if (!canned.length) $('canned-rows').append(el('tr', {}, el('td', { colspan: 4, class: 'meta' }, 'No canned response yet.')));
  }

  function editCanned(c) {
    editing = c.id;
    $('canned-language').value = c.language;
    $('canned-title').value = c.title;
    $('canned-text').value = c.text;
    $('canned-save').textContent = 'Save';
    $('canned-cancel').hidden = false;
    $('canned-title').focus();
  }

  function resetCannedForm() {
    editing = null;
    $('canned-form').reset();
    $('canned-save').textContent = 'Add';
    $('canned-cancel').hidden = true;
  }

  async function saveCanned(e) {
    e.preventDefault();
    const body = { language: $('canned-language').value, title: $('canned-title').value, text: $('canned-text').value };
    try {
      if (editing) await api('PUT', '/api/supervisor/canned/' + editing, body);
      else await api('POST', '/api/supervisor/canned', body);
      flash(editing ? 'Canned response saved.' : 'Canned response added.', 'ok');
      resetCannedForm();
      await loadCanned();
    } catch (err) { flash(err.message); }
  }

  async function deleteCanned(button, c) {
    if (button.dataset.confirm !== '1') { button.dataset.confirm = '1'; button.textContent = 'Click again to delete'; return; }
    try {
      await api('DELETE', '/api/supervisor/canned/' + c.id);
      if (editing === c.id) resetCannedForm();
      await loadCanned();
    } catch (err) { flash(err.message); }
  }

  let timer = 0;
  function reloadSoon() {
    clearTimeout(timer);
    timer = setTimeout(() => load().catch((e) => flash(e.message)), 150);
  }

  function onFrame(f) {
    if (f.type !== 'console') return;
    if (f.event.kind === 'sla_breach') {
      S.fresh.add(f.event.conversation_id);
      flash('SLA breach in queue ' + (f.event.queue || '?') + ' (' + f.event.severity + ').', 'warn');
    }
    reloadSoon();
  }

  async function boot() {
    S.me = await window.CL.session();
    $('who').textContent = `${S.me.display_name} (${S.me.role})`;
    $('logout').addEventListener('click', () => window.CL.logout(false));
    const socket = new AgentSocket({
      onFrame,
      onStatus: (s) => { $('conn').textContent = s === 'live' ? 'live' : s + '…'; $('conn').dataset.status = s; if (s === 'live') reloadSoon(); },
    });
    socket.connect();
    $('canned-form').addEventListener('submit', saveCanned);
    $('canned-cancel').addEventListener('click', resetCannedForm);
    await Promise.all([load(), loadCanned()]);
    setInterval(tick, 1000);
    setInterval(reloadSoon, 30000);
    document.body.dataset.ready = '1';
  }

  boot().catch((e) => { if (e.status !== 401) flash('The supervisor view could not start: ' + e.message); });
})();
