// Herald's console: plain modern JavaScript, no build step, no third-party code. It talks
// only to the edge that served it, with the logged-in user's token: REST with an
// Authorization header, the metrics and logs sockets with the token in their first message,
// and Digital Rebar's event socket with ?token= (the one credential a browser's WebSocket can
// carry there: browsers cannot set headers on a WebSocket and that dialect has no first-message
// auth). The token lives in sessionStorage, so it ends with the tab.
'use strict';

const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k);
  return e;
};
const wsURL = (path) => (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + path;

// ---- session -------------------------------------------------------------------------

const session = {
  get token() { return sessionStorage.getItem('herald.token'); },
  get user() { return sessionStorage.getItem('herald.user'); },
  get perms() { return JSON.parse(sessionStorage.getItem('herald.perms') || '[]'); },
  get expires() { return Date.parse(sessionStorage.getItem('herald.expires') || '') || 0; },
  save(res) {
    sessionStorage.setItem('herald.token', res.token);
    sessionStorage.setItem('herald.user', res.user || '');
    sessionStorage.setItem('herald.perms', JSON.stringify(res.permissions || []));
    sessionStorage.setItem('herald.expires', res.expires_at || '');
  },
  clear() { for (const k of ['token', 'user', 'perms', 'expires']) sessionStorage.removeItem('herald.' + k); },
};
let expiryTimer = 0;

// may reports whether the user's permission filters (DRP's type.action.key, each field a
// comma list or *) allow type.action.key. The edge decides; this only hides what would fail.
function may(type, action, key) {
  const field = (f, v) => f === '*' || f.split(',').includes(v);
  return session.perms.some((p) => {
    const [t, a, ...k] = p.split('.');
    return field(t, type) && field(a || '*', action) && field(k.length ? k.join('.') : '*', key);
  });
}

async function api(method, path, body) {
  const opts = { method, headers: { Authorization: 'Bearer ' + session.token } };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  const resp = await fetch(path, opts);
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (resp.status === 401) logout('session ended: ' + errorText(data, resp));
  if (!resp.ok) throw new Error(errorText(data, resp));
  return data;
}
const errorText = (d, resp) =>
  (d && (d.error || d.message || (typeof d.detail === 'string' && d.detail) || (d.Messages && d.Messages.join(' ')))) ||
  resp.status + ' ' + resp.statusText;

async function login(ev) {
  ev.preventDefault();
  $('#login-error').textContent = '';
  try {
    const resp = await fetch('/api/v1/auth/login', {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ username: $('#login-user').value, password: $('#login-pass').value }),
    });
    const data = await resp.json().catch(() => ({}));
    if (!resp.ok) throw new Error(data.error || resp.status + ' ' + resp.statusText);
    session.save(data);
    $('#login-pass').value = '';
    if (!location.hash || location.hash === '#/login') location.hash = '#/servers';
    route();
  } catch (e) {
    $('#login-error').textContent = 'Login failed: ' + e.message;
  }
}

function logout(why) {
  session.clear();
  clearTimeout(expiryTimer);
  closePage();
  route();
  if (why) $('#login-error').textContent = why;
}

// ---- live sockets --------------------------------------------------------------------

// Live is one socket that reconnects with exponential backoff and full jitter, and shows its
// state in the page's socket bar: connected, reconnecting (when, which attempt), or closed
// with the code and reason. Closes that retrying cannot fix (token expired, kicked, refused)
// end it.
class Live {
  constructor(name, url, { onopen, onmessage }) {
    Object.assign(this, { name, url, onopen, onmessage, attempt: 0, stopped: false, timer: 0 });
    this.badge = el('span', { class: 'sock', 'data-socket': name });
    $('#sockets').append(this.badge);
    this.connect();
  }
  show(state, text) {
    this.badge.className = 'sock ' + state;
    this.badge.dataset.state = state;
    this.badge.textContent = this.name + ': ' + text;
  }
  connect() {
    this.show('reconnecting', this.attempt ? 'reconnecting (attempt ' + this.attempt + ')' : 'connecting');
    const ws = new WebSocket(typeof this.url === 'function' ? this.url() : this.url);
    this.ws = ws;
    ws.onopen = () => { this.attempt = 0; this.show('connected', 'connected'); this.onopen && this.onopen(ws); };
    ws.onmessage = (m) => { let d; try { d = JSON.parse(m.data); } catch { return; } this.onmessage(d); };
    ws.onclose = (e) => {
      if (this.stopped) return;
      const why = e.code + (e.reason ? ' ' + e.reason : '');
      if (e.code === 4001) { logout('session expired (' + why + ')'); return; }
      if (e.code === 4003 || e.code === 1008) { this.show('closed', 'closed ' + why); return; }
      const delay = Math.random() * Math.min(30000, 500 * 2 ** this.attempt++);
      this.show('reconnecting', 'closed ' + why + '; reconnecting in ' + (delay / 1000).toFixed(1) + ' s');
      this.timer = setTimeout(() => this.connect(), delay);
    };
  }
  send(text) { if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(text); }
  stop() { this.stopped = true; clearTimeout(this.timer); if (this.ws) this.ws.close(1000, 'page left'); this.badge.remove(); }
}

