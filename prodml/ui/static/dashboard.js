/* prodml dashboard: draw the page's charts; the rollback button, the review forms and a
   pipeline step's Approve / Reject buttons.
   Changes go to the server's own API; the admin token lives in this tab's sessionStorage
   and travels only in the Authorization header. */
(function () {
  'use strict';
  var base = document.body.getAttribute('data-base') || '';
  var TOKEN = 'prodml-admin-token', ACTOR = 'prodml-actor';

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

  function remember(id, key) {
    var input = document.getElementById(id);
    if (!input) return;
    input.value = sessionStorage.getItem(key) || '';
    input.addEventListener('input', function () { sessionStorage.setItem(key, input.value); });
  }

  function headers() {
    var out = {'Content-Type': 'application/json'};
    var token = sessionStorage.getItem(TOKEN);
    if (token) out['Authorization'] = 'Bearer ' + token;
    out['X-Prodml-Actor'] = sessionStorage.getItem(ACTOR) || 'ui';
    return out;
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
          say(message, (response.status === 401 ? 'The admin token is missing or wrong: ' : 'Refused: ') + text, false);
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
           body: JSON.stringify({label: parseLabel(label), resolver: sessionStorage.getItem(ACTOR) || 'ui'})})
      .then(function (response) {
        if (response.ok) {
          say(message, 'Resolved.', true);
          form.closest('tr').setAttribute('data-resolved', 'true');
          form.elements['label'].disabled = true;
          return;
        }
        return failure(response).then(function (text) { say(message, text, false); button.disabled = false; });
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
        say(message, (response.status === 401 ? 'The admin token is missing or wrong: ' : 'Refused: ') + text, false);
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
  remember('admin-token', TOKEN);
  remember('actor', ACTOR);
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
