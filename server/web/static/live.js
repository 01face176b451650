// loopgate live page: camera tiles (polled JPEGs) and the decision stream
// (EventSource). All text goes in through textContent, never as HTML.
'use strict';
(() => {
  const FRAME_INTERVAL_MS = 150; // about 6 frames a second per camera at most
  const STALE_MS = 3000;
  const MAX_ROWS = 200;
  const REASONS = {
    matched: 'Matched',
    unknown_face: 'Unknown face',
    ambiguous: 'Ambiguous match',
    registration_revoked: 'Registration revoked',
    registration_expired: 'Registration expired',
    no_usable_capture: 'No usable capture',
    claim_mismatch: 'Claim mismatch',
    claim_expired: 'Claim expired',
    gallery_stale: 'Gallery out of date',
  };

  const replay = Number(document.body.dataset.replay) || 0;
  const camerasEl = document.getElementById('cameras');
  const list = document.getElementById('decision-list');
  const conn = document.getElementById('conn');
  const counts = { open: 0, deny: 0 };
  const seen = new Set();
  const tiles = new Map();
  let clockOffset = 0; // server time minus local time

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function toLogin() {
    window.location.assign('/login?next=' + encodeURIComponent('/live'));
  }

  function setConn(state, text) {
    conn.className = 'conn conn-' + state;
    conn.textContent = text;
  }

  function clock(iso) {
    const d = new Date(iso);
    if (isNaN(d)) return '';
    const p = (n, w) => String(n).padStart(w, '0');
    return p(d.getHours(), 2) + ':' + p(d.getMinutes(), 2) + ':' + p(d.getSeconds(), 2) + '.' + p(d.getMilliseconds(), 3);
  }

  const fixed = (v, n) => (typeof v === 'number' && isFinite(v) ? v.toFixed(n) : null);

  function addDecision(ev, fresh) {
    if (!ev || typeof ev.id !== 'string' || seen.has(ev.id)) return;
    seen.add(ev.id);
    const open = ev.decision === 'open';
    const li = el('li', 'decision ' + (open ? 'open' : 'deny') + (fresh ? ' fresh' : ''));
    li.dataset.id = ev.id;
    li.dataset.decision = ev.decision;

    const line = el('div', 'line');
    line.append(el('span', 'outcome', open ? 'OPEN' : 'DENY'));
    line.append(el('span', 'reason', REASONS[ev.reason] || String(ev.reason || '')));
    const t = el('time', '', clock(ev.decided_at));
    t.dateTime = ev.decided_at || '';
    line.append(t);
    li.append(line);

    const who = el('div', 'who');
    if (ev.person) {
      who.append(el('span', 'name', ev.person.name));
      who.append(el('span', 'ext', ev.person.external_id));
    } else {
      who.classList.add('unknown');
      who.textContent = ev.claim ? 'claimed ' + ev.claim + ' · not verified' : 'no registered match';
    }
    li.append(who);

    const facts = el('div', 'facts');
    const fact = (label, value) => { if (value !== null && value !== undefined && value !== '') facts.append(el('span', '', label + value)); };
    fact('', ev.camera);
    if (ev.lane) fact('lane ', ev.lane);
    fact('d ', fixed(ev.distance, 3));
    fact('margin ', fixed(ev.margin, 3));
    fact('frames ', (ev.frames_used ?? 0) + '/' + (ev.frames_seen ?? 0));
    const ms = ev.timings ? fixed(ev.timings.capture_to_decision_ms, 0) : null;
    if (ms !== null) fact('', ms + ' ms');
    li.append(facts);
    if (ev.detail) li.append(el('div', 'detail', ev.detail));

    list.prepend(li);
    counts[open ? 'open' : 'deny']++;
    document.getElementById('count-open').textContent = counts.open;
    document.getElementById('count-deny').textContent = counts.deny;
    document.getElementById('no-decisions').hidden = true;
    while (list.children.length > MAX_ROWS) {
      const last = list.lastElementChild;
      seen.delete(last.dataset.id);
      last.remove();
    }
  }

  function connectEvents() {
    const es = new EventSource('/events?recent=' + replay);
    es.addEventListener('open', () => setConn('live', 'live'));
    es.addEventListener('decision', (m) => {
      try {
        addDecision(JSON.parse(m.data), true);
      } catch (err) {
        console.error('bad decision event', err);
      }
    });
    es.addEventListener('error', async () => {
      if (es.readyState !== EventSource.CLOSED) {
        setConn('wait', 'reconnecting…'); // EventSource retries by itself
        return;
      }
      // Refused (e.g. the login expired): find out why, then retry.
      setConn('down', 'disconnected');
      es.close();
      try {
        const r = await fetch('/live/cameras', { cache: 'no-store' });
        if (r.status === 401) return toLogin();
      } catch (_) { /* server unreachable: keep trying */ }
      await sleep(3000);
      connectEvents();
    });
  }

  function addTile(name) {
    document.getElementById('no-cameras').hidden = true;
    const fig = el('figure', 'tile');
    fig.dataset.camera = name;
    const frame = el('div', 'frame');
    const img = el('img');
    img.alt = 'Camera ' + name + ', latest annotated frame';
    frame.append(img, el('div', 'nofeed', 'waiting for frames…'));
    const cap = el('figcaption');
    const age = el('span', 'age', '—');
    cap.append(el('span', 'cam-name', name), age);
    fig.append(frame, cap);
    camerasEl.append(fig);
    const t = { name, fig, img, age, seq: 0, captured: null, url: null };
    tiles.set(name, t);
    fitTiles();
    pollFrames(t);
  }

  function showImage(img, url) {
    return new Promise((resolve) => {
      img.onload = () => resolve(true);
      img.onerror = () => resolve(false);
      img.src = url;
    });
  }

  // One request at a time per camera: a slow link shows fewer frames
  // instead of piling up requests. ?after= makes an idle camera cost a 204.
  async function pollFrames(t) {
    for (;;) {
      try {
        const r = await fetch('/live/frame/' + encodeURIComponent(t.name) + '.jpg?after=' + t.seq, { cache: 'no-store' });
        if (r.status === 401) return toLogin();
        if (r.status === 200) {
          const blob = await r.blob();
          const url = URL.createObjectURL(blob);
          if (await showImage(t.img, url)) {
            if (t.url) URL.revokeObjectURL(t.url);
            t.url = url;
            t.fig.classList.add('has-frame');
          } else {
            URL.revokeObjectURL(url);
          }
          t.seq = Number(r.headers.get('X-Frame-Seq')) || t.seq;
          t.captured = Date.parse(r.headers.get('X-Frame-Captured')) || t.captured;
          updateAge(t, Date.now() + clockOffset);
        } else if (r.status === 404) {
          t.age.textContent = 'camera removed';
          await sleep(5000);
        }
      } catch (_) {
        await sleep(1000); // network blip
      }
      await sleep(FRAME_INTERVAL_MS);
    }
  }

  async function refreshCameras() {
    try {
      const r = await fetch('/live/cameras', { cache: 'no-store' });
      if (r.status === 401) return toLogin();
      if (!r.ok) return;
      const j = await r.json();
      const now = Date.parse(j.now);
      if (now) clockOffset = now - Date.now();
      for (const c of j.cameras) {
        if (!tiles.has(c.name)) addTile(c.name);
      }
    } catch (_) { /* retried on the next round */ }
  }

  function updateAge(t, now) {
    if (!t.captured) return;
    const ms = Math.max(0, now - t.captured);
    const stale = ms > STALE_MS;
    t.fig.classList.toggle('stale', stale);
    t.age.textContent = stale ? 'no new frame for ' + Math.round(ms / 1000) + ' s' : (ms / 1000).toFixed(1) + ' s ago';
  }

  function updateAges() {
    const now = Date.now() + clockOffset;
    for (const t of tiles.values()) updateAge(t, now);
  }

  // Size the tiles so every camera fits on screen as large as it can (4:3
  // frames plus a caption), whatever the number of cameras.
  function fitTiles() {
    const n = tiles.size;
    if (!n) return;
    const cs = getComputedStyle(camerasEl);
    const gap = parseFloat(cs.columnGap) || 0;
    const w = camerasEl.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight);
    const h = camerasEl.clientHeight - parseFloat(cs.paddingTop) - parseFloat(cs.paddingBottom);
    const caption = 32;
    let best = 0, bestCols = 1;
    for (let cols = 1; cols <= n; cols++) {
      const rows = Math.ceil(n / cols);
      const byWidth = (w - gap * (cols - 1)) / cols;
      const byHeight = ((h - gap * (rows - 1)) / rows - caption) * 4 / 3;
      const size = Math.min(byWidth, byHeight);
      if (size > best) { best = size; bestCols = cols; }
    }
    const px = Math.max(200, Math.floor(best));
    camerasEl.style.gridTemplateColumns = 'repeat(' + bestCols + ', ' + px + 'px)';
  }

  window.addEventListener('resize', fitTiles);
  refreshCameras();
  setInterval(refreshCameras, 5000);
  setInterval(updateAges, 500);
  connectEvents();
})();
