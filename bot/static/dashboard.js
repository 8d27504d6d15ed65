// careline manager dashboard: fetches /api/reports/surveys and draws KPI cards and SVG charts.
// No innerHTML with data anywhere: every value goes in through textContent or attributes.
'use strict';
(() => {
  const API = '/api/reports/surveys';
  const SVG = 'http://www.w3.org/2000/svg';
  const FILTERS = ['channel', 'queue', 'agent', 'severity', 'language'];
  const form = document.getElementById('filters');
  const $ = (id) => document.getElementById(id);
  const LABELS = {
    csat_pct: ['CSAT', '%'], ces_mean: ['CES (mean)', ''], fcr_pct: ['First-contact resolution', '%'],
    containment_pct: ['Bot containment', '%'], response_rate_pct: ['Response rate', '%'], nps: ['NPS', ''],
  };

  function el(tag, attrs = {}, text) {
    const node = tag.startsWith('svg:') ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    if (text != null) node.textContent = String(text);
    return node;
  }
  const fmt = (v, unit = '') => (v == null ? '–' : `${Number(v).toLocaleString(undefined, { maximumFractionDigits: 2 })}${unit}`);
  function dur(s) {
    if (s == null) return '–';
    if (s < 90) return `${Math.round(s)} s`;
    if (s < 5400) return `${Math.round(s / 60)} min`;
    return `${(s / 3600).toFixed(1)} h`;
  }

  function params() {
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) q.set(k, String(v));
    return q;
  }

  function card(label, value, sub, target) {
    const c = el('div', { class: 'card', 'data-kpi': label });
    c.append(el('div', { class: 'label' }, label), el('div', { class: 'value' }, value));
    if (sub) c.append(el('div', { class: 'sub' }, sub));
    if (target) {
      const met = target.met === true ? 'met' : target.met === false ? 'missed' : '';
      const word = target.met === true ? 'target met' : target.met === false ? 'below target' : 'no data';
      c.append(el('div', { class: `sub target ${met}` }, `target ${fmt(target.target)} · ${word}` +
        (target.attainment_pct != null ? ` (${fmt(target.attainment_pct)}%)` : '')));
    }
    return c;
  }

  function drawCards(r) {
    const k = r.kpis;
    const targets = Object.fromEntries((r.targets || []).map((t) => [t.kpi, t]));
    const cards = $('cards');
    cards.replaceChildren(
      card('Conversations', fmt(k.volume), `${fmt(k.responses)} answered the survey`),
      card('CSAT', fmt(k.csat_pct, '%'), `${fmt(k.csat_responses)} answers, 4–5 of 5`, targets.csat_pct),
      card('CES (mean)', fmt(k.ces_mean), `${fmt(k.ces_responses)} answers, 1–7`, targets.ces_mean),
      card('First-contact resolution', fmt(k.fcr_pct, '%'), 'no reopen, no return within 7 days', targets.fcr_pct),
      card('Bot containment', fmt(k.containment_pct, '%'), 'resolved without a person', targets.containment_pct),
      card('Response rate', fmt(k.response_rate_pct, '%'), 'surveys answered / offered', targets.response_rate_pct),
      card('First response', dur(k.first_response_s.p50), `p50 · p90 ${dur(k.first_response_s.p90)} (escalated → agent)`),
      card('Resolution time', dur(k.resolution_s.p50), `p50 · p90 ${dur(k.resolution_s.p90)}`),
    );
    if ('nps' in k) cards.append(card('NPS', fmt(k.nps), `${fmt(k.nps_responses)} answers`, targets.nps));
  }

  function bars(svg, dist, color) {
    const keys = Object.keys(dist);
    const max = Math.max(1, ...Object.values(dist));
    const W = 300, H = 220, pad = 24, bw = (W - pad) / keys.length;
    svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
    svg.replaceChildren();
    keys.forEach((key, i) => {
      const h = ((H - 2 * pad) * dist[key]) / max;
      const x = pad / 2 + i * bw + 3;
      const bar = el('svg:rect', { x, y: H - pad - h, width: bw - 6, height: h, fill: color, rx: 2, 'data-score': key });
      bar.append(el('svg:title', {}, `${key}: ${dist[key]}`));
      svg.append(bar, el('svg:text', { x: x + (bw - 6) / 2, y: H - 8, 'text-anchor': 'middle' }, key),
        el('svg:text', { x: x + (bw - 6) / 2, y: H - pad - h - 4, 'text-anchor': 'middle' }, dist[key]));
    });
  }

  function trend(svg, days) {
    const W = 600, H = 220, L = 42, R = 34, T = 12, B = 26;
    svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
    svg.replaceChildren();
    if (!days.length) { svg.append(el('svg:text', { x: W / 2, y: H / 2, 'text-anchor': 'middle' }, 'no conversations in this range')); return; }
    const n = days.length, step = (W - L - R) / Math.max(1, n);
    const maxV = Math.max(1, ...days.map((d) => d.volume));
    const y = (pct) => T + (H - T - B) * (1 - pct / 100);
    days.forEach((d, i) => {
      const h = ((H - T - B) * d.volume) / maxV;
      const r = el('svg:rect', { x: L + i * step + 1, y: H - B - h, width: Math.max(1, step - 2), height: h, fill: '#cbd5e1', class: 'volume' });
      r.append(el('svg:title', {}, `${d.date}: ${d.volume} conversations, CSAT ${fmt(d.csat_pct, '%')}, CES ${fmt(d.ces_mean)}`));
      svg.append(r);
    });
    const pts = days.map((d, i) => (d.csat_pct == null ? null : `${L + i * step + step / 2},${y(d.csat_pct)}`)).filter(Boolean);
    if (pts.length) svg.append(el('svg:polyline', { points: pts.join(' '), fill: 'none', stroke: '#2563eb', 'stroke-width': 2, class: 'csat-line' }));
    for (const p of [0, 50, 100]) svg.append(el('svg:text', { x: L - 6, y: y(p) + 4, 'text-anchor': 'end' }, `${p}%`));
    svg.append(el('svg:text', { x: W - R + 4, y: T + 8 }, maxV));
    const every = Math.ceil(n / 8);
    days.forEach((d, i) => { if (i % every === 0) svg.append(el('svg:text', { x: L + i * step + step / 2, y: H - 8, 'text-anchor': 'middle' }, d.date.slice(5))); });
  }

  function fillOptions(options) {
    for (const name of FILTERS) {
      const sel = form.elements[name];
      const chosen = sel.value;
      sel.replaceChildren(el('option', { value: '' }, 'all'), ...(options[name] || []).map((v) => el('option', { value: v }, v)));
      sel.value = chosen;
    }
  }

  async function load(withOptions) {
    const q = params();
    if (withOptions) q.set('options', '1');
    $('export-csv').href = `${API}/export?${new URLSearchParams([...params(), ['format', 'csv']])}`;
    $('export-xlsx').href = `${API}/export?${new URLSearchParams([...params(), ['format', 'xlsx']])}`;
    const resp = await fetch(`${API}?${q}`, { credentials: 'same-origin' });
    if (resp.status === 401) { location.href = `/login?next=${encodeURIComponent(location.pathname)}`; return; }
    const body = await resp.json();
    if (!resp.ok) { $('error').hidden = false; $('error').textContent = body.error ? body.error.message : 'failed to load'; return; }
    $('error').hidden = true;
    if (body.options) fillOptions(body.options);
    $('scope').textContent = `${body.scope.start} → ${body.scope.end} (${body.scope.tz})`;
    form.elements.from.value = body.scope.start;
    form.elements.to.value = body.scope.end;
    drawCards(body);
    trend($('trend'), body.trend);
    bars($('ces'), body.distributions.ces, '#0ea5e9');
    bars($('csat'), body.distributions.csat, '#22c55e');
    document.body.dataset.loaded = 'true';
  }

  // Dates come from the URL, else the server's default (the last 30 days in its report zone).
  const url = new URLSearchParams(location.search);
  for (const name of ['from', 'to', ...FILTERS]) {
    if (url.get(name)) {
      const field = form.elements[name];
      if (field.tagName === 'SELECT') field.append(el('option', { value: url.get(name) }, url.get(name)));
      field.value = url.get(name);
    }
  }
  form.addEventListener('submit', (e) => { e.preventDefault(); history.replaceState(null, '', `?${params()}`); load(false); });
  fetch('/api/auth/session', { credentials: 'same-origin' }).then((r) => (r.ok ? r.json() : null))
    .then((s) => { if (s && s.principal) $('who').textContent = `${s.principal.display_name} (${s.principal.role})`; })
    .catch(() => {});
  load(true);
})();
