/*
 * accessd status page: the pipeline at a glance (#/pipeline), one card per symbol.
 *
 * The prediction service is found the way any client finds it: its app in GET /v2/apps (label
 * `accessd.service` starting with "prediction", or a command running services.prediction) and a
 * running task's address (its IP address, else host, and first port). From that service
 * (CORS-enabled, read-only) each card shows: the newest quote's time, the served model version
 * and when it was trained, its held-out MAE next to the naive baseline's (with the verdict the
 * CLI gives), and a small chart of its predictions of the recent closes against the actual
 * closes. Refreshed every REFRESH_MS while the view is open.
 */
(function () {
  "use strict";

  var REFRESH_MS = 3000, RECENT = 60, NEGLIGIBLE = 0.005;
  var page = window.accessdPage;
  var el = page.el;
  var timer = null, busy = false;

  function $(id) { return document.getElementById(id); }
  function clear(n) { while (n.firstChild) n.removeChild(n.firstChild); }
  function active() { return location.hash === "#/pipeline"; }

  function getJson(url, withToken) {
    var headers = { "Accept": "application/json" };
    var t = page.token();
    if (withToken && t) headers["Authorization"] = "Bearer " + t;
    return fetch(url, { headers: headers, cache: "no-store" }).then(function (r) {
      return r.json().catch(function () { return null; }).then(function (body) {
        if (!r.ok) throw new Error((body && (body.message || body.title)) || "HTTP " + r.status);
        return body;
      });
    });
  }

  function isPrediction(app) {
    var label = (app.labels || {})["accessd.service"] || "";
    return /^prediction/i.test(label) || /services\.prediction/.test(app.cmd || "");
  }

  function serviceUrl(apps) {
    for (var i = 0; i < apps.length; i++) {
      if (!isPrediction(apps[i])) continue;
      var tasks = (apps[i].tasks || []).filter(function (t) {
        return t.state === "TASK_RUNNING" && t.ports && t.ports.length;
      });
      if (!tasks.length) continue;
      var t = tasks[0];
      var ip = (t.ipAddresses && t.ipAddresses[0] && t.ipAddresses[0].ipAddress) || t.host;
      return { app: apps[i].id, url: "http://" + ip + ":" + t.ports[0] };
    }
    return null;
  }

  function verdict(v) {
    if (!v) return "";
    var two = 2 * (v.maeDiffSe || 0);
    if (v.maeDiff < -two && v.maeRatio < 1 - NEGLIGIBLE) return "better than naive";
    if (v.maeDiff > two && v.maeRatio > 1 + NEGLIGIBLE) return "worse than naive";
    return "equal to naive (within noise)";
  }

  function fmt(x, digits) { return x === undefined || x === null ? "—" : Number(x).toFixed(digits); }

  function fmtTime(iso) {
    return iso ? iso.replace("T", " ").replace(/(\.\d+)?(Z|\+00:00)$/, " UTC") : "—";
  }

  var SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attrs) {
    var n = document.createElementNS(SVG, tag);
    Object.keys(attrs).forEach(function (k) { n.setAttribute(k, attrs[k]); });
    return n;
  }

  function chart(points) {
    var w = 520, h = 150, pad = 6;
    var box = svg("svg", { viewBox: "0 0 " + w + " " + h, class: "pipeline-chart",
      role: "img", "aria-label": "predicted vs actual closes" });
    if (!points.length) return box;
    var ys = [];
    points.forEach(function (p) { ys.push(p.actual, p.predicted); });
    var lo = Math.min.apply(null, ys), hi = Math.max.apply(null, ys);
    if (hi === lo) { hi += 1; lo -= 1; }
    var x = function (i) { return pad + (w - 2 * pad) * (points.length > 1 ? i / (points.length - 1) : 0.5); };
    var y = function (v) { return h - pad - (h - 2 * pad) * (v - lo) / (hi - lo); };
    ["actual", "predicted"].forEach(function (key) {
      var d = points.map(function (p, i) { return x(i).toFixed(1) + "," + y(p[key]).toFixed(1); });
      box.appendChild(svg("polyline", { points: d.join(" "), class: "line-" + key,
        fill: "none" }));
    });
    return box;
  }

  function card(symbol, model, metrics, recent) {
    var v = metrics && metrics.versusNaive;
    var m = (metrics && metrics.model) || {}, n = (metrics && metrics.naive) || {};
    return el("div", { class: "pipeline-card", "data-symbol": symbol }, [
      el("h2", { text: symbol }),
      el("dl", { class: "pipeline-facts" }, [
        el("dt", { text: "Newest quote" }),
        el("dd", { class: "newest-quote", text: fmtTime(recent && recent.lastQuoteTs) }),
        el("dt", { text: "Served model" }),
        el("dd", { class: "model-version", text: model.version }),
        el("dt", { text: "Trained" }),
        el("dd", { class: "trained-at", text: fmtTime(model.trainedAt) }),
        el("dt", { text: "Held-out MAE" }),
        el("dd", {}, [el("span", { class: "mae-model", text: fmt(m.mae, 4) }),
          el("span", { class: "muted", text: " model vs " }),
          el("span", { class: "mae-naive", text: fmt(n.mae, 4) }),
          el("span", { class: "muted", text: " naive" + (metrics && metrics.testSamples ?
            " on " + metrics.testSamples + " held-out closes" : "") })]),
        el("dt", { text: "Verdict" }),
        el("dd", { class: "verdict", text: v ? verdict(v) + " (MAE ratio " + fmt(v.maeRatio, 3) +
          ")" : "—" }),
      ]),
      chart((recent && recent.points) || []),
      el("div", { class: "legend" }, [el("span", { class: "key key-actual", text: "actual close" }),
        el("span", { class: "key key-predicted", text: "predicted (" + model.version + ")" })]),
    ]);
  }

  function refresh() {
    if (busy || !active()) return;
    busy = true;
    var empty = $("pipeline-empty");
    getJson("/v2/apps?embed=apps.tasks", true).then(function (body) {
      var svc = serviceUrl((body && body.apps) || []);
      if (!svc) throw new Error("no running prediction service among the apps");
      $("pipeline-source").textContent = "from " + svc.app + " at " + svc.url;
      return getJson(svc.url + "/models").then(function (models) {
        return Promise.all((models.models || []).map(function (mdl) {
          var s = encodeURIComponent(mdl.symbol);
          return Promise.all([
            getJson(svc.url + "/models/" + s + "/metrics").catch(function () { return null; }),
            getJson(svc.url + "/predictions/" + s + "/recent?n=" + RECENT).catch(function () { return null; }),
            getJson(svc.url + "/models/" + s).catch(function () { return mdl; }),
          ]).then(function (res) { return card(mdl.symbol, res[2], res[0], res[1]); });
        }));
      });
    }).then(function (cards) {
      var box = $("pipeline-cards");
      clear(box);
      cards.forEach(function (c) { box.appendChild(c); });
      empty.hidden = cards.length > 0;
      empty.textContent = "The prediction service has no published model yet.";
    }, function (err) {
      empty.hidden = false;
      empty.textContent = "Pipeline unavailable: " + err.message;
    }).then(function () { busy = false; });
  }

  function show() {
    var on = active();
    $("pipeline-view").hidden = !on;
    // The one rule of every view module (jobs.js too): a view's own link, else Applications.
    var h = location.hash, own = ["#/jobs", "#/pipeline"].indexOf(h) >= 0;
    Array.prototype.forEach.call(document.querySelectorAll(".topbar nav a"), function (a) {
      var href = a.getAttribute("href");
      a.className = (href === h || (href === "#/" && !own)) ? "active" : "";
    });
    if (on) {
      $("list-view").hidden = true;
      $("detail-view").hidden = true;
      if (!timer) { refresh(); timer = setInterval(refresh, REFRESH_MS); }
    } else if (timer) {
      clearInterval(timer);
      timer = null;
    }
  }

  page.onRender.push(show);
  window.addEventListener("hashchange", show);
})();
