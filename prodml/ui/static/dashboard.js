/* prodml dashboard: draw the page's charts; sign in and out; the rollback button, the
   review forms and a pipeline step's Approve / Reject buttons.
   Signing in sends the token once; the server keeps the session in an HttpOnly cookie that
   scripts cannot read. Changes go to the server's own API with the page's CSRF token. */
(function () {
  'use strict';
  var base = document.body.getAttribute('data-base') || '';

  function drawCharts() {
    var holder = document.getElementById('chart-data');
    if (!holder || !window.Plotly) { document.body.setAttribute('data-charts', 'none'); return; }
    var figures = JSON.parse(holder.textContent), drawn = [];
    Object.keys(figures).forEach(function (id) {
      var el = document.getElementById(id);
      if (!el) return;
      drawn.push(Plotly.newPlot(el, figures[id].data, figures[id].layout,
        {displaylogo: false, responsive: true, modeBarButtonsToRemove: ['lasso2d', 'select2d']}));
    });
    Promise.all(drawn).then(function () { document.body.setAttribute('data-charts', 'drawn'); });
  }

  function headers() {
    var out = {'Content-Type': 'application/json'};
    var csrf = document.querySelector('meta[name="prodml-csrf"]');
    if (csrf) out['X-CSRF-Token'] = csrf.getAttribute('content');
    return out;
  }

  function refusal(response) {
    if (response.status === 401) return 'Sign in first (top right): ';
    if (response.status === 403) return 'Your token may not do this: ';
    return 'Refused: ';
  }

  function signIn(form) {
    var message = document.getElementById('sign-in-message');
    var token = document.getElementById('sign-in-token').value.trim();
    if (!token) return;
    fetch(base + '/ui/session', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                 body: JSON.stringify({token: token})})
      .then(function (response) {
        if (response.ok) { window.location.reload(); return; }
        return failure(response).then(function (text) { say(message, text, false); });
      }, function (error) { say(message, 'Network error: ' + error, false); });
  }

  function signOut() {
    fetch(base + '/ui/session', {method: 'DELETE', headers: headers()})
      .then(function () { window.location.reload(); });
  }

  function say(el, text, ok) {
    if (!el) return;
    el.textContent = text;
    el.className = 'message ' + (ok ? 'ok' : 'error');
  }

  function failure(response) {
    return response.json().then(function (body) {
      return (body && body.message) || response.statusText;
    }, function () { return response.status + ' ' + response.statusText; });
  }

  function rollback(button) {
    var name = button.getAttribute('data-endpoint');
    var target = button.getAttribute('data-target');
    var message = document.getElementById('rollback-message');
    if (!window.confirm('Roll back endpoint "' + name + '"?' + (target ? '\nIt returns to: ' + target : ''))) return;
    var reason = document.getElementById('rollback-reason').value || 'rolled back from the dashboard';
    button.disabled = true;
    fetch(base + '/endpoints/' + encodeURIComponent(name) + '/rollback',
          {method: 'POST', headers: headers(), body: JSON.stringify({reason: reason})})
      .then(function (response) {
        if (response.ok) { say(message, 'Rolled back.', true); window.location.reload(); return; }
        return failure(response).then(function (text) {
          say(message, refusal(response) + text, false);
          button.disabled = false;
        });
      }, function (error) { say(message, 'Network error: ' + error, false); button.disabled = false; });
  }

  function parseLabel(text) {
    try { return JSON.parse(text); } catch (e) { return text; }
  }

  function resolve(form) {
    var id = form.getAttribute('data-review');
    var message = form.querySelector('.message');
    var label = form.elements['label'].value.trim();
    if (!label) return;
    var button = form.querySelector('button');
    button.disabled = true;
    fetch(base + '/reviews/' + encodeURIComponent(id) + '/resolve',
          {method: 'POST', headers: headers(),
           body: JSON.stringify({label: parseLabel(label)})})
      .then(function (response) {
        if (response.ok) {
          say(message, 'Resolved.', true);
          form.closest('tr').setAttribute('data-resolved', 'true');
          form.elements['label'].disabled = true;
          return;
        }
        return failure(response).then(function (text) { say(message, refusal(response) + text, false); button.disabled = false; });
      }, function (error) { say(message, 'Network error: ' + error, false); button.disabled = false; });
  }

  function post(path, body) {
    return fetch(base + path, {method: 'POST', headers: headers(), body: JSON.stringify(body || {})});
  }

  function pipelineAction(button) {
    var run = button.getAttribute('data-run'), step = button.getAttribute('data-step');
    var action = button.getAttribute('data-action');
    var message = document.getElementById('approval-message');
    var reason = (document.getElementById('approval-reason') || {}).value || null;
    if (action === 'reject' && !window.confirm('Reject step "' + step + '"? The run fails when it resumes.')) return;
    var buttons = document.querySelectorAll('button.pipeline-action');
    function enable(on) { Array.prototype.forEach.call(buttons, function (b) { b.disabled = !on; }); }
    function refused(response) {
      return failure(response).then(function (text) {
        say(message, refusal(response) + text, false);
        enable(true);
      });
    }
    function resume() {
      return post('/admin/pipelines/' + encodeURIComponent(run) + '/resume').then(function (response) {
        if (!response.ok) return refused(response);
        say(message, 'The run goes on in the background; this page reloads.', true);
        document.body.setAttribute('data-resumed', run);
        window.setTimeout(function () { window.location.reload(); }, 800);
      });
    }
    enable(false);
    var done = action === 'resume' ? resume() :
      post('/admin/pipelines/' + encodeURIComponent(run) + '/steps/' + encodeURIComponent(step) + '/' + action,
           {reason: reason}).then(function (response) {
        if (!response.ok) return refused(response);
        return response.json().then(function (body) {
          if (body.undecided && body.undecided.length) {
            say(message, (action === 'approve' ? 'Approved' : 'Rejected') + ' ' + step + '; still waiting: ' + body.undecided.join(', '), true);
            window.setTimeout(function () { window.location.reload(); }, 800);
            return;
          }
          return resume();
        });
      });
    done.catch(function (error) { say(message, 'Network error: ' + error, false); enable(true); });
  }

  drawCharts();
  var signInForm = document.getElementById('sign-in');
  if (signInForm) signInForm.addEventListener('submit', function (event) {
    event.preventDefault();
    signIn(signInForm);
  });
  var signOutButton = document.getElementById('sign-out');
  if (signOutButton) signOutButton.addEventListener('click', signOut);
  var form = document.getElementById('rollback-form');
  if (form) form.addEventListener('submit', function (event) {
    event.preventDefault();
    rollback(document.getElementById('rollback'));
  });
  Array.prototype.forEach.call(document.querySelectorAll('button.pipeline-action'), function (button) {
    button.addEventListener('click', function () { pipelineAction(button); });
  });
  var approvalForm = document.getElementById('approval-form');
  if (approvalForm) approvalForm.addEventListener('submit', function (event) { event.preventDefault(); });
  Array.prototype.forEach.call(document.querySelectorAll('form.resolve'), function (form) {
    form.addEventListener('submit', function (event) { event.preventDefault(); resolve(form); });
  });
}());
