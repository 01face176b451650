// loopgate enrolment login: POST /api/v1/login as JSON, then go to the app.
'use strict';
(() => {
  const form = document.getElementById('login-form');
  const errorEl = document.getElementById('login-error');
  const submit = document.getElementById('login-submit');

  // Only a local path is followed after login, never another site.
  function nextPath() {
    const next = new URLSearchParams(location.search).get('next') || '/';
    return next.startsWith('/') && !next.startsWith('//') && !next.startsWith('/\\') ? next : '/';
  }

  function showError(text) {
    errorEl.textContent = text;
    errorEl.hidden = false;
  }

  // Already logged in: straight to the app.
  fetch('/api/v1/session', { cache: 'no-store', credentials: 'same-origin' })
    .then((r) => { if (r.ok) location.replace(nextPath()); })
    .catch(() => {});

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    errorEl.hidden = true;
    const username = form.username.value.trim();
    const password = form.password.value;
    if (!username || !password) {
      showError('Enter your user name and password.');
      (username ? form.password : form.username).focus();
      return;
    }
    submit.disabled = true;
    try {
      const r = await fetch('/api/v1/login', {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
        body: JSON.stringify({ username, password }),
      });
      if (r.ok) {
        location.replace(nextPath());
        return;
      }
      let msg = '';
      try { msg = ((await r.json()).error || {}).message || ''; } catch (_) { /* not JSON */ }
      if (r.status === 401) msg = 'User name or password is not valid.';
      else if (r.status === 429) msg = msg || 'Too many attempts. Wait a minute and try again.';
      showError(msg || 'Log-in failed (HTTP ' + r.status + ').');
      form.password.value = '';
      form.password.focus();
    } catch (_) {
      showError('The server cannot be reached. Check the network and try again.');
    } finally {
      submit.disabled = false;
    }
  });
})();