// monitorSocket opens a metrics or logs socket, token in the first message.
const monitorSocket = (name, kind, id, onmessage) => new Live(name, wsURL('/api/v1/ws/' + kind + '/' + encodeURIComponent(id)), {
  onopen: (ws) => ws.send(JSON.stringify({ type: 'auth', token: session.token })),
  onmessage,
});
// drpSocket opens Digital Rebar's event socket and registers the patterns on each (re)connect.
// It keeps the last event's stream position, so a reconnect resumes after it (?since= and
// "resume") and no event is lost across a dropped socket or a restarted edge.
function drpSocket(name, patterns, onevent) {
  let pos = '';
  return new Live(name, () => wsURL('/api/v3/ws?token=' + encodeURIComponent(session.token) + (pos ? '&since=' + encodeURIComponent(pos) : '')), {
    onopen: (ws) => {
      patterns().forEach((p) => ws.send('register ' + p));
      if (pos) ws.send('resume');
    },
    onmessage: (ev) => {
      if (ev.Position) pos = ev.Position;
      if (ev.Type === 'websocket' && ev.Action === 'error' && ev.Object && ev.Object.Code === 410) pos = ''; // too old: live from here
      onevent(ev);
    },
  });
}

// ---- charts --------------------------------------------------------------------------

// Chart is a line chart on a canvas of the last `keep` samples; redrawn at most once a frame.
class Chart {
  constructor(title, unit, keep = 120) {
    this.unit = unit; this.keep = keep; this.points = []; this.count = 0; this.pending = false;
    this.canvas = el('canvas', { 'data-samples': '0' });
    this.label = el('span', { class: 'muted' });
    this.node = el('div', { class: 'chart card' }, el('h3', {}, title + ' ', this.label), this.canvas);
  }
  add(v) {
    if (!Number.isFinite(v)) return;
    this.points.push(v);
    if (this.points.length > this.keep) this.points.shift();
    this.canvas.dataset.samples = String(++this.count);
    this.label.textContent = v.toFixed(1) + ' ' + this.unit;
    if (!this.pending) { this.pending = true; requestAnimationFrame(() => this.draw()); }
  }
  draw() {
    this.pending = false;
    const c = this.canvas, dpr = window.devicePixelRatio || 1;
    const w = c.clientWidth * dpr, h = c.clientHeight * dpr;
    if (c.width !== w || c.height !== h) { c.width = w; c.height = h; }
    const g = c.getContext('2d');
    g.clearRect(0, 0, w, h);
    const max = this.unit === '%' ? 100 : Math.max(1, ...this.points) * 1.1;
    g.strokeStyle = '#dde1e6'; g.lineWidth = dpr;
    for (let i = 1; i < 4; i++) { g.beginPath(); g.moveTo(0, h * i / 4); g.lineTo(w, h * i / 4); g.stroke(); }
    g.strokeStyle = '#0969da'; g.lineWidth = 2 * dpr; g.beginPath();
    this.points.forEach((v, i) => {
      const x = (i / (this.keep - 1)) * w, y = h - (v / max) * h;
      i ? g.lineTo(x, y) : g.moveTo(x, y);
    });
    g.stroke();
  }
}

// ---- pages ---------------------------------------------------------------------------

let current = { sockets: [], cleanup: [] };
function closePage() {
  current.sockets.forEach((s) => s.stop());
  current.cleanup.forEach((f) => f());
  current = { sockets: [], cleanup: [] };
  $('#page').replaceChildren();
}
const keepBounded = (list, max) => { while (list.childElementCount > max) list.lastElementChild.remove(); };

