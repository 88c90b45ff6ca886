/*
 * accessd status page: actions and task logs (loaded after app.js, which draws the views).
 *
 * Every action is a plain control-API request with the page's token, the same requests the
 * CLI makes: scale and suspend (PUT /v2/apps/<id> {"instances"}), restart (POST …/restart),
 * destroy (DELETE, after a confirmation), create (POST /v2/apps) and edit (PUT) from JSON. A
 * refused change shows the API's message and its `details`, each at its field (its JSON path
 * and the line of the editor where that field is). Whether to show the controls at all comes
 * from GET /v2/permissions; the API refuses a read-only credential's changes anyway.
 *
 * Each task row gets a "logs" button: the log view reads GET …/tasks/<task>/logs and then
 * polls for what was appended (LOG_POLL_MS); after a rotation it finishes the renamed file
 * (`stdout.1`) from where it was, then reads the new one from its start.
 */
(function () {
  "use strict";

  var LOG_POLL_MS = 1000;
  var page = window.accessdPage;
  var perm = { write: false, token: null, asked: false };
  var log = { appId: null, taskId: null, stream: "stdout", offset: null, timer: null, busy: false };

  function $(id) { return document.getElementById(id); }
  var el = page.el;

  function request(method, path, body) {
    var headers = { "Accept": "application/json" };
    var t = page.token();
    if (t) headers["Authorization"] = "Bearer " + t;
    var init = { method: method, headers: headers, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = typeof body === "string" ? body : JSON.stringify(body);
    }
    return fetch(path, init).then(function (resp) {
      return resp.text().then(function (text) {
        var parsed = null;
        try { parsed = text ? JSON.parse(text) : null; } catch (e) { parsed = text; }
        return { ok: resp.ok, status: resp.status, body: parsed };
      });
    });
  }

  function appPath(appId) {
    return "/v2/apps/" + appId.replace(/^\//, "").split("/").map(encodeURIComponent).join("/");
  }

  // ---------------------------------------------------------------------------------------------
  // Permissions

  function refreshPermissions() {
    var t = page.token();
    if (perm.asked && perm.token === t) return;
    perm.asked = true;
    perm.token = t;
    var apply = function (write) {
      perm.write = write;
      document.body.setAttribute("data-can-write", write ? "true" : "false");
      drawActions(currentApp());
    };
    request("GET", "/v2/permissions").then(function (r) {
      apply(!!(r.ok && r.body && r.body.write));
    }, function () { apply(false); });
  }

  function currentApp() {
    var m = /^#\/apps(\/.+)$/.exec(location.hash);
    return m ? decodeURIComponent(m[1]) : null;
  }

  // ---------------------------------------------------------------------------------------------
  // Messages

  function flash(kind, text, details) {
    var box = $("action-message");
    if (!box) {
      box = el("div", { id: "action-message", role: "status" });
      document.querySelector("main").insertBefore(box, document.querySelector("main").firstChild);
    }
    box.className = "action-message action-" + kind;
    while (box.firstChild) box.removeChild(box.firstChild);
    box.appendChild(el("span", { class: "action-text", text: text }));
    (details || []).forEach(function (d) {
      box.appendChild(el("div", { class: "action-detail mono",
        text: (d.path || "") + ": " + (d.errors || []).join("; ") }));
    });
    box.appendChild(el("button", { class: "link close", type: "button", text: "×",
      title: "dismiss" }));
    box.lastChild.addEventListener("click", function () { box.hidden = true; });
    box.hidden = false;
  }

  // `retry`, when given, repeats the request with ?force=true: offered on a 409 (a running
  // deployment holds the app), as Marathon's UI offers to force the change.
  function refused(what, r, retry) {
    var msg = (r.body && r.body.message) || ("HTTP " + r.status);
    if (r.status === 409) msg += " (wait for the running deployment, or force the change)";
    flash("bad", what + " refused: " + msg, r.body && r.body.details);
    if (r.status === 409 && retry) {
      var force = button("Force", "danger action-force", function () { retry(); });
      var box = $("action-message");
      box.insertBefore(force, box.lastChild);
    }
  }

  // One change request; on success `after` runs and the page refreshes.
  function act(what, method, path, body, after) {
    request(method, path, body).then(function (r) {
      if (!r.ok) {
        refused(what, r, path.indexOf("force=true") < 0 ? function () {
          act(what, method, path + (path.indexOf("?") < 0 ? "?" : "&") + "force=true", body,
            after);
        } : null);
        return;
      }
      if (after) after();
      done(what, r);
    });
  }

  function done(what, r) {
    var dep = r.body && (r.body.deploymentId || (r.body.deployments && r.body.deployments[0] &&
      r.body.deployments[0].id));
    flash("ok", what + (dep ? " — deployment " + dep : ""));
    page.poll();
  }

  // ---------------------------------------------------------------------------------------------
  // Buttons

  function button(label, cls, onClick, title) {
    var b = el("button", { type: "button", class: "btn " + cls, text: label, title: title || null });
    b.addEventListener("click", onClick);
    return b;
  }

  function drawActions(appId) {
    var list = $("list-actions"), detail = $("detail-actions");
    while (list.firstChild) list.removeChild(list.firstChild);
    while (detail.firstChild) detail.removeChild(detail.firstChild);
    if (!perm.write) return;
    list.appendChild(button("Create app", "action-create", function () { openEditor(null); }));
    if (!appId) return;
    var input = el("input", { id: "scale-input", type: "number", min: "0", step: "1",
      class: "scale-input", "aria-label": "instances" });
    var app = findApp(appId);
    input.value = app ? String(app.instances || 0) : "";
    detail.appendChild(input);
    detail.appendChild(button("Scale", "action-scale", function () {
      var n = parseInt(input.value, 10);
      if (isNaN(n) || n < 0) { flash("bad", "Instances must be a whole number ≥ 0"); return; }
      scale(appId, n, "Scale of " + appId + " to " + n);
    }));
    detail.appendChild(button("Restart", "action-restart", function () {
      act("Restart of " + appId, "POST", appPath(appId) + "/restart", {});
    }));
    detail.appendChild(button("Suspend", "action-suspend", function () {
      scale(appId, 0, "Suspend of " + appId);
    }, "scale to 0 instances"));
    detail.appendChild(button("Edit", "action-edit", function () { openEditor(appId); }));
    detail.appendChild(button("Destroy", "action-destroy danger", function () {
      confirmDialog("Destroy " + appId + "? Its tasks are killed and its definition deleted.",
        "Destroy", function () {
          act("Destroy of " + appId, "DELETE", appPath(appId), undefined, function () {
            location.hash = "#/";
          });
        });
    }));
  }

  var lastApps = [];
  function findApp(appId) {
    return lastApps.filter(function (a) { return a.id === appId; })[0] || null;
  }

  function scale(appId, n, what) {
    act(what, "PUT", appPath(appId), { instances: n });
  }

  // ---------------------------------------------------------------------------------------------
  // Dialogs: confirmation, JSON editor

  function dialog(id) {
    var d = $(id);
    if (d) return d;
    d = el("div", { id: id, class: "dialog-backdrop", hidden: "" });
    document.body.appendChild(d);
    return d;
  }

  function closeDialogs() {
    ["confirm-dialog", "editor-dialog"].forEach(function (id) {
      var d = $(id);
      if (d) d.hidden = true;
    });
  }

  function confirmDialog(text, yesLabel, onYes) {
    var d = dialog("confirm-dialog");
    while (d.firstChild) d.removeChild(d.firstChild);
    var yes = button(yesLabel, "danger", function () { closeDialogs(); onYes(); });
    yes.id = "confirm-yes";
    var no = button("Cancel", "", closeDialogs);
    no.id = "confirm-no";
    d.appendChild(el("div", { class: "dialog", role: "dialog", "aria-modal": "true" }, [
      el("p", { class: "confirm-text", text: text }), el("div", { class: "dialog-buttons" },
        [no, yes])]));
    d.hidden = false;
    no.focus();
  }

  // Fields the API adds to an app's view, not part of a definition one may PUT back.
  var VIEW_ONLY = ["version", "versionInfo", "tasks", "tasksRunning", "tasksStaged",
    "tasksHealthy", "tasksUnhealthy", "deployments", "lastTaskFailure", "status", "counts",
    "readinessCheckResults", "taskStats"];

  function openEditor(appId) {
    var d = dialog("editor-dialog");
    while (d.firstChild) d.removeChild(d.firstChild);
    var area = el("textarea", { id: "app-json", class: "mono", spellcheck: "false", rows: "18" });
    var errors = el("ul", { id: "app-json-errors", class: "field-errors" });
    var submit = button(appId ? "Save" : "Create", "primary", function () {
      submitEditor(appId, area, errors);
    });
    submit.id = "app-json-submit";
    d.appendChild(el("div", { class: "dialog wide", role: "dialog", "aria-modal": "true" }, [
      el("h2", { text: appId ? "Edit " + appId : "Create an app from JSON" }),
      area, errors,
      el("div", { class: "dialog-buttons" }, [button("Cancel", "", closeDialogs), submit])]));
    d.hidden = false;
    if (!appId) {
      area.value = JSON.stringify({ id: "/my-app", cmd: "python3 -m http.server $PORT0",
        cpus: 0.1, mem: 64, instances: 1 }, null, 2);
      area.focus();
      return;
    }
    area.value = "loading…";
    request("GET", appPath(appId)).then(function (r) {
      if (!r.ok) { area.value = ""; refused("Loading " + appId, r); return; }
      var def = r.body.app;
      VIEW_ONLY.forEach(function (k) { delete def[k]; });
      area.value = JSON.stringify(def, null, 2);
      area.focus();
    });
  }

  // The 1-based line of the editor where the JSON path's last key is written, or null.
  function lineOf(text, path) {
    var keys = (path || "").split("/").filter(function (k) { return k && !/^\d+$/.test(k); });
    if (!keys.length) return null;
    var needle = JSON.stringify(keys[keys.length - 1]) + ":";
    var idx = text.indexOf(needle);
    if (idx < 0) idx = text.indexOf(JSON.stringify(keys[keys.length - 1]));
    return idx < 0 ? null : text.slice(0, idx).split("\n").length;
  }

  function showFieldErrors(list, text, message, details) {
    while (list.firstChild) list.removeChild(list.firstChild);
    list.appendChild(el("li", { class: "form-error", text: message }));
    (details || []).forEach(function (d) {
      var line = lineOf(text, d.path);
      list.appendChild(el("li", { class: "field-error", "data-path": d.path || "/" }, [
        el("code", { class: "field-path", text: d.path || "/" }),
        line ? el("span", { class: "field-line", text: " (line " + line + ")" }) : null,
        el("span", { class: "field-message", text: ": " + (d.errors || []).join("; ") })]));
    });
  }

  function submitEditor(appId, area, list) {
    var text = area.value, doc;
    try {
      doc = JSON.parse(text);
    } catch (e) {
      showFieldErrors(list, text, "Not valid JSON: " + e.message, []);
      return;
    }
    var method = appId ? "PUT" : "POST";
    var path = appId ? appPath(appId) : "/v2/apps";
    request(method, path, doc).then(function (r) {
      if (!r.ok) {
        showFieldErrors(list, text, (r.body && r.body.message) || ("HTTP " + r.status),
          r.body && r.body.details);
        return;
      }
      closeDialogs();
      var id = appId || (r.body && r.body.id) || doc.id;
      done((appId ? "Updated " : "Created ") + id, r);
      if (!appId && id) location.hash = "#/apps" + (id.charAt(0) === "/" ? id : "/" + id);
    });
  }

  // ---------------------------------------------------------------------------------------------
  // Task logs

  function decorateTasks(appId) {
    var rows = document.querySelectorAll("#tasks-body tr.task-row");
    Array.prototype.forEach.call(rows, function (tr) {
      if (tr.querySelector(".task-logs")) return;
      var taskId = tr.getAttribute("data-task-id");
      tr.appendChild(el("td", { class: "task-actions" }, [
        button("logs", "task-logs link", function () { openLog(appId, taskId); })]));
    });
  }

  function stopLog() {
    if (log.timer) clearTimeout(log.timer);
    log.timer = null;
    log.taskId = null;
    var panel = $("task-log");
    if (panel) panel.hidden = true;
  }

  function openLog(appId, taskId, stream) {
    stopLog();
    log.appId = appId;
    log.taskId = taskId;
    log.stream = stream || "stdout";
    log.offset = null;
    var panel = $("task-log");
    while (panel.firstChild) panel.removeChild(panel.firstChild);
    var tabs = el("span", { class: "log-streams" });
    ["stdout", "stderr"].forEach(function (s) {
      var b = button(s, "log-stream" + (s === log.stream ? " active" : ""), function () {
        openLog(appId, taskId, s);
      });
      b.setAttribute("data-stream", s);
      tabs.appendChild(b);
    });
    panel.appendChild(el("div", { class: "log-head" }, [
      el("strong", { text: "Log of " }), el("span", { class: "mono", text: taskId }), tabs,
      el("span", { id: "task-log-status", class: "muted" }),
      button("close", "link log-close", stopLog)]));
    panel.appendChild(el("pre", { id: "task-log-text", class: "log-text" }));
    panel.hidden = false;
    pollLog();
  }

  function pollLog() {
    var taskId = log.taskId;
    if (!taskId) return;
    var base = appPath(log.appId) + "/tasks/" + encodeURIComponent(taskId) + "/logs";
    var path = base + "?stream=" + log.stream + (log.offset === null ? "" : "&offset=" + log.offset);
    request("GET", path).then(function (r) {
      if (log.taskId !== taskId) return;
      var status = $("task-log-status");
      var pre = $("task-log-text");
      if (!r.ok) {
        status.textContent = " — " + ((r.body && r.body.message) || "HTTP " + r.status);
      } else if (log.offset !== null && r.body.size < log.offset) {
        // Rotated (stdout renamed stdout.1, a new stdout begun): the rest of the renamed file
        // from where we were, then the new file from its start. Truncated in place: from 0.
        var from = log.offset;
        log.offset = 0;
        return request("GET", base + "?stream=" + log.stream + ".1&offset=" + from)
          .then(function (rest) {
            if (log.taskId === taskId && rest.ok && rest.body.data) {
              pre.appendChild(document.createTextNode(rest.body.data));
            }
          });
      } else {
        status.textContent = " — following, " + r.body.size + " bytes";
        if (r.body.data) {
          var atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
          pre.appendChild(document.createTextNode(r.body.data));
          if (atBottom) pre.scrollTop = pre.scrollHeight;
        }
        log.offset = r.body.nextOffset;
      }
    }, function (err) {
      var status = $("task-log-status");
      if (status) status.textContent = " — " + err.message + "; retrying";
    }).then(function () {
      if (log.taskId === taskId) log.timer = setTimeout(pollLog, LOG_POLL_MS);
    });
  }

  // ---------------------------------------------------------------------------------------------

  // ---------------------------------------------------------------------------------------------
  // Deployment progress, step by step (in each deployment alert app.js draws)

  function drawDeploymentSteps(appId, byApp) {
    (byApp[appId] || []).forEach(function (d) {
      var alert = document.querySelector('#detail-alerts .deployment[data-deployment-id="' +
        d.id + '"]');
      if (!alert || !d.steps) return;
      var list = el("ol", { class: "deployment-steps" });
      d.steps.forEach(function (step, i) {
        var n = i + 1, cur = d.currentStep || 0;
        var kind = n < cur ? "done" : n === cur ? "current" : "pending";
        var text = (step.actions || []).map(function (a) { return a.action + " " + a.app; })
          .join(", ");
        var item = el("li", { class: "step step-" + kind, "data-step": String(n) }, [
          el("span", { class: "step-mark", text: kind === "done" ? "✓" : kind === "current" ?
            "▶" : "·" }), el("span", { text: " " + text })]);
        if (kind === "current" && d.progress && d.target && d.target.instances !== undefined) {
          var target = Math.max(1, d.target.instances || 0);
          var healthy = d.progress.healthy || 0, run = d.progress.running || 0;
          item.appendChild(el("span", { class: "step-progress", text: " — " + run +
            " running, " + healthy + " healthy of " + d.target.instances +
            (d.progress.old ? ", " + d.progress.old + " old to stop" : "") }));
          var bar = el("div", { class: "step-bar" }, [el("span", { class: "step-bar-fill",
            style: "width:" + Math.min(100, 100 * healthy / target) + "%" })]);
          item.appendChild(bar);
        }
        list.appendChild(item);
      });
      alert.appendChild(list);
    });
  }

  page.onRender.push(function (appId, apps, deployments) {
    lastApps = apps || [];
    if (appId) drawDeploymentSteps(appId, deployments || {});
    refreshPermissions();
    var input = $("scale-input");
    var keepInput = input && document.activeElement === input;
    if (!keepInput) drawActions(appId);
    if (appId) decorateTasks(appId);
    if (log.taskId && log.appId !== appId) stopLog();
  });
  document.addEventListener("keydown", function (ev) { if (ev.key === "Escape") closeDialogs(); });
})();
