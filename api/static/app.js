/*
 * accessd status page.
 *
 * One poll of GET /v2/apps?embed=apps.tasks&embed=apps.lastTaskFailure&embed=accessd every
 * POLL_MS (`accessd`: the status label, task health verdicts; see api/shapes.py) feeds both
 * views (the applications list and an app's detail at #/apps/<id>), so what the page shows is
 * always one consistent snapshot. events.js follows /v2/events and asks for a poll on each
 * event (slowing the timer to a safety net meanwhile); when the stream drops, POLL_MS (2 s)
 * polling takes over again. actions.js adds the action buttons and task logs through the
 * `window.accessdPage` hooks.
 *
 * Auth: reads work without a token unless the API has a read credential; then the API answers
 * 401 and the page says so and offers a token field (kept in sessionStorage for this tab only).
 * Everything from the API is put in the DOM with textContent, never as HTML.
 */
(function () {
  "use strict";

  var POLL_MS = 2000;
  var REQUEST_TIMEOUT_MS = 10000;
  // Unchanged data is not redrawn (so a row is not replaced under the pointer), except this
  // often, which keeps the "n min ago" times fresh.
  var REDRAW_MS = 30000;
  var TOKEN_KEY = "accessd.apiToken";
  var STATUS_ORDER = ["Running", "Deploying", "Suspended", "Delayed", "Waiting"];

  var state = {
    apps: null,        // last good list of apps, sorted by id
    queue: {},         // appId -> /v2/queue item (delay, waiting reason), best effort
    deployments: {},   // appId -> running deployments affecting it, best effort
    lastOk: null,      // Date of the last good poll
    drawn: null,       // signature of the data last drawn, and when
    drawnAt: 0,
    timer: null,
    inflight: false,
  };

  function $(id) { return document.getElementById(id); }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        if (attrs[k] === null || attrs[k] === undefined) return;
        if (k === "text") node.textContent = attrs[k];
        else if (k === "class") node.className = attrs[k];
        else node.setAttribute(k, attrs[k]);
      });
    }
    (children || []).forEach(function (c) {
      if (c === null || c === undefined) return;
      node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return node;
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  // ---------------------------------------------------------------------------------------------
  // API access

  function token() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ""; } catch (e) { return ""; }
  }

  function apiGet(path) {
    var headers = { "Accept": "application/json" };
    var t = token();
    if (t) headers["Authorization"] = "Bearer " + t;
    // A request that hangs must not stall the poll loop (one poll in flight at a time).
    var ctrl = typeof AbortController === "function" ? new AbortController() : null;
    if (ctrl) setTimeout(function () { ctrl.abort(); }, REQUEST_TIMEOUT_MS);
    return fetch(path, { headers: headers, cache: "no-store",
      signal: ctrl ? ctrl.signal : undefined }).then(function (resp) {
      return resp.text().then(function (text) {
        var body = null;
        try { body = text ? JSON.parse(text) : null; } catch (e) { body = text; }
        if (!resp.ok) {
          var err = new Error((body && body.message) || resp.statusText || ("HTTP " + resp.status));
          err.status = resp.status;
          err.body = body;
          throw err;
        }
        return body;
      });
    });
  }

  // ---------------------------------------------------------------------------------------------
  // Derived values

  // The API sends `status`; this fallback follows the same rule (DEVELOPERS.md) with what an
  // app document alone tells, so an older API still gets sensible labels.
  function statusOf(app) {
    if (app.status) return app.status;
    var q = app.instances > 0 ? state.queue[app.id] : null;
    if (q && q.delay && !q.delay.overdue && q.delay.timeLeftSeconds > 0) return "Delayed";
    if (q && q.count > 0) return "Waiting";
    if (app.deployments && app.deployments.length) return "Deploying";
    if (app.instances === 0) return "Suspended";
    return "Running";
  }

  function hasChecks(app) { return !!(app.healthChecks && app.healthChecks.length); }

  // Task counts for the bar: healthy / unhealthy / running without a verdict / staged.
  function breakdown(app) {
    var out = { healthy: 0, unhealthy: 0, unknown: 0, staged: 0 };
    var tasks = app.tasks;
    if (!tasks) {
      out.healthy = app.tasksHealthy || 0;
      out.unhealthy = app.tasksUnhealthy || 0;
      out.staged = app.tasksStaged || 0;
      out.unknown = Math.max(0, (app.tasksRunning || 0) - out.healthy - out.unhealthy);
      return out;
    }
    tasks.forEach(function (t) {
      if (t.state && t.state !== "TASK_RUNNING") out.staged += 1;
      else if (t.healthy === true) out.healthy += 1;
      else if (t.healthy === false) out.unhealthy += 1;
      else out.unknown += 1;
    });
    return out;
  }

  function fmtNumber(x) {
    if (x === null || x === undefined) return "";
    return Number.isInteger(x) ? String(x) : String(Math.round(x * 100) / 100);
  }

  function fmtMem(mb) {
    if (mb === null || mb === undefined) return "";
    if (mb >= 1024) return fmtNumber(mb / 1024) + " GiB";
    return fmtNumber(mb) + " MiB";
  }

  function ago(iso) {
    if (!iso) return "";
    var t = Date.parse(iso);
    if (isNaN(t)) return "";
    var s = Math.max(0, Math.round((Date.now() - t) / 1000));
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    if (s < 86400) return Math.floor(s / 3600) + " h ago";
    return Math.floor(s / 86400) + " d ago";
  }

  function fmtTime(iso) {
    if (!iso) return "—";
    return iso.replace("T", " ").replace(/\.\d+Z$/, "Z").replace(/Z$/, " UTC");
  }

  function shortState(s) { return (s || "").replace(/^TASK_/, "").toLowerCase(); }

  // ---------------------------------------------------------------------------------------------
  // Rendering: list view

  function healthBar(app) {
    var b = breakdown(app);
    var total = Math.max(app.instances || 0, b.healthy + b.unhealthy + b.unknown + b.staged);
    var title = b.healthy + " healthy, " + b.unhealthy + " unhealthy, " + b.unknown +
      (hasChecks(app) ? " not yet checked, " : " running (no health checks), ") + b.staged + " staged";
    var bar = el("div", { class: "bar", title: title, "data-healthy": b.healthy,
      "data-unhealthy": b.unhealthy });
    if (total === 0) {
      bar.classList.add("bar-empty");
      return bar;
    }
    [["healthy", b.healthy], ["unhealthy", b.unhealthy], ["unknown", b.unknown],
     ["staged", b.staged]].forEach(function (part) {
      if (!part[1]) return;
      bar.appendChild(el("span", { class: "seg seg-" + part[0],
        style: "width:" + (100 * part[1] / total) + "%" }));
    });
    return bar;
  }

  function healthText(app) {
    if (!hasChecks(app)) return "no checks";
    var b = breakdown(app);
    var parts = [b.healthy + " healthy"];
    if (b.unhealthy) parts.push(b.unhealthy + " unhealthy");
    return parts.join(", ");
  }

  function badge(status, title) {
    return el("span", { class: "badge status-" + status.toLowerCase(), text: status,
      title: title || null });
  }

  // "step 1/2: StartApplication /a" for a running deployment document.
  function deploymentText(d) {
    var actions = (d.currentActions || []).map(function (a) {
      return a.action + " " + a.app;
    }).join(", ");
    var text = "step " + (d.currentStep || "?") + "/" + (d.totalSteps || "?") +
      (actions ? ": " + actions : "");
    var p = d.progress, target = d.target;
    if (p && target && target.instances !== undefined && target.instances !== null) {
      text += " · " + (p.running || 0) + " running, " + (p.healthy || 0) + " healthy of " +
        target.instances;
      if (p.old) text += ", " + p.old + " old";
    }
    return text;
  }

  function renderList() {
    var body = $("apps-body");
    var apps = state.apps || [];
    clear(body);
    apps.forEach(function (app) {
      var status = statusOf(app);
      var running = app.tasksRunning || 0;
      var row = el("tr", { class: "app-row", "data-app-id": app.id, tabindex: "0" }, [
        el("td", { class: "col-name" }, [el("a", { href: "#/apps" + app.id, text: app.id })]),
        el("td", { class: "col-cpus num", text: fmtNumber(app.cpus) }),
        el("td", { class: "col-mem num", text: fmtMem(app.mem) }),
        el("td", { class: "col-status" }, [badge(status,
          (state.deployments[app.id] || []).map(deploymentText).join("; "))]),
        el("td", { class: "col-instances num",
          text: running + " of " + (app.instances || 0) }),
        el("td", { class: "col-health" }, [healthBar(app),
          el("span", { class: "health-text", text: healthText(app) })]),
      ]);
      body.appendChild(row);
    });
    $("apps-empty").hidden = !(state.apps && apps.length === 0);
    var counts = {};
    apps.forEach(function (a) { var s = statusOf(a); counts[s] = (counts[s] || 0) + 1; });
    var summary = apps.length + (apps.length === 1 ? " app" : " apps");
    STATUS_ORDER.forEach(function (s) { if (counts[s]) summary += " · " + counts[s] + " " + s; });
    $("summary").textContent = state.apps ? summary : "";
  }

  // ---------------------------------------------------------------------------------------------
  // Rendering: detail view

  function fact(list, name, value, wide) {
    list.appendChild(el("dt", { class: wide ? "wide" : null, text: name }));
    list.appendChild(el("dd", { class: wide ? "wide mono" : null,
      text: value === null || value === undefined || value === "" ? "—" : String(value) }));
  }

  function taskHealth(task) {
    var results = task.healthCheckResults || [];
    var cause = null;
    results.forEach(function (r) { if (!cause && r.lastFailureCause) cause = r.lastFailureCause; });
    var healthy = task.healthy;
    if (healthy === null || healthy === undefined) {
      if (results.length) healthy = results.every(function (r) { return r.alive; });
    }
    var cell = el("td", { class: "task-health" });
    if (healthy === true) cell.appendChild(el("span", { class: "hl hl-ok", text: "Healthy" }));
    else if (healthy === false) cell.appendChild(el("span", { class: "hl hl-bad", text: "Unhealthy" }));
    else cell.appendChild(el("span", { class: "hl hl-unknown", text: "Unknown" }));
    if (cause) {
      var last = results.filter(function (r) { return r.lastFailure; })[0];
      cell.appendChild(el("div", { class: "cause", text: "last failure: " + cause +
        (last ? " (" + ago(last.lastFailure) + ")" : "") }));
    }
    return cell;
  }

  function describeCheck(c) {
    var proto = c.protocol || "HTTP";
    var what = proto === "COMMAND" ? ((c.command && c.command.value) || c.command || "") :
      proto + (proto === "HTTP" ? " " + (c.path || "/") : "") + " on port index " + (c.portIndex || 0);
    return what + " · every " + (c.intervalSeconds || 60) + " s, timeout " +
      (c.timeoutSeconds || 20) + " s, grace " + (c.gracePeriodSeconds || 300) +
      " s, " + (c.maxConsecutiveFailures !== undefined ? c.maxConsecutiveFailures : 3) +
      " failures in a row";
  }

  function renderDetail(appId) {
    var app = (state.apps || []).filter(function (a) { return a.id === appId; })[0];
    $("detail-title").textContent = appId;
    var missing = $("detail-missing");
    if (!app) {
      $("detail-status").hidden = true;
      $("detail-body").hidden = true;
      missing.hidden = !state.apps;
      missing.textContent = "No application " + appId + " (it may have been deleted).";
      return;
    }
    missing.hidden = true;
    $("detail-body").hidden = false;
    var status = statusOf(app);
    var st = $("detail-status");
    st.hidden = false;
    st.className = "badge status-" + status.toLowerCase();
    st.textContent = status;

    var facts = $("detail-facts");
    clear(facts);
    fact(facts, "Instances", (app.tasksRunning || 0) + " of " + (app.instances || 0) + " running");
    fact(facts, "Health", hasChecks(app) ? healthText(app) : "no health checks");
    fact(facts, "Staged", app.tasksStaged || 0);
    fact(facts, "CPU", fmtNumber(app.cpus));
    fact(facts, "Memory", fmtMem(app.mem));
    fact(facts, "Version", fmtTime(app.version));
    fact(facts, "Command", app.cmd || (app.args ? app.args.join(" ") : ""), true);

    var alerts = $("detail-alerts");
    clear(alerts);
    // Full documents from /v2/deployments when that answered, else the ids the app lists.
    var running = state.deployments[app.id] || app.deployments || [];
    running.forEach(function (d) {
      alerts.appendChild(el("div", { class: "alert alert-info deployment",
        "data-deployment-id": d.id }, [
        el("strong", { text: "Deployment " }),
        el("span", { class: "mono", text: d.id }),
        el("span", { text: d.currentStep ? " — " + deploymentText(d) : " in progress" }),
      ]));
    });
    var q = app.instances > 0 ? state.queue[app.id] : null;
    if (q && q.delay && !q.delay.overdue && q.delay.timeLeftSeconds > 0) {
      alerts.appendChild(el("div", { class: "alert alert-warn", text: "Launches delayed " +
        q.delay.timeLeftSeconds + " s more (backoff after failures)." }));
    } else if (status === "Delayed") {
      alerts.appendChild(el("div", { class: "alert alert-warn",
        text: "Launches are delayed (backoff after failures)." }));
    }
    if (q && q.lastUnusedOfferReason && status === "Waiting") {
      alerts.appendChild(el("div", { class: "alert alert-info",
        text: "Waiting for resources: " + q.lastUnusedOfferReason }));
    }
    var f = app.lastTaskFailure;
    if (f) {
      alerts.appendChild(el("div", { class: "alert alert-bad" }, [
        el("strong", { text: "Last task failure " }),
        el("span", { text: shortState(f.state) + " on " + (f.host || "?") + ", " +
          fmtTime(f.timestamp) + ": " + (f.message || "no message") }),
      ]));
    }

    var checks = $("detail-checks");
    clear(checks);
    (app.healthChecks || []).forEach(function (c) {
      checks.appendChild(el("li", { text: describeCheck(c) }));
    });
    if (!hasChecks(app)) checks.appendChild(el("li", { class: "muted", text: "none" }));

    var tasks = (app.tasks || []).slice().sort(function (a, b) {
      return (a.startedAt || a.stagedAt || "").localeCompare(b.startedAt || b.stagedAt || "") ||
        a.id.localeCompare(b.id);
    });
    $("detail-task-count").textContent = "(" + tasks.length + ")";
    var body = $("tasks-body");
    clear(body);
    tasks.forEach(function (t) {
      var ip = (t.ipAddresses && t.ipAddresses[0] && t.ipAddresses[0].ipAddress) || "";
      body.appendChild(el("tr", { class: "task-row", "data-task-id": t.id }, [
        el("td", { class: "mono task-id", text: t.id }),
        el("td", { text: (t.host || "") + (ip && ip !== t.host ? " (" + ip + ")" : "") }),
        el("td", { class: "mono", text: (t.ports || []).join(", ") }),
        el("td", { class: "task-state" }, [el("span", {
          class: "state state-" + shortState(t.state), text: shortState(t.state) || "?" })]),
        taskHealth(t),
        el("td", { title: t.startedAt || "", text: t.startedAt ?
          fmtTime(t.startedAt) + " (" + ago(t.startedAt) + ")" : "not started" }),
      ]));
    });
    $("tasks-empty").hidden = tasks.length > 0;
  }

  // ---------------------------------------------------------------------------------------------
  // Routing, notices, polling

  function route() {
    var m = /^#\/apps(\/.+)$/.exec(location.hash);
    return m ? decodeURIComponent(m[1]) : null;
  }

  function render() {
    state.drawnAt = Date.now();
    var appId = route();
    var jobs = location.hash === "#/jobs";  // the Jobs view (static/jobs.js)
    $("list-view").hidden = !!appId || jobs;
    $("detail-view").hidden = !appId;
    if (appId) renderDetail(appId); else renderList();
    // Other page modules (actions.js) decorate what was drawn.
    (window.accessdPage.onRender || []).forEach(function (hook) {
      hook(appId, state.apps, state.deployments);
    });
  }

  function notice(text, askToken) {
    var box = $("notice");
    box.hidden = !text;
    $("notice-text").textContent = text || "";
    $("token-form").hidden = !askToken;
    box.className = "notice" + (askToken ? " notice-auth" : "");
  }

  function setConn(kind, text) {
    var c = $("conn");
    c.className = "conn conn-" + kind;
    c.textContent = text;
  }

  function poll() {
    if (state.inflight) return;
    state.inflight = true;
    var apps = apiGet("/v2/apps?embed=apps.tasks&embed=apps.lastTaskFailure&embed=accessd");
    // The queue (delays, waiting reasons) is extra detail: its failure must not hide the apps.
    var queue = apiGet("/v2/queue?embed=accessd").catch(function () { return null; });
    var deployments = apiGet("/v2/deployments?embed=accessd").catch(function () { return null; });
    Promise.all([apps, queue, deployments]).then(function (res) {
      var signature = JSON.stringify(res);
      var list = (res[0] && res[0].apps) || [];
      list.sort(function (a, b) { return a.id.localeCompare(b.id); });
      state.apps = list;
      state.queue = {};
      ((res[1] && res[1].queue) || []).forEach(function (item) {
        if (item.app && item.app.id) state.queue[item.app.id] = item;
      });
      state.deployments = {};
      (Array.isArray(res[2]) ? res[2] : []).forEach(function (d) {
        (d.affectedApps || []).forEach(function (id) {
          (state.deployments[id] = state.deployments[id] || []).push(d);
        });
      });
      state.lastOk = new Date();
      notice(null, false);
      setConn("ok", "live");
      $("updated").textContent = "updated " + state.lastOk.toLocaleTimeString() + " · " +
        (window.accessdPage.liveText || "refreshes every " + POLL_MS / 1000 + " s");
      if (signature !== state.drawn || Date.now() - state.drawnAt > REDRAW_MS) {
        state.drawn = signature;
        render();
      }
    }, function (err) {
      // Only request failures land here; a bug in drawing goes to the catch below.
      if (err.status === 401) {
        state.apps = null;
        state.drawn = null;
        setConn("bad", "not authorised");
        notice(token() ?
          "The API refused the token (401 Unauthorized): " + err.message + ". Enter another token." :
          "The API requires a token to read (401 Unauthorized): " + err.message +
          ". Enter an API token to see the applications.", true);
        render();
      } else if (err.status === 403) {
        state.apps = null;
        state.drawn = null;
        setConn("bad", "forbidden");
        notice("The token is not allowed to read the apps (403 Forbidden): " + err.message, true);
        render();
      } else {
        // Keep showing the last good data, but say it is stale.
        setConn("bad", "API unreachable");
        notice("Cannot reach the control API (" + (err.status ? "HTTP " + err.status + ": " : "") +
          err.message + "). Retrying every " + POLL_MS / 1000 + " s" +
          (state.lastOk ? "; showing data from " + state.lastOk.toLocaleTimeString() + "." : "."),
          false);
      }
    }).catch(function (bug) {
      // Reported as an uncaught error (console, tests), not disguised as an API outage.
      setTimeout(function () { throw bug; });
    }).then(function () {
      state.inflight = false;
    });
  }

  // The surface other page modules use: same token, same requests, a poll on demand.
  window.accessdPage = window.accessdPage || {};
  window.accessdPage.onRender = window.accessdPage.onRender || [];
  window.accessdPage.token = token;
  window.accessdPage.poll = function () { state.drawn = null; poll(); };
  window.accessdPage.el = el;
  // events.js switches between following /v2/events (a slow safety poll) and plain polling.
  window.accessdPage.setPollInterval = function (ms) {
    if (ms === POLL_MS && state.timer) return;
    POLL_MS = ms;
    if (state.timer) clearInterval(state.timer);
    state.timer = setInterval(poll, POLL_MS);
  };

  function start() {
    $("token-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      try { sessionStorage.setItem(TOKEN_KEY, $("token-input").value.trim()); } catch (e) { /* private mode */ }
      $("token-input").value = "";
      poll();
    });
    window.addEventListener("hashchange", function () { render(); window.scrollTo(0, 0); });
    // One listener for all rows (rows are redrawn; the table body stays).
    var body = $("apps-body");
    var openRow = function (target) {
      var tr = target.closest && target.closest("tr.app-row");
      if (tr) location.hash = "#/apps" + tr.getAttribute("data-app-id");
    };
    body.addEventListener("click", function (ev) {
      if (ev.target.tagName !== "A") openRow(ev.target);
    });
    body.addEventListener("keydown", function (ev) { if (ev.key === "Enter") openRow(ev.target); });
    document.addEventListener("visibilitychange", function () { if (!document.hidden) poll(); });
    render();
    poll();
    state.timer = setInterval(poll, POLL_MS);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