// Servers: agents from the connections API (who is online now), then agents.* events live.
async function serversPage(page) {
  const servers = new Map(); // id -> {online, facts, lastSeen}
  const tbody = el('tbody');
  page.append(el('h1', { text: 'Servers' }), el('table', { id: 'servers' },
    el('thead', {}, el('tr', {}, ...['Server', 'State', 'Host', 'OS', 'CPUs', 'Last seen'].map((t) => el('th', { text: t })))), tbody));
  const render = () => {
    tbody.replaceChildren(...[...servers.entries()].sort().map(([id, s]) => el('tr', { 'data-server': id },
      el('td', {}, el('a', { href: '#/server/' + encodeURIComponent(id), text: id })),
      el('td', { class: 'state ' + (s.online ? 'online' : 'offline'), text: s.online ? 'online' : 'offline' }),
      el('td', { text: (s.facts && s.facts.hostname) || '' }),
      el('td', { text: s.facts ? [s.facts.os, s.facts.platform, s.facts.platform_version].filter(Boolean).join(' ') : '' }),
      el('td', { text: (s.facts && s.facts.cpu_count) || '' }),
      el('td', { text: s.lastSeen ? new Date(s.lastSeen).toLocaleString() : '' }))));
    if (!servers.size) tbody.append(el('tr', {}, el('td', { colspan: '6', class: 'muted', text: 'No agent seen yet.' })));
  };
  const get = (id) => servers.get(id) || servers.set(id, {}).get(id);
  current.sockets.push(drpSocket('events (agents)', () => ['agents.*.*'], (ev) => {
    if (ev.Type !== 'agents') return;
    const s = get(ev.Key);
    if (ev.Action === 'online') { s.online = true; s.lastSeen = Date.now(); }
    if (ev.Action === 'offline') { s.online = false; s.lastSeen = Date.parse(ev.Time) || Date.now(); }
    if (ev.Action === 'facts') { s.facts = ev.Object; s.lastSeen = Date.now(); }
    render();
  }));
  render();
  // Who is there now: the edge's server listing (agents online and those that reported facts)
  // where it serves one, else the agents among the fleet's connections.
  try {
    let listed = null;
    try { listed = await api('GET', '/api/v1/servers'); } catch { listed = null; }
    if (Array.isArray(listed)) {
      for (const x of listed) {
        const s = get(x.id);
        if (s.online === undefined) s.online = x.status === 'online';
        if (!s.facts && x.metadata && typeof x.metadata === 'object') s.facts = x.metadata.facts || x.metadata;
        s.lastSeen = s.lastSeen || Date.parse(x.last_seen || '') || 0;
      }
    } else {
      for (const c of await api('GET', '/api/v3/connections')) {
        if (c.Endpoint !== 'agent' || !c.ServerID) continue;
        const s = get(c.ServerID);
        if (s.online === undefined) s.online = true;
        s.lastSeen = s.lastSeen || Date.now();
      }
    }
    render();
  } catch (e) {
    page.append(el('p', { class: 'error', text: 'Servers not listed: ' + e.message }));
  }
}

