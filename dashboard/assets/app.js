// The dashboard page: one WebSocket to /ws, a snapshot then deltas, rendered into the DOM.
// Every string from the wire goes through textContent or a data attribute, never innerHTML,
// so nothing a drone or a build log says can become markup.
'use strict';

(() => {
  const MAX_BUILDS_SHOWN = 6;
  let state = null;
  let clockOffset = 0; // the dashboard's clock minus this browser's
  let retries = 0;
  let reconnectAt = 0;
  const $ = (id) => document.getElementById(id);

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function duration(ms) {
    if (!(ms >= 0)) return '–';
    const s = Math.floor(ms / 1000);
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const sec = s % 60;
    if (h > 0) return `${h}h ${String(m).padStart(2, '0')}m`;
    if (m > 0) return `${m}m ${String(sec).padStart(2, '0')}s`;
    return `${sec}s`;
  }

  function now() {
    return Date.now() + clockOffset;
  }

  // ---- connection ----

  function setConnection(kind, text) {
    const conn = $('conn');
    conn.dataset.state = kind;
    conn.textContent = text;
    document.body.classList.toggle('stale', kind === 'disconnected');
  }

  function connect() {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    let socket;
    try {
      socket = new WebSocket(`${scheme}//${location.host}/ws`);
    } catch (err) {
      scheduleReconnect();
      return;
    }
    setConnection(retries === 0 ? 'connecting' : 'disconnected',
      retries === 0 ? 'Connecting…' : 'Disconnected — reconnecting…');
    socket.onopen = () => {
      retries = 0;
      setConnection('live', 'Live');
    };
    socket.onmessage = (message) => {
      let push;
      try {
        push = JSON.parse(message.data);
      } catch (err) {
        return;
      }
      if (push.type === 'snapshot') {
        state = push.state;
      } else if (push.type === 'delta' && state) {
        applyDelta(push);
      } else {
        return;
      }
      clockOffset = state.now_ms - Date.now();
      render();
    };
    socket.onclose = () => scheduleReconnect();
    socket.onerror = () => socket.close();
  }

  function scheduleReconnect() {
    const delay = Math.min(5000, 500 * 2 ** retries);
    retries += 1;
    reconnectAt = Date.now() + delay;
    showCountdown();
    setTimeout(connect, delay);
  }

  function showCountdown() {
    const left = Math.max(0, Math.ceil((reconnectAt - Date.now()) / 1000));
    setConnection('disconnected', `Disconnected — reconnecting${left > 0 ? ` in ${left}s` : ''}…`);
  }

  // ---- state ----

  function applyDelta(delta) {
    state.now_ms = delta.now_ms;
    for (const key of ['ready', 'summary', 'progress', 'failures', 'builds', 'fold', 'dependencies']) {
      if (key in delta) state[key] = delta[key];
    }
    const removed = new Set(delta.removed || []);
    const byName = new Map(state.drones.filter((d) => !removed.has(d.name)).map((d) => [d.name, d]));
    for (const card of delta.drones || []) byName.set(card.name, card);
    state.drones = [...byName.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  // ---- rendering ----

  function render() {
    renderBlock();
    renderProgress();
    renderCriticalPath();
    renderDrones();
    renderDependencies();
    renderFailures();
    renderFold();
  }

  function renderBlock() {
    const s = state.summary;
    $('queue').textContent = s.queue;
    $('drones-active').textContent = s.drones.active;
    $('drones-idle').textContent = s.drones.idle;
    $('drones-grounded').textContent = s.drones.grounded;
    const other = [];
    if (s.drones.draining) other.push(`${s.drones.draining} draining`);
    if (s.drones.lost) other.push(`${s.drones.lost} lost`);
    if (s.drones.offline) other.push(`${s.drones.offline} offline`);
    $('drones-other').textContent = other.length ? `, ${other.join(', ')}` : '';
    $('cores-active').textContent = s.cores.active;
    $('cores-total').textContent = `of ${s.cores.total} online`;
    $('status').textContent = s.status;
    $('status').dataset.status = s.status;
    $('leader').textContent = s.leader || 'none: no coordinator leads (a standby takes the lead within seconds)';
    document.title = `Build swarm — ${s.status}, ${s.queue} queued`;
  }

  function renderProgress() {
    const p = state.progress;
    const total = p.total || 0;
    $('progress-done').style.width = total ? `${(100 * p.succeeded) / total}%` : '0';
    $('progress-failed').style.width = total ? `${(100 * (p.failed + (p.blocked || 0))) / total}%` : '0';
    if (!total) {
      $('progress-text').textContent = 'No packages submitted yet.';
      return;
    }
    const parts = [`${p.done} of ${total} done`];
    const bad = [];
    if (p.failed) bad.push(`${p.failed} failed`);
    if (p.blocked) bad.push(`${p.blocked} blocked by a failed dependency`);
    if (bad.length) parts[0] += ` (${bad.join(', ')})`;
    if (p.waiting) parts.push(`${p.waiting} waiting for their dependencies`);
    if (p.rate_per_min > 0) parts.push(`${p.rate_per_min.toFixed(1)} packages/min`);
    if (p.finished_ms) {
      parts.push(`finished in ${duration(p.finished_ms - p.started_ms)}`);
    } else {
      parts.push(`running for ${duration(state.now_ms - p.started_ms)}`);
      if (p.eta_secs !== null && p.eta_secs !== undefined) parts.push(`about ${duration(p.eta_secs * 1000)} left`);
    }
    $('progress-text').textContent = parts.join(' · ');
  }

  function known(value) {
    return value !== null && value !== undefined;
  }

  // The run's critical path through its build dependencies, and the earliest it can end with
  // the drones online; only for a run with build dependencies and work left.
  function renderCriticalPath() {
    const p = state.progress;
    const path = p.critical_path || [];
    const show = !p.finished_ms && known(p.critical_path_secs) && path.length > 0;
    $('critical').hidden = !show;
    if (!show) return;
    const count = path.length === 1 ? '1 package' : `${path.length} packages`;
    const end = known(p.critical_eta_secs)
      ? `ends in about ${duration(p.critical_eta_secs * 1000)}`
      : 'no drone online to build it';
    $('critical-text').textContent = `Critical path: ${count}, ${duration(p.critical_path_secs * 1000)} of work on 8 cores · ${end}`;
    $('critical-path').replaceChildren(...path.map((atom) => {
      const item = el('li', 'atom', atom);
      item.dataset.atom = atom;
      return item;
    }));
  }

  // Packages held back by their build dependencies: what each waits for, and those a failed
  // dependency blocked. The lists are cut by the dashboard; the totals count them all.
  function renderDependencies() {
    const d = state.dependencies || { waiting: [], waiting_total: 0, blocked: [], blocked_total: 0 };
    $('held').hidden = !(d.waiting_total || d.blocked_total);
    const counts = [];
    if (d.waiting_total) counts.push(`${d.waiting_total} waiting`);
    if (d.blocked_total) counts.push(`${d.blocked_total} blocked`);
    $('held-count').textContent = counts.length ? `(${counts.join(', ')})` : '';
    const waiting = d.waiting.map((w) => {
      const item = el('li', 'waiting');
      item.dataset.atom = w.atom;
      item.append(el('span', 'atom', w.atom));
      if (w.waits_for.length) {
        item.append(el('span', 'muted', ' waits for '), el('span', 'deps', w.waits_for.join(', ')));
      } else {
        item.append(el('span', 'muted', ' waits for nothing now: about to be queued'));
      }
      return item;
    });
    if (d.waiting_total > d.waiting.length) {
      waiting.push(el('li', 'muted', `+${d.waiting_total - d.waiting.length} more waiting`));
    }
    $('waiting').replaceChildren(...waiting);
    const blocked = d.blocked.map((b) => {
      const item = el('li', 'blocked');
      item.dataset.atom = b.atom;
      item.append(el('span', 'atom', b.atom), el('span', 'muted', ' blocked by '), el('span', 'deps', b.blocked_by),
        el('span', 'muted', ', which did not build'));
      return item;
    });
    if (d.blocked_total > d.blocked.length) {
      blocked.push(el('li', 'muted', `+${d.blocked_total - d.blocked.length} more blocked`));
    }
    $('blocked').replaceChildren(...blocked);
  }

  function renderDrones() {
    const container = $('drones');
    $('no-drones').hidden = state.drones.length > 0;
    $('drone-count').textContent = state.drones.length ? `(${state.drones.length})` : '';
    const existing = new Map();
    for (const node of container.querySelectorAll('article.drone')) existing.set(node.dataset.drone, node);
    const wanted = new Set(state.drones.map((d) => d.name));
    for (const [name, node] of existing) if (!wanted.has(name)) node.remove();
    let previous = $('no-drones');
    for (const drone of state.drones) {
      let card = existing.get(drone.name);
      if (!card) {
        card = el('article', 'drone');
        card.dataset.drone = drone.name;
      }
      fillCard(card, drone);
      if (previous.nextSibling !== card) previous.after(card);
      previous = card;
    }
  }

  function fillCard(card, d) {
    card.dataset.state = d.state;
    const head = el('header');
    head.append(el('h3', 'name', d.name), el('span', 'state', d.state));
    const nodes = [head];
    const meta = [];
    meta.push(d.cores === null ? 'cores ?' : `${d.cores} cores`);
    meta.push(d.slots === null ? 'slots ?' : `${d.slots} slots`);
    if (d.arch) meta.push(d.arch);
    if (d.fingerprint) meta.push(`fingerprint ${d.fingerprint}`);
    nodes.push(el('p', 'meta muted', meta.join(' · ')));
    if (d.reason) nodes.push(el('p', 'reason', d.reason));
    if (d.building.length) {
      const list = el('ul', 'builds');
      for (const b of d.building.slice(0, MAX_BUILDS_SHOWN)) {
        const item = el('li');
        item.dataset.atom = b.atom;
        const elapsed = el('span', 'elapsed muted', duration(now() - b.started_ms));
        elapsed.dataset.started = b.started_ms;
        item.append(el('span', 'atom', b.atom), elapsed);
        list.append(item);
      }
      if (d.building.length > MAX_BUILDS_SHOWN) {
        list.append(el('li', 'muted', `+${d.building.length - MAX_BUILDS_SHOWN} more`));
      }
      nodes.push(list);
    }
    if (d.last_result) nodes.push(el('p', 'last', `last: ${describeResult(d.last_result)}`));
    const counts = [`built ${d.builds.succeeded}`];
    if (d.builds.failed) counts.push(`failed ${d.builds.failed}`);
    if (d.builds.lease_lost) counts.push(`lease lost ${d.builds.lease_lost}`);
    nodes.push(el('p', 'counts muted', counts.join(' · ')));
    card.replaceChildren(...nodes);
  }

  function describeExit(exit) {
    if (exit.code !== null && exit.code !== undefined) return `exit status ${exit.code}`;
    if (exit.signal !== null && exit.signal !== undefined) return `killed by signal ${exit.signal}`;
    return 'unknown exit';
  }

  function describeResult(r) {
    const took = r.duration_ms !== null && r.duration_ms !== undefined ? ` in ${duration(r.duration_ms)}` : '';
    switch (r.outcome) {
      case 'succeeded': return `${r.atom} succeeded${took}`;
      case 'failed': return `${r.atom} failed (${describeExit(r.exit)})${took}`;
      case 'handed_back': return `${r.atom} handed back: ${r.reason}`;
      case 'lease_lost': return `${r.atom} lost its lease: ${r.reason}`;
      default: return `${r.atom} ${r.outcome}`;
    }
  }

  function renderFailures() {
    const list = $('failures');
    $('no-failures').hidden = state.failures.length > 0;
    const items = state.failures.map((f) => {
      const item = el('li');
      const details = el('details');
      const when = new Date(f.at_ms).toLocaleTimeString();
      details.append(
        el('summary', null, `${when} · ${f.atom} (attempt ${f.attempt}) on ${f.drone}: ${f.class || 'package'}: ${f.signature || describeExit(f.exit)}`),
        el('pre', 'log', f.log_tail || '(no output)'),
      );
      if (f.log) {
        // The attempt's complete log, as the drone stored it.
        const link = el('a', 'full-log', 'full log');
        link.href = f.log;
        details.append(link);
      }
      item.append(details);
      return item;
    });
    // Keep open the log tails the operator opened.
    const open = new Set([...list.querySelectorAll('details[open] summary')].map((s) => s.textContent));
    for (const item of items) {
      const details = item.firstChild;
      if (open.has(details.firstChild.textContent)) details.open = true;
    }
    list.replaceChildren(...items);
  }

  function renderFold() {
    const f = state.fold;
    $('nats-warning').hidden = f.nats_connected;
    const parts = [
      f.nats_connected ? 'NATS connected' : 'NATS disconnected',
      `${f.events_folded} events folded`,
      f.caught_up ? 'caught up' : `${f.lag_events} behind`,
    ];
    if (f.events_rejected) parts.push(`${f.events_rejected} refused`);
    if (!state.ready) parts.push('loading');
    $('fold').textContent = parts.join(' · ');
  }

  // Elapsed times and the reconnect countdown move every second without a push.
  setInterval(() => {
    for (const span of document.querySelectorAll('.elapsed[data-started]')) {
      span.textContent = duration(now() - Number(span.dataset.started));
    }
    if ($('conn').dataset.state === 'disconnected') showCountdown();
  }, 1000);

  connect();
})();
