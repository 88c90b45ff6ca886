/*
 * accessd status page: follow GET /v2/events (Server-Sent Events) and redraw on each event;
 * fall back to polling when the stream cannot be opened or drops.
 *
 * The stream is read with fetch() rather than EventSource, which cannot send the page's
 * Authorization header. While it is up, any event (status update, deployment step, health
 * change, API change) triggers one refresh at once (coalesced over EVENT_DEBOUNCE_MS) and the
 * regular poll slows to a safety net (FOLLOW_POLL_MS). When the stream ends, errors, or stays
 * silent past the API's keep-alive period (SILENCE_MS), the page polls every POLL_MS again and
 * retries the stream with a growing delay (RETRY_MS … MAX_RETRY_MS). `#conn[data-mode]` says
 * which of the two is in use ("events" or "polling").
 */
(function () {
  "use strict";

  // The safety poll while following stays short: some changes (an app's backoff delay, a
  // waiting reason) are stored without an event.
  var POLL_MS = 2000, FOLLOW_POLL_MS = 5000, EVENT_DEBOUNCE_MS = 150;
  var SILENCE_MS = 45000, RETRY_MS = 2000, MAX_RETRY_MS = 30000;
  var page = window.accessdPage;
  if (page.followPollMs) FOLLOW_POLL_MS = page.followPollMs;  // tests: prove events drive it
  var retry = RETRY_MS, pending = null, ctrl = null;

  if (typeof fetch !== "function" || typeof TextDecoder !== "function" ||
      typeof AbortController !== "function") return;  // polling only

  function mode(m) {
    page.liveText = m === "events" ? "follows the event stream" : null;
    var c = document.getElementById("conn");
    if (c) {
      c.setAttribute("data-mode", m);
      c.title = m === "events" ? "following the API's event stream" :
        "polling the API every " + POLL_MS / 1000 + " s";
    }
  }

  function refreshSoon() {
    if (pending) return;
    pending = setTimeout(function () { pending = null; page.poll(); }, EVENT_DEBOUNCE_MS);
  }

  function fallBack() {
    ctrl = null;
    mode("polling");
    page.setPollInterval(POLL_MS);
    setTimeout(connect, retry);
    retry = Math.min(MAX_RETRY_MS, retry * 2);
  }

  function connect() {
    var headers = { "Accept": "text/event-stream" };
    var t = page.token();
    if (t) headers["Authorization"] = "Bearer " + t;
    var mine = new AbortController();
    ctrl = mine;
    var silence = null;
    var quiet = function () {
      if (silence) clearTimeout(silence);
      silence = setTimeout(function () { mine.abort(); }, SILENCE_MS);
    };
    fetch("/v2/events", { headers: headers, cache: "no-store", signal: mine.signal })
      .then(function (resp) {
        if (!resp.ok || !resp.body) throw new Error("HTTP " + resp.status);
        mode("events");
        page.setPollInterval(FOLLOW_POLL_MS);
        retry = RETRY_MS;
        page.poll();  // anything that happened before the stream opened
        quiet();
        var reader = resp.body.getReader(), decoder = new TextDecoder(), buffer = "";
        var pump = function () {
          return reader.read().then(function (chunk) {
            if (chunk.done) throw new Error("stream ended");
            quiet();
            buffer += decoder.decode(chunk.value, { stream: true });
            var blocks = buffer.split("\n\n");
            buffer = blocks.pop();
            if (blocks.some(function (b) { return /^event:|\nevent:|^data:|\ndata:/.test(b); })) {
              refreshSoon();
            }
            return pump();
          });
        };
        return pump();
      })
      .catch(function () { /* ended, refused or aborted: poll instead */ })
      .then(function () {
        if (silence) clearTimeout(silence);
        if (ctrl === mine) fallBack();
      });
  }

  mode("polling");
  connect();
  // A new token (entered in the page) may open what the old one could not.
  window.addEventListener("storage", function () { if (ctrl) ctrl.abort(); });
})();