// A server: live charts (metrics socket), alerts, the log tail (logs socket), a command box.
function serverPage(page, id) {
  const charts = { cpu: new Chart('CPU', '%'), mem: new Chart('Memory', '%'), disk: new Chart('Disk (fullest)', '%'), net: new Chart('Network', 'KiB/s') };
  const alerts = el('ul', { id: 'alerts' });
  const tail = el('div', { class: 'tail', id: 'log-tail' });
  const level = el('select', { id: 'log-level' }, ...['all', 'debug', 'info', 'warning', 'error'].map((l) => el('option', { value: l, text: l })));
  const pause = el('input', { type: 'checkbox', id: 'log-pause' });
  page.append(el('h1', { text: id }),
    el('div', { class: 'charts', id: 'charts' }, ...Object.values(charts).map((c) => c.node)),
    el('div', { class: 'card' }, el('h2', { text: 'Alerts' }), alerts),
    el('div', { class: 'card' }, el('h2', { text: 'Logs' }),
      el('div', { class: 'row' }, el('label', { class: 'row' }, 'level ', level), el('label', { class: 'row' }, pause, ' pause')), tail));
  if (may('commands', 'run', id)) page.append(commandBox(id));

  let lastNet = null;
  current.sockets.push(monitorSocket('metrics', 'metrics', id, (m) => {
    if (m.type === 'metrics' && m.data) {
      const d = m.data;
      charts.cpu.add(d.cpu_percent);
      charts.mem.add(d.memory_percent);
      charts.disk.add(Math.max(0, ...(d.disk_usage || []).map((x) => x.usage_percent)));
      const bytes = (d.network || []).reduce((a, n) => a + n.bytes_sent + n.bytes_recv, 0), t = Date.parse(d.timestamp);
      if (lastNet && t > lastNet.t) charts.net.add(Math.max(0, bytes - lastNet.bytes) / 1024 / ((t - lastNet.t) / 1000));
      lastNet = { bytes, t };
    } else if (m.type === 'alert') {
      const a = m.data || m;
      alerts.prepend(el('li', { class: a.resolved ? 'muted' : 'error',
        text: (a.resolved ? 'resolved: ' : a.severity + ': ') + a.message + ' (' + new Date(a.created_at || Date.now()).toLocaleTimeString() + ')' }));
      keepBounded(alerts, 50);
    }
  }));
  const order = ['debug', 'info', 'warning', 'error'];
  const shown = (lvl) => level.value === 'all' || order.indexOf(normLevel(lvl)) >= order.indexOf(level.value);
  const refilter = () => tail.querySelectorAll('.log-line').forEach((n) => { n.hidden = !shown(n.dataset.level); });
  level.addEventListener('change', refilter);
  const held = [];
  pause.addEventListener('change', () => { if (!pause.checked) { held.splice(0).forEach(addLine); } });
  const addLine = (d) => {
    const n = el('div', { class: 'log-line ' + normLevel(d.level), 'data-level': d.level || '',
      text: (d.timestamp || '') + ' ' + (d.level || '').toUpperCase() + ' ' + d.message });
    n.hidden = !shown(d.level);
    tail.append(n);
    while (tail.childElementCount > 1000) tail.firstElementChild.remove();
    tail.scrollTop = tail.scrollHeight;
  };
  current.sockets.push(monitorSocket('logs', 'logs', id, (m) => {
    if (m.type !== 'log' || !m.data) return;
    if (pause.checked) { held.push(m.data); if (held.length > 1000) held.shift(); } else addLine(m.data);
  }));
}
const normLevel = (l) => ({ warn: 'warning', err: 'error', critical: 'error', fatal: 'error' }[(l || '').toLowerCase()] || (l || 'info').toLowerCase());

// commandBox runs a shell command through the edge's REST commands endpoint, ChatOps' shape:
// POST /api/v1/commands/{server_id} {"command"} answers {"success","output","error","exit_code"}.
function commandBox(id) {
  const input = el('input', { id: 'cmd-input', placeholder: 'uname -a', size: '50' });
  const out = el('pre', { class: 'output', id: 'cmd-output' });
  const exit = el('span', { id: 'cmd-exit', class: 'muted' });
  const run = el('button', { id: 'cmd-run', type: 'submit', text: 'Run' });
  return el('form', { class: 'card', onsubmit: async (ev) => {
    ev.preventDefault();
    run.disabled = true; out.textContent = ''; exit.textContent = 'running…';
    try {
      const r = await api('POST', '/api/v1/commands/' + encodeURIComponent(id), { command: input.value });
      out.textContent = r.output || '';
      exit.textContent = r.exit_code === null || r.exit_code === undefined ? 'failed: ' + (r.error || 'no exit code') : 'exit ' + r.exit_code;
      exit.dataset.code = String(r.exit_code);
    } catch (e) {
      exit.textContent = 'failed: ' + e.message;
    } finally { run.disabled = false; }
  } }, el('h2', { text: 'Run a command' }), el('div', { class: 'row' }, input, run, exit), out);
}

