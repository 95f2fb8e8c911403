// kiln's dashboard: plain JavaScript, no framework, no build step, no network access but
// this kiln's own API.
//
// How this works: the page holds a copy of the state that GET /api/status answers (targets,
// services, updates) and folds every event of ONE EventSource (/api/events) into it, as the
// status view in kiln does. `seq` says which events a copy has already seen: the stream is
// opened with `?since=<status.seq>`, and on a reconnect the browser sends Last-Event-ID
// itself; an event whose seq is not newer than what was folded is skipped, so a replay
// never counts twice. `stream.lagged` (this tab missed events) re-reads /api/status.
// A status read later (after config.reloaded, a ready service's ports) is folded by kiln on
// a subscription of its own, which may be a moment behind this tab's stream: the events the
// page applied last (KEPT, output lines aside) are kept, and those newer than the status's
// `seq` are applied again on top of it, so a status never takes the page back in time.
//
// Nothing is drawn when an event arrives: events mark what they changed, and one
// requestAnimationFrame callback draws it all. Log panes are bounded (CAP lines each, of
// which only those in sight are in the DOM), lines go in as textContent (a service may
// print `<script>`), and a pane that is not open keeps nothing (it reads /api/logs when
// opened; output for it is not even parsed), so 300 resources and 10,000 lines a second
// leave the page answering.
'use strict';

