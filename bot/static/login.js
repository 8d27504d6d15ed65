// Sign-in: POST /api/auth/login, then go where the user was heading (same-site paths only).
(function () {
  'use strict';
  const form = document.getElementById('login');
  const error = document.getElementById('error');
  function target() {
    // Same-origin paths only: resolve against our origin and compare (catches "/\\evil.com",
    // "//evil.com", "/%09/evil.com" and the like, which browsers may treat as other hosts).
    const next = new URLSearchParams(location.search).get('next') || '/console';
    try {
      const u = new URL(next, location.origin);
      if (u.origin === location.origin) return u.pathname + u.search + u.hash;
    } catch (e) { /* not a URL: fall through */ }
    return '/console';
  }
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.hidden = true;
    const button = form.querySelector('button');
    button.disabled = true;
    try {
      const resp = await fetch('/api/auth/login', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        credentials: 'same-origin',
        body: JSON.stringify({ username: form.username.value, password: form.password.value }),
      });
      if (resp.ok) { location.assign(target()); return; }
      const body = await resp.json().catch(() => ({}));
      error.textContent = (body.error && body.error.message) || 'Sign-in failed (' + resp.status + ')';
      error.hidden = false;
    } catch (err) {
      error.textContent = 'Cannot reach the server; check your connection.';
      error.hidden = false;
    } finally {
      button.disabled = false;
    }
  });
})();