// Events: the live stream under a type.action.key filter, with pause.
function eventsPage(page) {
  const filter = el('input', { id: 'event-filter', value: sessionStorage.getItem('herald.filter') || '*.*.*', size: '40' });
  const status = el('span', { class: 'muted', id: 'event-status' });
  const pause = el('input', { type: 'checkbox', id: 'event-pause' });
  const list = el('div', { class: 'events card', id: 'event-list' });
  let patterns = [filter.value];
  page.append(el('h1', { text: 'Events' }),
    el('form', { class: 'row', onsubmit: (ev) => {
      ev.preventDefault();
      const next = filter.value.split(/\s+/).filter(Boolean);
      patterns.forEach((p) => sock.send('deregister ' + p));
      next.forEach((p) => sock.send('register ' + p));
      patterns = next;
      sessionStorage.setItem('herald.filter', filter.value);
      list.replaceChildren();
    } }, 'filter ', filter, el('button', { id: 'event-apply', type: 'submit', text: 'Apply' }),
    el('label', { class: 'row' }, pause, ' pause'), status), list);
  const sock = drpSocket('events', () => patterns, (ev) => {
    if (ev.Type === 'websocket') {
      status.textContent = ev.Action === 'error' ? 'error: ' + ((ev.Object && ev.Object.Error) || ev.Key) : ev.Action + ' ' + ev.Key;
      status.className = ev.Action === 'error' ? 'error' : 'muted';
      return;
    }
    if (pause.checked) return;
    const key = ev.Type + '.' + ev.Action + '.' + ev.Key;
    list.prepend(el('div', { class: 'event', 'data-key': key },
      el('span', { class: 'muted', text: (ev.Time || '') + ' ' }), el('b', { text: key }),
      el('span', { class: 'muted', text: ' ' + (ev.Principal || '') + ' ' }), el('span', { text: JSON.stringify(ev.Object) })));
    keepBounded(list, 500);
  });
  current.sockets.push(sock);
}

// Connections: the fleet-wide table, kept live by connections.* events, with kick.
async function connectionsPage(page) {
  const tbody = el('tbody', { id: 'conn-rows' });
  const msg = el('p', { class: 'error', id: 'conn-error' });
  const kick = may('connections', 'kick', '*');
  page.append(el('h1', { text: 'Connections' }), msg, el('table', { id: 'conn-table' },
    el('thead', {}, el('tr', {}, ...['Remote address', 'Principal', 'Endpoint', 'Server', 'Instance', 'Since', ''].map((t) => el('th', { text: t })))), tbody));
  let timer = 0;
  const load = async () => {
    try {
      const cs = await api('GET', '/api/v3/connections');
      tbody.replaceChildren(...cs.filter((c) => c.Websocket).map((c) => el('tr', { 'data-addr': c.RemoteAddr, 'data-endpoint': c.Endpoint },
        el('td', { text: c.RemoteAddr }), el('td', { text: c.Principal }), el('td', { text: c.Endpoint }),
        el('td', { text: c.ServerID || '' }), el('td', { text: c.Instance }), el('td', { text: new Date(c.CreateTime).toLocaleTimeString() }),
        el('td', {}, kick ? el('button', { class: 'kick', text: 'Kick', onclick: async () => {
          try { await api('DELETE', '/api/v3/connections/' + encodeURIComponent(c.RemoteAddr)); msg.textContent = ''; load(); } catch (e) { msg.textContent = 'Kick failed: ' + e.message; }
        } }) : ''))));
      msg.textContent = '';
    } catch (e) { msg.textContent = 'Not listed: ' + e.message; }
  };
  // Reload on each change, at most every 300 ms: bursts of connections cost one listing.
  const soon = () => { if (!timer) timer = setTimeout(() => { timer = 0; load(); }, 300); };
  current.cleanup.push(() => clearTimeout(timer));
  current.sockets.push(drpSocket('events (connections)', () => ['connections.*.*'], (ev) => { if (ev.Type === 'connections') soon(); }));
  await load();
}

// ---- routing -------------------------------------------------------------------------

function route() {
  const loggedIn = !!session.token && (!session.expires || session.expires > Date.now());
  $('#login').hidden = loggedIn;
  $('#nav').hidden = $('#logout').hidden = !loggedIn;
  $('#whoami').textContent = loggedIn ? session.user : '';
  closePage();
  if (!loggedIn) { if (session.token) logout('session expired'); return; }
  clearTimeout(expiryTimer);
  if (session.expires) expiryTimer = setTimeout(() => logout('session expired'), Math.min(session.expires - Date.now(), 2 ** 31 - 1));
  const [, name, arg] = (location.hash || '#/servers').split('/');
  document.querySelectorAll('#nav a').forEach((a) => a.classList.toggle('active', a.getAttribute('href') === '#/' + name));
  const page = $('#page');
  page.dataset.page = name;
  ({ servers: serversPage, events: eventsPage, connections: connectionsPage }[name] ||
    (name === 'server' ? (p) => serverPage(p, decodeURIComponent(arg || '')) : serversPage))(page);
}

$('#login').addEventListener('submit', login);
$('#logout').addEventListener('click', () => logout('logged out'));
window.addEventListener('hashchange', route);
route();