(() => {
  const CAP = 2000; // lines a log pane keeps (memory and DOM)
  const MAX_UPDATES = 50; // what /api/status keeps too
  const MAX_ALERTS = 20;
  const STATUS_EVERY_MS = 1000; // at most one status re-read a second
  const KEPT = 500; // events applied that a status older than them would undo
  const ALERT_LINES = 3; // a failed build's last output lines its alert shows
  const ALERT_LINE_CHARS = 300;

  const $ = (sel) => document.querySelector(sel);
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const SVG = 'http://www.w3.org/2000/svg';
  const svg = (tag, attrs) => {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    return e;
  };

  // ---- state ------------------------------------------------------------------------

  const state = {
    targets: new Map(), // name → { status, reason, duration_ms, finished_at }
    services: new Map(), // name → { phase, replicas: {n: {phase, reason, restarts, ports}}, ready, desired, image, last_update }
    graph: { targets: [], services: [] },
    updates: [], // oldest first, at most MAX_UPDATES
    seq: 0, // the last event the status had folded in when it was read
    streamSeq: 0, // the last event the stream gave
    loaded: false, // whether a status came: until then the table says `loading…`
  };
  const stats = { events: 0, lines: 0, lagged: 0, statusReads: 0, statusApplied: 0, reapplied: 0, frames: 0, skipped: 0, drawMs: 0, drawMaxMs: 0 };
  const kept = []; // the last KEPT events applied (not output), oldest first
  let keptDropped = 0; // the seq of the newest event that left `kept`
  let replaying = false; // applying kept events again: state only, no lines, alerts or reads
  const tails = new Map(); // target → its running build's last ALERT_LINES output lines (raw JSON or events)
  const dirty = { table: true, updates: true, alerts: true, graph: true, layout: true };

  const key = (kind, name) => `${kind}:${name}`;
  const nameOf = (k) => k.slice(k.indexOf(':') + 1);

  function target(name) {
    let t = state.targets.get(name);
    if (!t) state.targets.set(name, (t = { status: '', reason: '', duration_ms: null }));
    return t;
  }
  function service(name) {
    let s = state.services.get(name);
    if (!s) state.services.set(name, (s = { phase: '', replicas: {}, ready: 0, desired: 0, image: null }));
    return s;
  }
  function graphService(name) {
    return state.graph.services.find((s) => s.name === name);
  }
  function graphTarget(name) {
    return state.graph.targets.find((t) => t.name === name);
  }

  // One phase for a service, as kiln's status view says it: `ready` when every replica is,
  // else the first replica's phase that is not.
  function summarize(s) {
    const reps = Object.keys(s.replicas)
      .map(Number)
      .sort((a, b) => a - b)
      .map((n) => s.replicas[n]);
    s.ready = reps.filter((r) => r.phase === 'ready').length;
    const notReady = reps.find((r) => r.phase !== 'ready');
    s.phase = notReady ? notReady.phase : reps.length ? 'ready' : 'pending';
  }

  function applyStatus(st) {
    stats.statusApplied++;
    state.loaded = true;
    state.targets = new Map(Object.entries(st.targets || {}));
    const services = new Map();
    for (const [name, s] of Object.entries(st.services || {})) {
      services.set(name, {
        phase: s.phase,
        replicas: s.replicas || {},
        ready: s.ready,
        desired: s.desired,
        image: s.image || null,
        last_update: s.last_update || null,
      });
    }
    state.services = services;
    if (Array.isArray(st.updates)) state.updates = st.updates.slice(-MAX_UPDATES);
    const at = typeof st.seq === 'number' ? st.seq : 0;
    state.seq = Math.max(state.seq, at);
    // What this tab applied after the status was taken, again on top of it.
    replaying = true;
    try {
      for (const ev of kept) {
        if (ev.seq > at) {
          stats.reapplied++;
          apply(ev);
        }
      }
    } finally {
      replaying = false;
    }
    // Further behind than what is kept: a later status has it.
    if (keptDropped > at) scheduleStatus();
    clearResolved();
    dirty.table = dirty.updates = dirty.graph = true;
  }

  // ---- the API ----------------------------------------------------------------------

  async function getJSON(path) {
    const r = await fetch(path, { credentials: 'same-origin', cache: 'no-store' });
    if (!r.ok) {
      let msg = `${r.status} ${r.statusText}`;
      try {
        msg = (await r.json()).error || msg;
      } catch (_) {
        /* not JSON */
      }
      const e = new Error(`GET ${path}: ${msg}`);
      e.status = r.status;
      throw e;
    }
    return r.json();
  }

  async function loadStatus() {
    stats.statusReads++;
    try {
      applyStatus(await getJSON('api/status'));
    } catch (e) {
      if (e.status === 401) disconnected();
      else addAlert('api:status', 'warning', `could not read the status: ${e.message}`);
    }
    requestDraw();
  }

  let statusTimer = null;
  let statusLast = 0;
  // Re-reads /api/status soon, at most once per STATUS_EVERY_MS however often asked.
  function scheduleStatus() {
    if (statusTimer) return;
    const wait = Math.max(0, statusLast + STATUS_EVERY_MS - Date.now());
    statusTimer = setTimeout(async () => {
      statusLast = Date.now();
      await loadStatus();
      statusTimer = null;
    }, wait);
  }

  async function loadGraph() {
    try {
      const g = await getJSON('api/graph');
      state.graph = { targets: g.targets || [], services: g.services || [] };
    } catch (e) {
      if (e.status === 401) disconnected();
      else addAlert('api:graph', 'warning', `could not read the dependency graph: ${e.message}`);
    }
    dirty.table = dirty.graph = dirty.layout = true;
    requestDraw();
  }

  // `kind`: target or service (a target and a service may share a name).
  async function trigger(kind, name, what, button) {
    button.disabled = true;
    button.classList.remove('done', 'error');
    const k = `trigger:${key(kind, name)}`;
    try {
      // Same origin: the browser sends the cookie and this page's Origin with the POST.
      const r = await fetch(`api/trigger/${encodeURIComponent(name)}?kind=${kind}`, { method: 'POST', credentials: 'same-origin' });
      if (!r.ok) {
        let msg = `${r.status} ${r.statusText}`;
        try {
          const body = await r.json();
          msg = body.error || msg;
          if (body.did_you_mean) msg += ` (did you mean ${body.did_you_mean}?)`;
        } catch (_) {
          /* not JSON */
        }
        throw new Error(msg);
      }
      button.classList.add('done');
      dismiss(k);
    } catch (e) {
      button.classList.add('error');
      addAlert(k, 'failure', `could not ${what} ${kind} ${name}: ${e.message}`);
    } finally {
      button.disabled = false;
    }
  }

  // ---- the event stream -------------------------------------------------------------

  let source = null;
  function connect() {
    // One EventSource per tab. On a reconnect it sends Last-Event-ID itself; the server
    // replays what came after it (or says stream.lagged when that is too old).
    source = new EventSource(`api/events?since=${Math.max(state.seq, state.streamSeq)}`);
    source.onopen = () => setConn('live', 'live');
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) disconnected();
      else setConn('connecting', 'reconnecting…');
    };
    source.onmessage = (m) => {
      // Output lines no open pane shows are most of a flood: known by their first bytes
      // (the type comes first, then the name), counted by their id, never parsed.
      // Those an open pane shows go in as they came, parsed when drawn or filtered.
      const k = outputOf(m.data);
      if (k !== null) {
        stats.events++;
        const seq = Number(m.lastEventId);
        if (seq <= state.streamSeq) {
          stats.skipped++;
          return;
        }
        state.streamSeq = seq;
        if (k.startsWith('target:')) tailLine(nameOf(k), m.data);
        if (wanted(k)) rawLine(k, m.data);
        return;
      }
      let ev;
      try {
        ev = JSON.parse(m.data);
      } catch (_) {
        return;
      }
      onEvent(ev);
    };
  }

  const SERVICE_OUTPUT = '{"type":"service.output","service":"';
  const TARGET_OUTPUT = '{"type":"target.output","target":"';
  // `service:NAME` or `target:NAME` of an output event's JSON, else null.
  function outputOf(data) {
    for (const [prefix, kind] of [
      [SERVICE_OUTPUT, 'service'],
      [TARGET_OUTPUT, 'target'],
    ]) {
      if (data.startsWith(prefix)) {
        const end = data.indexOf('"', prefix.length);
        const name = data.slice(prefix.length, end);
        // A name with an escape in it is left to JSON.parse.
        return end > 0 && !name.includes('\\') ? key(kind, name) : null;
      }
    }
    return null;
  }
  // Whether an open pane shows the output of `k` (a service's pane shows its build's).
  function wanted(k) {
    if (panes.has(k)) return true;
    if (!k.startsWith('target:')) return false;
    const t = nameOf(k);
    return state.graph.services.some((s) => (s.target === t || (s.deps || []).includes(t)) && panes.has(key('service', s.name)));
  }

  function disconnected() {
    if (source) source.close();
    setConn('down', 'disconnected: kiln up has ended or the token changed; open the URL `kiln dashboard` prints');
  }

  function setConn(kind, text) {
    const c = $('#conn');
    c.className = `conn conn-${kind}`;
    c.textContent = text;
  }

  function onEvent(ev) {
    stats.events++;
    if (ev.type === 'stream.lagged') {
      // Missed events: the status has what they changed (output lines are on disk).
      stats.lagged++;
      scheduleStatus();
      return;
    }
    // A replay never gives an event twice; and what the status read last already had is
    // not folded in again (it may be newer than the stream, which can lag behind).
    if (typeof ev.seq === 'number') {
      if (ev.seq <= state.streamSeq) {
        stats.skipped++;
        return;
      }
      state.streamSeq = ev.seq;
    }
    const fold = !(ev.seq <= state.seq);
    if (!fold) {
      // Only its line in a pane.
      if (ev.type === 'service.phase') phaseLine(ev);
      return;
    }
    if (typeof ev.seq === 'number' && ev.type !== 'target.output' && ev.type !== 'service.output') {
      kept.push(ev);
      if (kept.length > KEPT) keptDropped = kept.shift().seq;
    }
    apply(ev);
    requestDraw();
  }

  // Folds an event into the state (and, unless `replaying`, into panes and alerts).
  function apply(ev) {
    const live = !replaying;
    switch (ev.type) {
      case 'target.queued': {
        target(ev.target).status = 'queued';
        dirty.table = dirty.graph = true;
        break;
      }
      case 'target.started': {
        const t = target(ev.target);
        t.status = 'running';
        t.reason = ev.attempt > 1 ? `attempt ${ev.attempt}` : 'running';
        dirty.table = dirty.graph = true;
        if (!live) break;
        tails.delete(ev.target);
        buildLine(ev.target, { ts: ev.ts, stream: 'kiln', text: `build started${ev.attempt > 1 ? ` (attempt ${ev.attempt})` : ''}` });
        break;
      }
      case 'target.finished': {
        const t = target(ev.target);
        Object.assign(t, { status: ev.status, reason: ev.reason, duration_ms: ev.duration_ms, finished_at: ev.ts });
        dirty.table = dirty.graph = true;
        // The cause of a failure's alert is gone once the target is good again.
        if (OK_TARGET.has(ev.status)) dismiss(key('target', ev.target));
        if (!live) break;
        if (ev.status === 'failed') failureAlert(ev);
        tails.delete(ev.target);
        buildLine(ev.target, { ts: ev.ts, stream: 'kiln', text: `${ev.status} in ${ms(ev.duration_ms)}${ev.reason ? ` — ${ev.reason}` : ''}` });
        break;
      }
      case 'target.output':
        if (!live) break;
        tailLine(ev.target, ev);
        buildLine(ev.target, { ts: ev.ts, stream: ev.stream, text: ev.line });
        break;
      case 'service.phase': {
        const s = service(ev.service);
        const r = (s.replicas[ev.replica] = Object.assign(s.replicas[ev.replica] || {}, {
          phase: ev.phase,
          reason: ev.reason,
          restarts: ev.restarts,
        }));
        if (!['starting', 'ready', 'unhealthy', 'stopping'].includes(ev.phase)) r.ports = [];
        if (ev.image) s.image = ev.image;
        s.desired = ev.replicas;
        for (const n of Object.keys(s.replicas)) {
          if (Number(n) >= s.desired && s.replicas[n].phase === 'stopped') delete s.replicas[n];
        }
        summarize(s);
        dirty.table = dirty.graph = true;
        // Every replica ready: whatever failed, crashed or was unhealthy is over.
        if (s.phase === 'ready') dismiss(key('service', ev.service));
        if (!live) break;
        const who = `service ${ev.service}[${ev.replica}]`;
        if (ev.phase === 'failed') addAlert(key('service', ev.service), 'failure', `${who} failed: ${ev.reason}`, ev.ts);
        else if (ev.phase === 'backoff') addAlert(key('service', ev.service), 'failure', `${who} crashed, in backoff: ${ev.reason}`, ev.ts);
        else if (ev.phase === 'unhealthy') addAlert(key('service', ev.service), 'warning', `${who} is unhealthy: ${ev.reason}`, ev.ts);
        // A process's listening ports are read when the status is asked.
        if (ev.phase === 'ready') scheduleStatus();
        phaseLine(ev);
        break;
      }
      case 'service.started': {
        const s = service(ev.service);
        const r = (s.replicas[ev.replica] = s.replicas[ev.replica] || { phase: 'starting', reason: '', restarts: 0 });
        r.ports = ev.ports || [];
        r.pid = ev.pid;
        dirty.table = true;
        break;
      }
      case 'service.output':
        if (!live) break;
        paneLine(key('service', ev.service), { ts: ev.ts, source: 'runtime', replica: ev.replica, stream: ev.stream, text: ev.line });
        break;
      case 'update.completed': {
        const u = {
          seq: ev.seq,
          ts: ev.ts,
          cause: ev.cause,
          targets: ev.targets,
          services: ev.services,
          how: ev.how,
          latency_ms: ev.latency_ms,
        };
        if (state.updates.some((x) => x.seq === ev.seq)) break;
        state.updates.push(u);
        if (state.updates.length > MAX_UPDATES) state.updates.splice(0, state.updates.length - MAX_UPDATES);
        for (const name of ev.services || []) service(name).last_update = u;
        dirty.updates = dirty.table = true;
        break;
      }
      case 'config.reloaded':
        // kiln.toml is valid again.
        dismiss('config');
        if (!live) break;
        loadGraph();
        scheduleStatus();
        break;
      case 'config.invalid':
        if (!live) break;
        addAlert('config', 'warning', `kiln.toml has errors; the previous configuration keeps running: ${ev.message}`, ev.ts);
        break;
      case 'run.notice':
        if (!live) break;
        if (ev.level === 'warning') addAlert(`notice:${ev.message}`, 'warning', ev.message, ev.ts);
        break;
      default:
        break;
    }
  }

  // Keeps the last ALERT_LINES output lines of a target's build, as they came (an output
  // event's JSON, parsed only if the build fails).
  function tailLine(name, line) {
    let t = tails.get(name);
    if (!t) tails.set(name, (t = []));
    t.push(line);
    if (t.length > ALERT_LINES) t.shift();
  }

  // The alert of a failed build: its reason, and the last lines it printed (from the
  // stream, or else its log).
  function failureAlert(ev) {
    const k = key('target', ev.target);
    const text = `target ${ev.target} failed: ${ev.reason}`;
    const lines = (tails.get(ev.target) || []).map((l) => {
      if (typeof l !== 'string') return l.line;
      try {
        return JSON.parse(l).line;
      } catch (_) {
        return '';
      }
    });
    addAlert(k, 'failure', text, ev.ts, lines);
    if (lines.length) return;
    getJSON(`api/logs/${encodeURIComponent(ev.target)}?kind=target&tail=${ALERT_LINES}`)
      .then((body) => {
        const a = alerts.get(k);
        const from = (body.lines || []).map((l) => l.text);
        if (a && a.ts === ev.ts && from.length) {
          a.detail = shorten(from);
          dirty.alerts = true;
          requestDraw();
        }
      })
      .catch(() => {
        /* the alert says what failed; its pane says more */
      });
  }
  const shorten = (lines) =>
    lines.map((l) => String(l === undefined ? '' : l)).map((l) => (l.length > ALERT_LINE_CHARS ? `${l.slice(0, ALERT_LINE_CHARS)}…` : l));

  // After a status: the alerts whose cause it says is gone.
  function clearResolved() {
    for (const k of [...alerts.keys()]) {
      const name = nameOf(k);
      if (k.startsWith('target:') && OK_TARGET.has((state.targets.get(name) || {}).status)) dismiss(k);
      if (k.startsWith('service:') && (state.services.get(name) || {}).phase === 'ready') dismiss(k);
    }
  }

  // ---- log panes --------------------------------------------------------------------

  function phaseLine(ev) {
    paneLine(key('service', ev.service), {
      ts: ev.ts,
      source: 'runtime',
      replica: ev.replica,
      stream: 'kiln',
      text: `${ev.phase}${ev.reason ? ` — ${ev.reason}` : ''}`,
    });
  }

  // An output event's JSON as a pane line, parsed the first time it is needed.
  function rawLine(k, data) {
    if (k.startsWith('service:')) return paneLine(k, { raw: data });
    const t = nameOf(k);
    paneLine(k, { raw: data });
    for (const s of state.graph.services) {
      if (s.target === t || (s.deps || []).includes(t)) paneLine(key('service', s.name), { raw: data });
    }
  }
  function parsed(l) {
    if (l.raw === undefined) return l;
    let ev = {};
    try {
      ev = JSON.parse(l.raw);
    } catch (_) {
      /* kiln sends JSON */
    }
    delete l.raw;
    const build = ev.type === 'target.output';
    return Object.assign(l, {
      ts: ev.ts,
      source: build ? 'build' : 'runtime',
      replica: build ? null : ev.replica,
      stream: ev.stream,
      text: ev.line === undefined ? '' : ev.line,
    });
  }

  // A pane: what it holds (at most CAP lines) and, for the pane shown, the lines its filter
  // keeps (`shown`, null when to be computed anew).
  class Pane {
    constructor(k) {
      this.key = k;
      this.lines = [];
      this.shown = null;
      this.loading = true;
      this.early = []; // live lines that came while /api/logs was read
    }
    push(line) {
      stats.lines++;
      if (this.loading) {
        bounded(this.early, line);
        return;
      }
      bounded(this.lines, line);
      if (this.shown && keeps(line)) bounded(this.shown, line);
      if (this.key === current) {
        paneDirty = true;
        requestDraw();
      }
    }
  }
  // Appends, keeping at most CAP, at once: also while no frame is drawn (a tab in the
  // background gets none). V8 trims an array's front in place, so a shift costs O(1).
  function bounded(list, item) {
    list.push(item);
    if (list.length > CAP) list.shift();
  }

  const panes = new Map(); // key → Pane, only the panes opened
  let current = null; // the key of the pane shown

  function paneLine(k, line) {
    const p = panes.get(k);
    if (p) p.push(line);
  }
  // A target's build output goes to its pane and to those of the services it builds for.
  function buildLine(targetName, line) {
    const l = Object.assign({ source: 'build', target: targetName, replica: null }, line);
    paneLine(key('target', targetName), l);
    for (const s of state.graph.services) {
      if (s.target === targetName || (s.deps || []).includes(targetName)) paneLine(key('service', s.name), l);
    }
  }

  async function openPane(k) {
    let p = panes.get(k);
    if (!p) {
      p = new Pane(k);
      panes.set(k, p);
      const tab = el('button', '', k.replace(':', ' '));
      tab.type = 'button';
      tab.setAttribute('role', 'tab');
      tab.dataset.pane = k;
      tab.addEventListener('click', () => showPane(k));
      $('#log-tabs').append(tab);
      showPane(k);
      const name = nameOf(k);
      try {
        // A target's pane is its build log; a service's, its replicas' (a name may be both).
        const kind = k.slice(0, k.indexOf(':'));
        const body = await getJSON(`api/logs/${encodeURIComponent(name)}?kind=${kind}&tail=${CAP}`);
        const lines = (body.lines || []).map((l) => ({
          ts: l.ts,
          source: l.source,
          replica: l.replica,
          stream: l.stream,
          text: l.text,
        }));
        p.lines = dedupe(lines, p.early.map(parsed)).slice(-CAP);
      } catch (e) {
        p.lines = [{ source: 'runtime', stream: 'kiln', text: `could not read the log of ${name}: ${e.message}` }, ...p.early];
      }
      p.early = [];
      p.loading = false;
      p.shown = null;
      paneDirty = paneNow = true;
      requestDraw();
    } else {
      showPane(k);
    }
  }

  // The lines from disk, then the live ones that came during the read and are not on disk
  // yet (by time, then by text for lines of the same millisecond).
  function dedupe(disk, live) {
    const last = disk.length ? disk[disk.length - 1].ts : null;
    if (!last) return disk.concat(live);
    const sameTs = new Set(disk.filter((l) => l.ts === last).map((l) => l.text));
    return disk.concat(live.filter((l) => !l.ts || l.ts > last || (l.ts === last && !sameTs.has(l.text))));
  }

  function showPane(k) {
    current = k;
    panes.get(k).shown = null;
    paneDirty = paneNow = true;
    for (const t of document.querySelectorAll('#log-tabs button')) t.setAttribute('aria-selected', String(t.dataset.pane === k));
    $('#log-view').dataset.pane = k;
    dirty.table = true;
    requestDraw();
  }

  // One element per line, its label drawn by CSS from data-src.
  function lineElement(line) {
    const l = parsed(line);
    const d = document.createElement('div');
    const build = l.source === 'build';
    d.className = `line ${build ? 'b' : 'r'}${!l.stream || l.stream === 'stdout' ? '' : ` ${l.stream}`}`;
    let label = build ? 'build' : 'run';
    if (!build && l.replica !== null && l.replica !== undefined) label += `[${l.replica}]`;
    d.dataset.src = label;
    d.textContent = l.text;
    if (l.ts) d.title = l.ts;
    return d;
  }

  let filterText = '';
  const keeps = (l) => !filterText || String(parsed(l).text).toLowerCase().includes(filterText);

  // The pane shown is drawn as a window: only the lines in sight (and a margin) are in the
  // DOM, placed in a spacer as tall as all of them, so a frame costs the same whatever
  // the flood. Following, the window is the last lines and the view is kept at the bottom.
  const LINE_PX = 16; // .log-view .line's height in style.css
  const MARGIN = 20;
  const PANE_EVERY_MS = 50;
  let paneDirty = true;
  let paneNow = true; // draw without waiting for PANE_EVERY_MS
  let paneDrawn = 0;
  let paneTimer = null;
  let lastWindow = '';
  let lastNewest = null;
  let scrolledTo = -1; // where following put the view: its scroll event is not the reader's
  function drawPane() {
    const view = $('#log-view');
    const spacer = $('#log-spacer');
    const win = $('#log-window');
    const p = panes.get(current);
    if (!p || !paneDirty) return;
    // New lines are drawn at most PANE_EVERY_MS apart: a flood moves the window 20 times a
    // second rather than every frame (a scroll, a filter or a new pane is drawn at once).
    const now = performance.now();
    if (!paneNow && now - paneDrawn < PANE_EVERY_MS) {
      if (!paneTimer) {
        paneTimer = setTimeout(() => {
          paneTimer = null;
          requestDraw();
        }, PANE_EVERY_MS - (now - paneDrawn));
      }
      return;
    }
    paneDirty = false;
    paneNow = false;
    paneDrawn = now;
    if (p.lines.length > CAP) p.lines.splice(0, p.lines.length - CAP);
    if (!p.shown) p.shown = p.lines.filter(keeps);
    if (p.shown.length > CAP) p.shown.splice(0, p.shown.length - CAP);
    const n = p.shown.length;
    spacer.style.height = `${n * LINE_PX}px`;
    const visible = Math.ceil(view.clientHeight / LINE_PX) + 1;
    const follow = $('#log-follow').checked;
    let first = follow ? n - visible - MARGIN : Math.floor(view.scrollTop / LINE_PX) - MARGIN;
    first = Math.max(0, Math.min(first, n - 1));
    const last = Math.min(n, first + visible + 2 * MARGIN);
    const ends = `${p.key}|${n}|${first}|${last}|${filterText}`;
    const newest = n ? p.shown[n - 1] : null;
    if (ends !== lastWindow || newest !== lastNewest || p.loading) {
      lastWindow = ends;
      lastNewest = newest;
      const frag = document.createDocumentFragment();
      if (p.loading) frag.append(el('p', 'muted', 'reading the log…'));
      else if (!n) frag.append(el('p', 'muted', p.lines.length ? 'no line matches the filter' : 'no output yet'));
      for (let i = first; i < last; i++) frag.append(lineElement(p.shown[i]));
      win.style.top = `${first * LINE_PX}px`;
      win.replaceChildren(frag);
    }
    $('#log-count').textContent = `${n} line${n === 1 ? '' : 's'}${filterText ? ' match' : ''} (a pane keeps the last ${CAP})`;
    if (follow) {
      view.scrollTop = view.scrollHeight;
      scrolledTo = view.scrollTop;
    }
  }

  // ---- alerts -----------------------------------------------------------------------

  // Until dismissed, or until what caused it is gone (the target good again, the service
  // ready, kiln.toml valid): see apply and clearResolved.
  const alerts = new Map(); // key → { level, text, detail: [lines], ts, count }
  function addAlert(k, level, text, ts, detail) {
    const a = alerts.get(k);
    const d = shorten(detail || []);
    if (a) {
      Object.assign(a, { level, text, detail: d, ts: ts || new Date().toISOString(), count: a.count + 1 });
      alerts.delete(k); // newest last
      alerts.set(k, a);
    } else {
      alerts.set(k, { level, text, detail: d, ts: ts || new Date().toISOString(), count: 1 });
      while (alerts.size > MAX_ALERTS) alerts.delete(alerts.keys().next().value);
    }
    dirty.alerts = true;
    requestDraw();
  }
  function dismiss(k) {
    if (alerts.delete(k)) {
      dirty.alerts = true;
      requestDraw();
    }
  }
  function drawAlerts() {
    const box = $('#alerts');
    const frag = document.createDocumentFragment();
    for (const [k, a] of [...alerts].reverse()) {
      const d = el('div', `alert ${a.level}`);
      d.dataset.alert = k;
      d.setAttribute('role', 'alert');
      const time = el('time', '', clock(a.ts));
      time.dateTime = a.ts;
      const text = el('div', 'text');
      text.append(el('span', 'msg', a.count > 1 ? `${a.text} (×${a.count})` : a.text));
      if (a.detail.length) text.append(el('pre', 'detail', a.detail.join('\n')));
      const close = el('button', 'dismiss', 'dismiss');
      close.type = 'button';
      close.title = 'dismiss this alert';
      close.addEventListener('click', () => dismiss(k));
      d.append(time, text, close);
      frag.append(d);
    }
    box.replaceChildren(frag);
  }

  // ---- the table --------------------------------------------------------------------

  const OK_TARGET = new Set(['built', 'cached', 'fresh']);
  const TARGET_CLASS = { built: 's-ok', cached: 's-ok', fresh: 's-ok', failed: 's-bad', skipped: 's-warn', running: 's-busy', queued: 's-busy' };
  const PHASE_CLASS = {
    ready: 's-ok',
    completed: 's-ok',
    failed: 's-bad',
    backoff: 's-warn',
    unhealthy: 's-warn',
    starting: 's-busy',
    stopping: 's-busy',
    pending: 's-busy',
    stopped: 's-idle',
  };
  const statusClass = (kind, status) => (kind === 'target' ? TARGET_CLASS : PHASE_CLASS)[status] || 's-idle';

  // Every resource once: the graph's (the configuration's) and any the status names.
  function resources() {
    const list = [];
    const seen = new Set();
    const add = (kind, name, extra) => {
      const k = key(kind, name);
      if (seen.has(k)) return;
      seen.add(k);
      list.push(Object.assign({ key: k, kind, name }, extra));
    };
    const gt = [...state.graph.targets].sort((a, b) => a.name.localeCompare(b.name));
    for (const t of gt) add('target', t.name, { sub: t.kind });
    for (const name of [...state.targets.keys()].sort()) add('target', name, {});
    const gs = [...state.graph.services].sort((a, b) => a.name.localeCompare(b.name));
    for (const s of gs) add('service', s.name, { sub: s.kind, target: s.target });
    for (const name of [...state.services.keys()].sort()) add('service', name, {});
    return list;
  }

  // HOST:CONTAINER (a container's published port) or ADDRESS:PORT (a process listening).
  function hostPorts(s) {
    const ports = new Set();
    for (const r of Object.values(s.replicas || {})) {
      for (const p of r.ports || []) {
        const published = /^(?:[\d.]+:)?(\d+):\d+(?:\/\w+)?$/.exec(p);
        const listening = /:(\d+)$/.exec(p);
        const port = published ? published[1] : listening ? listening[1] : null;
        if (port) ports.add(Number(port));
      }
    }
    return [...ports].sort((a, b) => a - b);
  }

  function shortImage(image) {
    if (!image) return '';
    const base = image.split('/').pop();
    const m = /^(.*):kiln-([0-9a-f]+)$/.exec(base);
    return m && m[2].length > 4 ? `${m[1]}:kiln-${m[2].slice(0, 4)}…` : base;
  }

  const rows = new Map(); // key → { tr, cells, memo }
  let rowOrder = '';

  function drawTable() {
    const tbody = $('#resources tbody');
    const list = resources();
    const order = list.map((r) => r.key).join('\n');
    if (order !== rowOrder) {
      rowOrder = order;
      const wanted = new Set(list.map((r) => r.key));
      for (const [k, row] of rows) {
        if (!wanted.has(k)) {
          row.tr.remove();
          rows.delete(k);
        }
      }
      for (const r of list) if (!rows.has(r.key)) rows.set(r.key, newRow(r));
      tbody.replaceChildren(...list.map((r) => rows.get(r.key).tr));
    }
    let ready = 0;
    for (const r of list) {
      const s = r.kind === 'service' ? state.services.get(r.name) : null;
      if (s && s.phase === 'ready') ready++;
      fillRow(rows.get(r.key), r);
    }
    const nt = list.filter((r) => r.kind === 'target').length;
    const ns = list.length - nt;
    if (!list.length) tbody.replaceChildren(placeholder(state.loaded ? 'no targets or services' : 'loading…'));
    if (!state.loaded) {
      $('#summary').textContent = 'loading…';
      return;
    }
    $('#summary').textContent = `${nt} target${nt === 1 ? '' : 's'} · ${ns} service${ns === 1 ? '' : 's'}, ${ready} ready`;
  }

  function placeholder(text) {
    const tr = el('tr', 'placeholder');
    const td = el('td', 'muted', text);
    td.colSpan = 11;
    tr.append(td);
    return tr;
  }

  function newRow(r) {
    const tr = el('tr');
    tr.dataset.resource = r.key;
    const names = ['name', 'kind', 'build', 'runtime', 'duration num', 'reason', 'replicas num', 'image', 'ports', 'update num', 'actions'];
    const cells = {};
    for (const n of names) {
      const td = el('td', n);
      tr.append(td);
      cells[n.split(' ')[0]] = td;
    }
    cells.name.textContent = r.name;
    const act = el('button', 'act', r.kind === 'target' ? 'trigger' : 'restart');
    act.type = 'button';
    act.title = r.kind === 'target' ? `build ${r.name} now` : `restart ${r.name}, one replica at a time`;
    act.addEventListener('click', () => trigger(r.kind, r.name, r.kind === 'target' ? 'rebuild' : 'restart', act));
    const logs = el('button', 'logs', 'logs');
    logs.type = 'button';
    logs.title = r.kind === 'target' ? `show the build log of ${r.name}` : `show the log of ${r.name}'s replicas (and its build's output)`;
    logs.addEventListener('click', () => openPane(r.key));
    cells.actions.append(act, ' ', logs);
    return { tr, cells, memo: {} };
  }

  // Sets a cell only when what it shows changed.
  function put(row, cell, memoKey, value, draw) {
    if (row.memo[memoKey] === value) return;
    row.memo[memoKey] = value;
    draw(row.cells[cell]);
  }
  function badge(td, cls, text) {
    td.replaceChildren(text ? el('span', `badge ${cls}`, text) : el('span', 'muted', '—'));
  }

  function fillRow(row, r) {
    row.tr.classList.toggle('selected', r.key === current);
    if (!state.loaded) {
      // No status yet: nothing to say of it but that it comes.
      put(row, 'build', 'build', '…', (td) => badge(td, 's-idle', 'loading…'));
      put(row, 'runtime', 'runtime', '…', (td) => badge(td, r.kind === 'service' ? 's-idle' : '', r.kind === 'service' ? 'loading…' : ''));
      put(row, 'replicas', 'replicas', '…', (td) => (td.textContent = ''));
      return;
    }
    if (r.kind === 'target') {
      const t = state.targets.get(r.name) || {};
      const g = graphTarget(r.name);
      const kind = `target · ${(g && g.kind) || 'cmd'}`;
      put(row, 'kind', 'kind', kind, (td) => (td.textContent = kind));
      const st = t.status || '';
      put(row, 'build', 'build', st, (td) => badge(td, statusClass('target', st), st || 'not built'));
      put(row, 'runtime', 'runtime', '', (td) => badge(td, '', ''));
      const dur = t.duration_ms === null || t.duration_ms === undefined ? '' : ms(t.duration_ms);
      put(row, 'duration', 'duration', dur, (td) => (td.textContent = dur));
      put(row, 'reason', 'reason', t.reason || '', (td) => (td.textContent = t.reason || ''));
      return;
    }
    const s = state.services.get(r.name) || { phase: '', replicas: {}, ready: 0, desired: 0 };
    const g = graphService(r.name);
    const kind = `service · ${(g && g.kind) || (s.image ? 'container' : 'process')}`;
    put(row, 'kind', 'kind', kind, (td) => (td.textContent = kind));
    // Its build: the target that builds its image (or its one dep).
    const bt = g && (g.target || ((g.deps || []).length === 1 ? g.deps[0] : null));
    const bst = bt ? (state.targets.get(bt) || {}).status || '' : '';
    put(row, 'build', 'build', `${bt}|${bst}`, (td) => {
      if (!bt) return badge(td, '', '');
      badge(td, statusClass('target', bst), bst || 'not built');
      td.firstChild.title = `target ${bt}`;
    });
    put(row, 'runtime', 'runtime', s.phase, (td) => badge(td, statusClass('service', s.phase), s.phase || 'pending'));
    const lu = s.last_update;
    const dur = lu ? ms(lu.latency_ms.total) : '';
    put(row, 'duration', 'duration', '', (td) => badge(td, '', ''));
    const reps = Object.keys(s.replicas).map(Number).sort((a, b) => a - b);
    const first = reps.map((n) => s.replicas[n]).find((x) => x.phase !== 'ready') || s.replicas[reps[0]];
    const reason = first ? first.reason || '' : '';
    put(row, 'reason', 'reason', reason, (td) => (td.textContent = reason));
    const rep = `${s.ready}/${s.desired}`;
    put(row, 'replicas', 'replicas', rep, (td) => (td.textContent = rep));
    const img = shortImage(s.image);
    put(row, 'image', 'image', img, (td) => {
      td.textContent = img;
      td.title = s.image || '';
    });
    const ports = hostPorts(s);
    put(row, 'ports', 'ports', ports.join(','), (td) => {
      td.replaceChildren(
        ...ports.map((p) => {
          const a = el('a', '', String(p));
          a.href = `http://127.0.0.1:${p}/`;
          a.target = '_blank';
          a.rel = 'noopener noreferrer';
          return a;
        }),
      );
    });
    put(row, 'update', 'update', dur, (td) => {
      td.textContent = dur;
      td.title = lu ? breakdownText(lu.latency_ms) : '';
    });
  }

  // ---- the dependency graph ---------------------------------------------------------

  const nodes = new Map(); // key → <g>
  function drawGraph() {
    const box = $('#graph');
    if (dirty.layout) {
      dirty.layout = false;
      nodes.clear();
      box.replaceChildren(layout());
    }
    for (const [k, g] of nodes) {
      const name = nameOf(k);
      let cls;
      let label;
      if (!state.loaded) {
        label = 'loading…';
        cls = 's-idle';
      } else if (k.startsWith('target:')) {
        label = (state.targets.get(name) || {}).status || 'not built';
        cls = statusClass('target', label);
      } else {
        label = (state.services.get(name) || {}).phase || 'pending';
        cls = statusClass('service', label);
      }
      if (g.dataset.cls !== cls) {
        g.setAttribute('class', `node ${cls}`);
        g.dataset.cls = cls;
      }
      g.querySelector('title').textContent = `${k.replace(':', ' ')}: ${label}`;
    }
  }

  // A layered layout, left to right: a node's column is the longest path to it, and each
  // column is ordered by where its node's predecessors are (two sweeps of barycenters).
  function layout() {
    const keys = [];
    const preds = new Map();
    const addNode = (k) => {
      if (!preds.has(k)) {
        preds.set(k, new Set());
        keys.push(k);
      }
    };
    for (const t of state.graph.targets) addNode(key('target', t.name));
    for (const s of state.graph.services) addNode(key('service', s.name));
    const edge = (from, to) => {
      if (preds.has(from) && preds.has(to) && from !== to) preds.get(to).add(from);
    };
    for (const t of state.graph.targets) for (const d of t.deps || []) edge(key('target', d), key('target', t.name));
    for (const s of state.graph.services) {
      const to = key('service', s.name);
      if (s.target) edge(key('target', s.target), to);
      for (const d of s.deps || []) edge(key('target', d), to);
      for (const a of s.after || []) edge(key('service', a), to);
    }
    if (!keys.length) {
      return el('p', 'muted', 'no targets or services');
    }
    const layer = new Map();
    const visiting = new Set();
    const depth = (k) => {
      if (layer.has(k)) return layer.get(k);
      if (visiting.has(k)) return 0; // a cycle cannot be configured; be safe anyway
      visiting.add(k);
      let d = 0;
      for (const p of preds.get(k)) d = Math.max(d, depth(p) + 1);
      visiting.delete(k);
      layer.set(k, d);
      return d;
    };
    const columns = [];
    for (const k of keys.sort()) (columns[depth(k)] = columns[depth(k)] || []).push(k);
    const index = new Map();
    const reindex = () => columns.forEach((col) => col.forEach((k, i) => index.set(k, i)));
    reindex();
    for (let sweep = 0; sweep < 2; sweep++) {
      for (let c = 1; c < columns.length; c++) {
        const bary = (k) => {
          const ps = [...preds.get(k)];
          return ps.length ? ps.reduce((a, p) => a + index.get(p), 0) / ps.length : index.get(k);
        };
        const b = new Map(columns[c].map((k) => [k, bary(k)]));
        columns[c].sort((x, y) => b.get(x) - b.get(y));
        reindex();
      }
    }
    const H = 26;
    const GAP_Y = 12;
    const GAP_X = 60;
    const widths = columns.map((col) => Math.max(...col.map((k) => 7 * nameOf(k).length + 34), 90));
    const xs = [];
    let x = 10;
    for (const w of widths) {
      xs.push(x);
      x += w + GAP_X;
    }
    const height = Math.max(...columns.map((c) => c.length)) * (H + GAP_Y) + 10;
    const root = svg('svg', { width: x - GAP_X + 10, height, role: 'img', 'aria-label': 'dependency graph' });
    const defs = svg('defs');
    const marker = svg('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto' });
    marker.append(svg('path', { d: 'M0,0 L10,5 L0,10 z', fill: '#9a9a92' }));
    defs.append(marker);
    root.append(defs);
    const pos = new Map();
    columns.forEach((col, c) => col.forEach((k, i) => pos.set(k, { x: xs[c], y: 10 + i * (H + GAP_Y), w: widths[c] })));
    for (const [to, from] of preds) {
      for (const f of from) {
        const a = pos.get(f);
        const b = pos.get(to);
        const x1 = a.x + a.w;
        const y1 = a.y + H / 2;
        const x2 = b.x;
        const y2 = b.y + H / 2;
        const mx = (x1 + x2) / 2;
        const path = svg('path', { class: 'edge', d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`, 'marker-end': 'url(#arrow)' });
        path.dataset.from = f;
        path.dataset.to = to;
        root.append(path);
      }
    }
    for (const [k, p] of pos) {
      const g = svg('g', { class: 'node s-idle', transform: `translate(${p.x},${p.y})` });
      g.dataset.node = k;
      g.append(svg('title'));
      g.append(svg('rect', { width: p.w, height: H, rx: 4 }));
      const glyph = k.startsWith('target:') ? '▣ ' : '● ';
      const text = svg('text', { x: 8, y: H / 2 + 4 });
      text.textContent = glyph + nameOf(k);
      g.append(text);
      g.addEventListener('click', () => openPane(k));
      nodes.set(k, g);
      root.append(g);
    }
    return root;
  }

  // ---- update history ---------------------------------------------------------------

  const PHASES = ['detect', 'debounce', 'build', 'deploy', 'ready'];
  function breakdownText(l) {
    return `${PHASES.map((p) => `${p} ${ms(l[p] || 0)}`).join(', ')}; total ${ms(l.total || 0)}`;
  }
  // The history's `#`: 1, 2, 3 … in the order this page saw the updates (the event's seq
  // is in the cell's title).
  const updateNo = new Map(); // seq → number
  let updatesSeen = 0;
  function drawUpdates() {
    const tbody = $('#updates tbody');
    for (const u of state.updates) if (!updateNo.has(u.seq)) updateNo.set(u.seq, ++updatesSeen);
    if (updateNo.size > 2 * MAX_UPDATES) {
      const shown = new Set(state.updates.map((u) => u.seq));
      for (const seq of updateNo.keys()) if (!shown.has(seq)) updateNo.delete(seq);
    }
    const list = [...state.updates].reverse();
    $('#updates-empty').hidden = list.length > 0;
    $('#updates-empty').textContent = state.loaded ? 'No update yet: save a file a target or service reads.' : 'loading…';
    const max = Math.max(1, ...list.map((u) => (u.latency_ms && u.latency_ms.total) || 0));
    tbody.replaceChildren(
      ...list.map((u) => {
        const l = u.latency_ms || {};
        const tr = el('tr');
        tr.dataset.seq = String(u.seq);
        const cause = u.cause || [];
        const causeText = cause.slice(0, 3).join(', ') + (cause.length > 3 ? ` +${cause.length - 3}` : '');
        const who = [...(u.services || [])].join(', ') || [...(u.targets || [])].join(', ');
        const no = el('td', 'num no', String(updateNo.get(u.seq)));
        no.title = `event ${u.seq}`;
        tr.append(no, el('td', '', clock(u.ts)), el('td', 'cause', causeText), el('td', 'how', u.how || ''), el('td', '', who));
        for (const p of [...PHASES, 'total']) {
          const td = el('td', `num ${p}`, ms(l[p] || 0));
          td.dataset.ms = String(l[p] || 0);
          tr.append(td);
        }
        const bar = el('div', 'bar');
        bar.title = breakdownText(l);
        bar.style.width = `${Math.max(2, (14 * (l.total || 0)) / max)}rem`;
        const sum = PHASES.reduce((a, p) => a + (l[p] || 0), 0) || 1;
        for (const p of PHASES) {
          const seg = el('span', p);
          seg.style.width = `${(100 * (l[p] || 0)) / sum}%`;
          bar.append(seg);
        }
        const td = el('td', 'breakdown');
        td.append(bar);
        tr.append(td);
        return tr;
      }),
    );
  }

  // ---- drawing ----------------------------------------------------------------------

  let drawPending = false;
  function requestDraw() {
    if (drawPending) return;
    drawPending = true;
    requestAnimationFrame(draw);
  }
  function draw() {
    drawPending = false;
    stats.frames++;
    const t0 = performance.now();
    try {
      drawAll();
    } finally {
      const took = performance.now() - t0;
      stats.drawMs += took;
      stats.drawMaxMs = Math.max(stats.drawMaxMs, took);
    }
  }
  function drawAll() {
    if (dirty.table) {
      dirty.table = false;
      drawTable();
    }
    if (dirty.graph || dirty.layout) {
      dirty.graph = false;
      drawGraph();
    }
    if (dirty.updates) {
      dirty.updates = false;
      drawUpdates();
    }
    if (dirty.alerts) {
      dirty.alerts = false;
      drawAlerts();
    }
    drawPane();
  }

  function ms(n) {
    if (n === null || n === undefined) return '';
    return n < 1000 ? `${Math.round(n)} ms` : `${(n / 1000).toFixed(2)} s`;
  }
  function clock(ts) {
    const d = new Date(ts);
    return Number.isNaN(d.getTime()) ? '' : d.toLocaleTimeString([], { hour12: false });
  }

  // ---- controls ---------------------------------------------------------------------

  function wire() {
    const view = $('#log-view');
    const redraw = () => {
      const p = panes.get(current);
      if (p) p.shown = null;
      paneDirty = paneNow = true;
      requestDraw();
    };
    $('#log-filter').addEventListener('input', (e) => {
      filterText = e.target.value.toLowerCase();
      redraw();
    });
    $('#log-wrap').addEventListener('change', (e) => {
      view.classList.toggle('wrap', e.target.checked);
      redraw();
    });
    $('#log-follow').addEventListener('change', redraw);
    $('#log-clear').addEventListener('click', () => {
      const p = panes.get(current);
      if (!p) return;
      p.lines = [];
      redraw();
    });
    // Scrolling up to read stops following (the checkbox turns it on again); any scroll
    // moves the window.
    const stopFollowing = () => {
      $('#log-follow').checked = false;
    };
    view.addEventListener('wheel', (e) => {
      if (e.deltaY < 0) stopFollowing();
    });
    view.addEventListener('keydown', (e) => {
      if (['ArrowUp', 'PageUp', 'Home'].includes(e.key)) stopFollowing();
    });
    view.addEventListener('mousedown', (e) => {
      // the scroll bar
      if (e.offsetX > view.clientWidth) stopFollowing();
    });
    view.addEventListener('scroll', () => {
      if (view.scrollTop === scrolledTo) return;
      paneDirty = paneNow = true;
      requestDraw();
    });
  }

  // For the browser test and for curious people: counts, never state.
  window.kilnDashboard = {
    cap: CAP,
    stats,
    paneLines: () => (panes.get(current) || { lines: [] }).lines.length,
    paneText: () => ((panes.get(current) || {}).shown || []).map((l) => parsed(l).text),
  };

  async function start() {
    wire();
    await Promise.all([loadGraph(), loadStatus()]);
    connect();
  }
  start();
})();
