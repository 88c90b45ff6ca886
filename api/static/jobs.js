/* accessd status page: the Jobs view (#/jobs), kept live by polling the Chronos API
   (/v1/scheduler/jobs?status=true) every 2 s while it is shown. Separate from app.js: it
   shares only the page's token (sessionStorage) and the notice area's conventions. */
(function () {
  "use strict";

  var POLL_MS = 2000;
  var TOKEN_KEY = "accessd.apiToken";
  var timer = null;
  var drawn = null;

  function $(id) { return document.getElementById(id); }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (attrs[k] === null || attrs[k] === undefined) return;
      if (k === "text") node.textContent = attrs[k];
      else if (k === "class") node.className = attrs[k];
      else node.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) {
      node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return node;
  }

  function shown() { return location.hash === "#/jobs"; }

  function when(iso) {
    if (!iso) return "-";
    var d = new Date(iso);
    return isNaN(d) ? iso : d.toLocaleString();
  }

  function seconds(ms) {
    return ms ? (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + " s" : "-";
  }

  function render(jobs) {
    var body = $("jobs-body");
    while (body.firstChild) body.removeChild(body.firstChild);
    jobs.forEach(function (j) {
      var st = j.accessdStatus || {};
      var last = st.lastRun;
      var lastText = last ? last.state + " · " + when(last.finishedAt || last.startedAt ||
                                                       last.scheduledAt) : "never";
      var state = j.disabled ? "disabled" : (st.state || "idle");
      body.appendChild(el("tr", { "class": "job-row", "data-job": j.name }, [
        el("td", { "class": "job-name", text: j.name }),
        el("td", { "class": "job-when", text: j.schedule ? j.schedule +
          (j.scheduleTimeZone ? " (" + j.scheduleTimeZone + ")" : "") :
          "after " + (j.parents || []).join(", ") }),
        el("td", { "class": "job-state" }, [el("span", { "class": "badge badge-" + state,
                                                         text: state })]),
        el("td", { "class": "job-last" + (last ? " last-" + last.state : ""),
                   text: lastText }),
        el("td", { "class": "job-next", text: when(st.nextRunAt) }),
        el("td", { "class": "job-counts num", text: j.successCount + " / " + j.errorCount }),
        el("td", { "class": "job-median num", text: seconds(st.medianMs) }),
        el("td", { "class": "job-p95 num", text: seconds(st.p95Ms) }),
      ]));
    });
    $("jobs-empty").hidden = jobs.length > 0;
    $("jobs-summary").textContent = jobs.length + (jobs.length === 1 ? " job" : " jobs");
  }

  function poll() {
    if (!shown()) return;
    var headers = { "Accept": "application/json" };
    var t = "";
    try { t = sessionStorage.getItem(TOKEN_KEY) || ""; } catch (e) { /* private mode */ }
    if (t) headers["Authorization"] = "Bearer " + t;
    fetch("/v1/scheduler/jobs?status=true", { headers: headers, cache: "no-store" })
      .then(function (resp) {
        if (!resp.ok) throw new Error("HTTP " + resp.status);
        return resp.json();
      })
      .then(function (jobs) {
        var signature = JSON.stringify(jobs);
        if (signature !== drawn) { drawn = signature; render(jobs); }
        $("jobs-error").hidden = true;
      }, function (err) {
        // app.js's poll shows authorisation problems; here only say the list is stale
        $("jobs-error").textContent = "Cannot read the jobs (" + err.message + "); retrying.";
        $("jobs-error").hidden = false;
      });
  }

  function route() {
    $("jobs-view").hidden = !shown();
    var links = document.querySelectorAll("header nav a");
    Array.prototype.forEach.call(links, function (a) {
      // The one rule of every view module (pipeline.js too): a view's own link, else Applications.
      var href = a.getAttribute("href"), h = location.hash;
      var own = ["#/jobs", "#/pipeline"].indexOf(h) >= 0;
      a.className = (href === h || (href === "#/" && !own)) ? "active" : "";
    });
    if (shown()) { drawn = null; poll(); }
  }

  function start() {
    window.addEventListener("hashchange", route);
    route();
    timer = setInterval(poll, POLL_MS);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
