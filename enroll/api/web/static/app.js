// loopgate enrolment page: a person's details, photos from the webcam or
// files checked one by one against the enrolment quality profile
// (POST /api/v1/quality stores nothing), then one atomic POST /api/v1/people.
// The people list can be searched, revoked, reinstated and (admins) deleted.
// Every piece of data goes into the page through textContent, never as HTML.
'use strict';
(() => {
  const API = '/api/v1';
  const MAX_KEPT = 3;
  const PAGE_SIZE = 50;
  const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

  // Plain-language titles for the reason codes; the server's message says
  // what to do about it.
  const REASON_TITLES = {
    no_face: 'No face found',
    multiple_faces: 'More than one face',
    face_too_small: 'Face too small',
    not_embedded: 'The recogniser could not use this face',
    decode_failed: 'Not a readable image',
    unsupported_format: 'Unsupported file type',
    too_large: 'File too large',
    duplicate_identity: 'Face already enrolled under another ID',
    not_same_person: "Does not match this person's other photos",
    already_enrolled: 'Photo already enrolled',
    'quality:blurry': 'Blurred',
    'quality:too_dark': 'Too dark',
    'quality:too_bright': 'Too bright',
    'quality:low_contrast': 'Low contrast',
    'quality:yaw': 'Head turned',
    'quality:roll': 'Head tilted',
  };
  const UNITS = { face_too_small: ' px', 'quality:yaw': '°', 'quality:roll': '°' };
  // Measures shown for every check, with the quality check that judges each.
  const MEASURES = [
    ['faces', 'Faces', '', 'face_count'],
    ['inter_eye_px', 'Eye distance', ' px', 'face_too_small'],
    ['sharpness_var', 'Sharpness', '', 'blurry'],
    ['brightness', 'Brightness', '', 'too_dark too_bright'],
    ['contrast', 'Contrast', '', 'low_contrast'],
    ['yaw_deg', 'Head turn', '°', 'yaw'],
    ['roll_deg', 'Head tilt', '°', 'roll'],
  ];
  const PARKS = { hk: 'HK', sz: 'SZ' };

  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  };

  let session = null; // {username, role, csrf_token}
  let stream = null;
  let busy = false; // one photo check at a time, in the order taken
  let captures = 0;
  const kept = []; // {blob, name, report, url}
  let lastEnrolled = ''; // highlighted in the list

  // ---------- API ----------

  class APIError extends Error {
    constructor(status, body) {
      const e = (body && body.error) || {};
      super(e.message || 'The server answered HTTP ' + status + '.');
      this.status = status;
      this.code = e.code || '';
      this.field = e.field || '';
      this.photos = (body && body.photos) || e.photos || [];
    }
  }

  function toLogin() {
    location.replace('/login');
  }

  async function api(method, path, { json, form } = {}) {
    const headers = { Accept: 'application/json' };
    if (method !== 'GET') headers['X-CSRF-Token'] = session ? session.csrf_token : '';
    let body;
    if (json !== undefined) {
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify(json);
    } else if (form) {
      body = form; // the browser sets the multipart boundary
    }
    let r;
    try {
      r = await fetch(API + path, { method, headers, body, credentials: 'same-origin', cache: 'no-store' });
    } catch (_) {
      throw new APIError(0, { error: { code: 'network', message: 'The server cannot be reached. Check the network and try again.' } });
    }
    let data = null;
    if ((r.headers.get('Content-Type') || '').includes('json')) {
      try { data = await r.json(); } catch (_) { /* empty or broken body */ }
    }
    if (r.status === 401) {
      toLogin();
      throw new APIError(401, { error: { code: 'unauthenticated', message: 'Your session has ended: log in again.' } });
    }
    if (!r.ok) throw new APIError(r.status, data);
    return data;
  }

  // ---------- formatting ----------

  // num formats a measure: whole numbers as they are, others with one
  // decimal (distances between faces, which are below 1, with three).
  function num(v, unit, digits) {
    if (typeof v !== 'number' || !isFinite(v)) return '—';
    const s = Number.isInteger(v) ? String(v) : v.toFixed(digits ?? 1);
    return s + (unit || '');
  }

  function day(iso) {
    if (!iso) return '';
    const d = new Date(iso);
    if (isNaN(d)) return '';
    const p = (n) => String(n).padStart(2, '0');
    return d.getFullYear() + '-' + p(d.getMonth() + 1) + '-' + p(d.getDate());
  }

  function reasonTitle(code) {
    if (REASON_TITLES[code]) return REASON_TITLES[code];
    return String(code || 'problem').replace(/^quality:/, '').replace(/_/g, ' ');
  }

  // reasonText is one reason on one line, for the list of refused photos.
  function reasonText(r) {
    const title = reasonTitle(r.code);
    const message = String(r.message || '');
    return message.toLowerCase().startsWith(title.toLowerCase()) ? message : title + (message ? ' — ' + message : '');
  }

  // One reason as a list item: title, the server's advice, and the figure
  // against its limit when the check has one.
  function reasonItem(r) {
    const li = el('li');
    li.dataset.code = r.code || '';
    const title = reasonTitle(r.code);
    const message = String(r.message || '');
    // The server's message often starts with the same words: say them once.
    if (!message.toLowerCase().startsWith(title.toLowerCase())) li.append(el('span', 'title', title + '.'), ' ');
    if (message) li.append(el('span', 'message', message));
    if (typeof r.limit === 'number' && r.limit !== 0 && r.code !== 'no_face') {
      const unit = UNITS[r.code] || '';
      const distance = r.code === 'duplicate_identity' || r.code === 'not_same_person';
      const digits = distance ? 3 : 1;
      li.append(' ', el('span', 'figures', '(' + (distance ? 'distance ' : 'measured ') + num(r.value, unit, digits) + ', limit ' + num(r.limit, unit, digits) + ')'));
    }
    return li;
  }

  // ---------- tabs ----------

  const tabs = [...document.querySelectorAll('[role=tab]')];
  function selectTab(tab, focus) {
    for (const t of tabs) {
      const on = t === tab;
      t.setAttribute('aria-selected', String(on));
      t.tabIndex = on ? 0 : -1;
      $(t.getAttribute('aria-controls')).hidden = !on;
    }
    if (focus) tab.focus();
    if (tab.id === 'tab-people') loadPeople(false);
  }
  for (const t of tabs) {
    t.addEventListener('click', () => selectTab(t, false));
    t.addEventListener('keydown', (e) => {
      const i = tabs.indexOf(t);
      const to = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 }[e.key];
      if (to === undefined) return;
      e.preventDefault();
      selectTab(tabs[(to + tabs.length) % tabs.length], true);
    });
  }

  // ---------- camera ----------

  const video = $('video');
  const startBtn = $('camera-start');
  const captureBtn = $('capture');
  const uploadInput = $('upload');
  const cameraStatus = $('camera-status');

  function say(text, isError) {
    cameraStatus.textContent = text;
    cameraStatus.classList.toggle('error', !!isError);
  }

  function stopCamera() {
    if (stream) for (const track of stream.getTracks()) track.stop();
    stream = null;
    video.srcObject = null;
    video.parentElement.classList.remove('live');
    startBtn.textContent = 'Start camera';
    captureBtn.disabled = true;
  }

  async function startCamera() {
    if (stream) {
      stopCamera();
      say('Camera off.');
      return;
    }
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      say('This browser cannot use a camera on this page (it needs HTTPS). Upload photos instead.', true);
      return;
    }
    startBtn.disabled = true;
    say('Starting the camera…');
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: false, video: { width: { ideal: 1280 }, height: { ideal: 720 } } });
      video.srcObject = stream;
      if (!video.videoWidth) await new Promise((res) => video.addEventListener('loadedmetadata', res, { once: true }));
      await video.play();
      video.parentElement.classList.add('live');
      startBtn.textContent = 'Stop camera';
      captureBtn.disabled = busy;
      say('Camera on (' + video.videoWidth + '×' + video.videoHeight + '). Face the camera, then press Capture.');
      captureBtn.focus();
    } catch (e) {
      stopCamera();
      const why = {
        NotAllowedError: 'Camera permission was refused: allow the camera for this page, or upload photos.',
        NotFoundError: 'No camera found: connect one, or upload photos.',
        NotReadableError: 'The camera is in use by another program.',
      }[e && e.name];
      say(why || 'The camera could not start (' + ((e && e.message) || e) + ').', true);
    } finally {
      startBtn.disabled = false;
    }
  }

  async function capture() {
    if (!stream || !video.videoWidth || busy) return;
    const c = document.createElement('canvas');
    c.width = video.videoWidth;
    c.height = video.videoHeight;
    c.getContext('2d').drawImage(video, 0, 0, c.width, c.height);
    const blob = await new Promise((res) => c.toBlob(res, 'image/jpeg', 0.92));
    if (!blob) {
      say('The frame could not be captured: try again.', true);
      return;
    }
    captures++;
    await checkPhoto(blob, 'capture-' + captures + '.jpg');
  }

  async function upload() {
    const files = [...uploadInput.files];
    uploadInput.value = ''; // the same file may be chosen again after a fix
    for (const f of files) {
      if (busy) break;
      await checkPhoto(f, f.name);
    }
  }

  // ---------- quality check ----------

  const reportStage = $('report-stage');
  const photoCanvas = $('report-photo');
  const overlay = $('report-overlay');
  const verdict = $('verdict');
  const reasonsEl = $('reasons');
  const measuresEl = $('measures');

  function setBusy(b) {
    busy = b;
    captureBtn.disabled = b || !stream;
    uploadInput.disabled = b;
  }

  function clearReport() {
    reportStage.classList.remove('has-photo');
    photoCanvas.width = overlay.width = 4;
    photoCanvas.height = overlay.height = 3;
    verdict.hidden = true;
    verdict.textContent = '';
    reasonsEl.replaceChildren();
    measuresEl.replaceChildren();
    delete document.body.dataset.lastCheck;
  }

  async function checkPhoto(blob, name) {
    setBusy(true);
    delete document.body.dataset.lastCheck;
    verdict.hidden = false;
    verdict.className = 'verdict checking';
    verdict.textContent = 'Checking ' + name + '…';
    reasonsEl.replaceChildren();
    measuresEl.replaceChildren();
    try {
      const form = new FormData();
      form.append('photo', blob, name);
      let report;
      try {
        report = await api('POST', '/quality', { form });
      } catch (e) {
        verdict.className = 'verdict rejected';
        verdict.textContent = 'Could not check ' + name + ': ' + e.message;
        document.body.dataset.lastCheck = 'error';
        return;
      }
      await drawPhoto(blob, report);
      showReport(report, name);
      if (report.accepted) {
        say(name + ' accepted. ' + keep(blob, name, report));
      } else {
        say(name + ' rejected: ' + (report.reasons || []).map((r) => reasonTitle(r.code)).join(', ') + '. Retake the photo.', true);
      }
    } finally {
      setBusy(false);
    }
  }

  // The photo on one canvas, the face box on a transparent one above it,
  // both at the photo's own size so the box needs no rescaling by CSS.
  async function drawPhoto(blob, report) {
    let bmp;
    try {
      bmp = await createImageBitmap(blob);
    } catch (_) {
      clearReport();
      return; // not an image the browser can show; the reasons say why
    }
    photoCanvas.width = overlay.width = bmp.width;
    photoCanvas.height = overlay.height = bmp.height;
    photoCanvas.getContext('2d').drawImage(bmp, 0, 0);
    bmp.close();
    reportStage.classList.add('has-photo');
    const ctx = overlay.getContext('2d');
    ctx.clearRect(0, 0, overlay.width, overlay.height);
    const b = report.face_box;
    if (!b) return;
    const sx = report.width ? overlay.width / report.width : 1;
    const sy = report.height ? overlay.height / report.height : 1;
    ctx.lineWidth = Math.max(3, Math.round(overlay.width / 160));
    ctx.strokeStyle = report.accepted ? '#1f9d55' : '#d64545';
    ctx.strokeRect(b.x * sx, b.y * sy, b.w * sx, b.h * sy);
  }

  function showReport(report, name) {
    const ok = !!report.accepted;
    document.body.dataset.lastCheck = ok ? 'accepted' : 'rejected';
    verdict.className = 'verdict ' + (ok ? 'accepted' : 'rejected');
    verdict.textContent = (ok ? '✓ Accepted: ' : '✗ Rejected: ') + name + (ok ? '' : ' — retake the photo');
    const reasons = (report.reasons || []).slice();
    // Any quality failure the reasons do not already cover is shown too.
    const codes = new Set(reasons.map((r) => r.code));
    const q = report.quality || {};
    for (const f of q.failures || []) {
      const code = 'quality:' + f.check;
      if (!codes.has(code) && !(f.check === 'face_count' && (codes.has('no_face') || codes.has('multiple_faces'))) &&
          !(f.check === 'face_too_small' && codes.has('face_too_small'))) {
        reasons.push({ code, message: f.message, value: f.value, limit: f.limit });
      }
    }
    reasonsEl.replaceChildren(...reasons.map(reasonItem));
    if (report.duplicate) {
      const d = report.duplicate;
      reasonsEl.append(el('li', '', 'Looks like ' + d.name + ' (' + d.external_id + '), distance ' + num(d.distance, '', 3) + '.'));
    }

    const failed = new Set((q.failures || []).map((f) => f.check));
    const m = q.measures || {};
    const rows = [];
    const add = (label, value, fail) => {
      const dd = el('dd', fail ? 'fail' : '', value);
      if (fail) dd.append(el('span', 'visually-hidden', ' (fails)'));
      rows.push(el('dt', '', label), dd);
    };
    add('Image', (report.width || 0) + '×' + (report.height || 0));
    const faces = typeof report.faces === 'number' ? report.faces : m.faces;
    for (const [key, label, unit, checks] of MEASURES) {
      if (key === 'faces') {
        add(label, num(faces), failed.has('face_count'));
        continue;
      }
      if (!faces) continue; // with no face the measures describe nothing
      add(label, num(m[key], unit), checks.split(' ').some((c) => failed.has(c)));
    }
    if (q.profile) add('Profile', q.profile, false);
    measuresEl.replaceChildren(...rows);
  }

  // ---------- kept photos ----------

  const keptList = $('kept');

  // keep adds an accepted photo to the ones to enrol and says what it did.
  function keep(blob, name, report) {
    if (report.sha256 && kept.some((k) => k.report.sha256 === report.sha256)) return 'This photo is already kept.';
    if (kept.length >= MAX_KEPT) return MAX_KEPT + ' photos are already kept: remove one to keep this one.';
    kept.push({ blob, name, report, url: URL.createObjectURL(blob) });
    renderKept();
    return 'Kept (' + kept.length + ' of ' + MAX_KEPT + ').';
  }

  function removeKept(i) {
    const [k] = kept.splice(i, 1);
    if (k) URL.revokeObjectURL(k.url);
    renderKept();
    say(k ? k.name + ' removed.' : '');
    (keptList.querySelector('button') || captureBtn).focus();
  }

  function renderKept() {
    keptList.replaceChildren(...kept.map((k, i) => {
      const li = el('li');
      li.dataset.sha256 = k.report.sha256 || '';
      const img = el('img');
      img.src = k.url;
      img.alt = 'Kept photo ' + (i + 1) + ', ' + k.name;
      const remove = el('button', '', 'Remove');
      remove.type = 'button';
      remove.setAttribute('aria-label', 'Remove ' + k.name);
      remove.addEventListener('click', () => removeKept(i));
      li.append(img, el('span', 'kept-name', k.name), remove);
      return li;
    }));
    $('kept-count').textContent = String(kept.length);
    $('no-kept').hidden = kept.length > 0;
  }

  // ---------- person form and confirm ----------

  const form = $('person-form');
  const result = $('result');
  const confirmBtn = $('confirm');
  const FIELDS = ['external_id', 'name', 'organisation', 'home_park', 'gates', 'valid_from', 'valid_until'];

  function fieldError(field, message) {
    const input = $(field);
    const msg = $(field + '-error');
    if (!input || !msg) return null;
    input.setAttribute('aria-invalid', 'true');
    msg.textContent = message;
    msg.hidden = false;
    return input.tagName === 'FIELDSET' ? input.querySelector('input') : input;
  }

  function clearFieldErrors() {
    for (const f of FIELDS) {
      $(f).removeAttribute('aria-invalid');
      const msg = $(f + '-error');
      msg.hidden = true;
      msg.textContent = '';
    }
  }

  // A date field as an instant: the start of the first day, the end of the
  // last, in the desk's time zone.
  function dateBound(value, endOfDay) {
    if (!value) return null;
    const [y, m, d] = value.split('-').map(Number);
    const t = endOfDay ? new Date(y, m - 1, d, 23, 59, 59) : new Date(y, m - 1, d, 0, 0, 0);
    return isNaN(t) ? undefined : t.toISOString();
  }

  // readPerson returns the person, or null after marking the wrong fields.
  function readPerson() {
    clearFieldErrors();
    const bad = [];
    const check = (ok, field, message) => { if (!ok) bad.push(fieldError(field, message)); };
    const externalID = $('external_id').value.trim();
    const name = $('name').value.trim();
    const park = form.querySelector('input[name=home_park]:checked');
    check(externalID !== '', 'external_id', 'Enter the ID.');
    check(externalID === '' || ID_PATTERN.test(externalID), 'external_id', "Use 1–64 letters, digits, '.', '_' or '-', starting with a letter or digit.");
    check(name !== '', 'name', "Enter the person's full name.");
    check(!!park, 'home_park', 'Choose the home park.');
    const from = dateBound($('valid_from').value, false);
    const until = dateBound($('valid_until').value, true);
    check(from !== undefined, 'valid_from', 'Not a valid date.');
    check(until !== undefined, 'valid_until', 'Not a valid date.');
    check(!(from && until) || from <= until, 'valid_until', 'Must not be before "Valid from".');
    if (bad.length) {
      if (bad[0]) bad[0].focus();
      return null;
    }
    const gates = [...new Set($('gates').value.split(/[\s,;]+/).filter(Boolean))];
    return {
      external_id: externalID,
      name,
      organisation: $('organisation').value.trim(),
      home_park: park.value,
      gates,
      valid_from: from,
      valid_until: until,
    };
  }

  function showResult(ok, text, items) {
    const p = el('p', ok ? 'ok' : 'bad', text);
    result.dataset.outcome = ok ? 'ok' : 'error';
    if (items && items.length) {
      const ul = el('ul');
      ul.append(...items);
      p.append(ul);
    }
    result.replaceChildren(p);
  }

  async function confirm() {
    const person = readPerson();
    if (!person) {
      showResult(false, 'Some details are missing or wrong: see the marked fields.');
      return;
    }
    if (!kept.length) {
      showResult(false, 'No accepted photo yet: capture or upload at least one photo that passes the check.');
      (stream ? captureBtn : startBtn).focus();
      return;
    }
    const body = new FormData();
    body.append('person', JSON.stringify(person));
    for (const k of kept) body.append('photo', k.blob, k.name);
    confirmBtn.disabled = true;
    result.dataset.outcome = 'pending';
    result.replaceChildren(el('p', '', 'Enrolling ' + person.name + '…'));
    try {
      const res = await api('POST', '/people', { form: body });
      const p = (res && res.person) || person;
      const added = res && typeof res.added === 'number' ? res.added : kept.length;
      showResult(true, 'Enrolled ' + p.name + ' (' + p.external_id + ') with ' + added + (added === 1 ? ' photo.' : ' photos.'));
      resetEnrolment(false);
      lastEnrolled = p.external_id;
    } catch (e) {
      showError(e);
    } finally {
      confirmBtn.disabled = false;
    }
  }

  function showError(e) {
    const items = [];
    for (const ph of e.photos || []) {
      if (ph.accepted) continue;
      const li = el('li', '', (ph.name || 'photo') + ': ');
      const rs = (ph.reasons || []).map(reasonText);
      if (ph.duplicate) rs.push('looks like ' + ph.duplicate.name + ' (' + ph.duplicate.external_id + '), distance ' + num(ph.duplicate.distance, '', 3));
      li.append(rs.join('; ') || 'refused');
      items.push(li);
    }
    let text = e.message;
    // For refused photos the list below says what is wrong with each.
    if (e.code === 'id_conflict') text = 'Someone is already enrolled with this ID. ' + e.message;
    else if (e.code === 'photo_rejected') text = 'Not enrolled, nothing was stored: ' + (items.length === 1 ? 'a photo was' : 'photos were') + ' refused.';
    else if (e.code === 'duplicate_identity') text = 'Not enrolled, nothing was stored: this face is already enrolled under another ID.';
    else if (e.status === 403) text = 'Your account may not do this. ' + e.message;
    const field = (e.field || '').replace(/^person\./, '');
    const input = FIELDS.includes(field) ? fieldError(field, e.message) : e.code === 'id_conflict' ? fieldError('external_id', 'This ID is taken.') : null;
    showResult(false, text, items);
    if (input) input.focus();
  }

  function resetEnrolment(clearResult) {
    form.reset();
    clearFieldErrors();
    for (const k of kept) URL.revokeObjectURL(k.url);
    kept.length = 0;
    renderKept();
    clearReport();
    if (clearResult) {
      result.replaceChildren();
      delete result.dataset.outcome;
    }
  }

  // ---------- people ----------

  const peopleBody = $('people-list');
  const peopleStatus = $('people-status');
  const moreBtn = $('more');
  let nextCursor = '';
  let listSeq = 0;

  async function loadPeople(append) {
    const seq = ++listSeq;
    const params = new URLSearchParams();
    const q = $('q').value.trim();
    const status = $('status-filter').value;
    if (q) params.set('q', q);
    if (status) params.set('status', status);
    params.set('limit', String(PAGE_SIZE));
    if (append && nextCursor) params.set('after', nextCursor);
    peopleStatus.textContent = 'Loading…';
    peopleStatus.classList.remove('error');
    let page;
    try {
      page = await api('GET', '/people?' + params.toString());
    } catch (e) {
      if (seq !== listSeq) return;
      peopleStatus.textContent = 'The list could not be loaded: ' + e.message;
      peopleStatus.classList.add('error');
      return;
    }
    if (seq !== listSeq) return; // a newer search is on its way
    if (!append) peopleBody.replaceChildren();
    for (const p of page.people || []) peopleBody.append(personRow(p));
    nextCursor = page.next || '';
    moreBtn.hidden = !nextCursor;
    const n = peopleBody.rows.length;
    peopleStatus.textContent = n === 0 ? (q || status ? 'No one matches.' : 'No one is enrolled yet.') :
      n + (n === 1 ? ' person' : ' people') + (nextCursor ? ' shown, more below.' : '.');
  }

  function personRow(p) {
    const tr = el('tr');
    tr.dataset.id = p.external_id;
    tr.dataset.status = p.status;
    if (p.external_id === lastEnrolled) tr.classList.add('highlight');
    const td = (cls, text) => { const c = el('td', cls, text); tr.append(c); return c; };
    td('c-id', p.external_id);
    td('c-name', p.name);
    td('c-org', p.organisation || '—');
    td('c-park', PARKS[p.home_park] || p.home_park || '—');
    td('c-gates', (p.gates || []).join(', ') || '—');
    const from = day(p.valid_from), until = day(p.valid_until);
    td('c-valid', from && until ? from + ' – ' + until : until ? 'until ' + until : from ? 'from ' + from : 'open-ended');
    const st = td('c-status');
    st.append(el('span', 'badge ' + (p.status === 'revoked' ? 'revoked' : 'active'), p.status || 'active'));
    if (p.status === 'revoked' && p.revoked_reason) st.append(el('span', 'revoked-why', p.revoked_reason));
    td('c-tpl', String(p.templates ?? 0));
    const act = td('c-act');
    const who = p.name + ' (' + p.external_id + ')';
    const button = (text, cls, label, fn) => {
      const b = el('button', cls, text);
      b.type = 'button';
      b.setAttribute('aria-label', label);
      b.addEventListener('click', () => fn(p, tr, b));
      act.append(b);
    };
    if (p.status === 'revoked') button('Reinstate', '', 'Reinstate ' + who, reinstate);
    else button('Revoke', '', 'Revoke ' + who, revoke);
    if (session && session.role === 'admin') button('Delete', 'danger', 'Delete ' + who, remove);
    return tr;
  }

  function replaceRow(tr, res) {
    const p = res && (res.person || res);
    if (p && p.external_id) {
      const row = personRow(p);
      tr.replaceWith(row);
      row.querySelector('button').focus();
    } else {
      loadPeople(false);
    }
  }

  async function revoke(p, tr) {
    const reason = await askReason('Revoke ' + p.name, 'They will be refused at every gate until reinstated. Their photos are kept.', 'Revoke');
    if (reason === null) return;
    try {
      replaceRow(tr, await api('POST', '/people/' + encodeURIComponent(p.external_id) + '/revoke', { json: { reason } }));
      peopleStatus.textContent = p.name + ' revoked.';
    } catch (e) {
      peopleStatus.textContent = 'Could not revoke ' + p.name + ': ' + e.message;
      peopleStatus.classList.add('error');
    }
  }

  async function reinstate(p, tr) {
    try {
      replaceRow(tr, await api('POST', '/people/' + encodeURIComponent(p.external_id) + '/reinstate', { json: {} }));
      peopleStatus.textContent = p.name + ' reinstated.';
    } catch (e) {
      peopleStatus.textContent = 'Could not reinstate ' + p.name + ': ' + e.message;
      peopleStatus.classList.add('error');
    }
  }

  async function remove(p, tr) {
    const reason = await askReason('Delete ' + p.name + ' (' + p.external_id + ')',
      'This deletes the registration and its face templates for good. It cannot be undone.', 'Delete');
    if (reason === null) return;
    try {
      await api('DELETE', '/people/' + encodeURIComponent(p.external_id) + '?reason=' + encodeURIComponent(reason));
      const next = tr.nextElementSibling || tr.previousElementSibling;
      tr.remove();
      peopleStatus.textContent = p.name + ' deleted.';
      ((next && next.querySelector('button')) || $('q')).focus();
    } catch (e) {
      peopleStatus.textContent = 'Could not delete ' + p.name + ': ' + e.message;
      peopleStatus.classList.add('error');
    }
  }

  // askReason opens the reason dialog and resolves to the reason, or null
  // if cancelled. The modal dialog keeps the keyboard inside; Esc cancels.
  const dialog = $('reason-dialog');
  const reasonInput = $('reason-input');
  const reasonError = $('reason-error');
  function askReason(title, text, ok) {
    $('reason-title').textContent = title;
    $('reason-text').textContent = text;
    $('reason-ok').textContent = ok;
    reasonInput.value = '';
    reasonError.hidden = true;
    dialog.returnValue = '';
    return new Promise((resolve) => {
      dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok' ? reasonInput.value.trim() : null), { once: true });
      dialog.showModal();
      reasonInput.focus();
    });
  }
  $('reason-form').addEventListener('submit', (e) => {
    e.preventDefault();
    if (!reasonInput.value.trim()) {
      reasonError.textContent = 'Give a reason: it goes into the audit log.';
      reasonError.hidden = false;
      reasonInput.focus();
      return;
    }
    dialog.close('ok');
  });
  $('reason-cancel').addEventListener('click', () => dialog.close(''));

  // ---------- start ----------

  startBtn.addEventListener('click', startCamera);
  captureBtn.addEventListener('click', capture);
  uploadInput.addEventListener('change', upload);
  confirmBtn.addEventListener('click', confirm);
  $('reset').addEventListener('click', () => resetEnrolment(true));
  $('search-form').addEventListener('submit', (e) => { e.preventDefault(); loadPeople(false); });
  $('status-filter').addEventListener('change', () => loadPeople(false));
  moreBtn.addEventListener('click', () => loadPeople(true));
  $('logout').addEventListener('click', async () => {
    try { await api('POST', '/logout', { json: {} }); } catch (_) { /* leave anyway */ }
    stopCamera();
    toLogin();
  });
  window.addEventListener('pagehide', stopCamera);

  (async () => {
    try {
      session = await api('GET', '/session');
    } catch (e) {
      if (e.status !== 401) say('The server cannot be reached: ' + e.message, true);
      return;
    }
    $('user-name').textContent = session.username;
    $('user-role').textContent = session.role;
    document.body.dataset.role = session.role;
    document.body.dataset.ready = 'true';
  })();
})();
