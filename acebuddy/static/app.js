// AceBuddy's only hand-written script: the CSP forbids inline scripts, so page wiring lives here.
// Every htmx request carries the CSRF token from the page's meta tag.
document.addEventListener("htmx:configRequest", function (event) {
  var meta = document.querySelector('meta[name="csrf-token"]');
  if (meta) {
    event.detail.headers["X-CSRFToken"] = meta.content;
  }
});

// The live dashboard ([data-live], templates/dashboard/_layout.html). Regions refresh on server-sent
// events; while the stream is down they are refreshed by a "live-poll" event every few seconds, and once
// when it (re)opens, so nothing that happened meanwhile is missed.
(function () {
  var POLL_MS = 3000;
  var TICK_MS = 5000;
  var streamOpen = false;
  var skew = 0; // server clock minus this browser's clock, for the "waiting" times

  function liveRoot() {
    return document.querySelector("[data-live]");
  }

  function setOpen(open) {
    streamOpen = open;
    var root = liveRoot();
    if (root) {
      root.classList.toggle("live-open", open);
      root.classList.toggle("live-down", !open);
    }
  }

  function poll() {
    if (liveRoot() && window.htmx) {
      htmx.trigger(document.body, "live-poll");
    }
  }

  document.addEventListener("htmx:sseOpen", function () {
    setOpen(true);
    poll();
  });
  document.addEventListener("htmx:sseError", function () {
    setOpen(false);
  });
  setInterval(function () {
    if (!streamOpen) {
      poll();
    }
  }, POLL_MS);

  function elapsed(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    if (seconds < 60) return seconds + " s";
    var minutes = Math.floor(seconds / 60);
    if (minutes < 60) return minutes + " min";
    var hours = Math.floor(minutes / 60);
    minutes = minutes % 60;
    if (hours < 24) return minutes ? hours + " h " + minutes + " min" : hours + " h";
    return Math.floor(hours / 24) + " d " + (hours % 24) + " h";
  }

  function tick() {
    var now = Date.now() + skew;
    document.querySelectorAll("[data-since]").forEach(function (el) {
      var since = Date.parse(el.getAttribute("data-since"));
      if (!isNaN(since)) {
        el.textContent = elapsed((now - since) / 1000);
      }
    });
  }
  setInterval(tick, TICK_MS);

  // The alert region (#alerts): its data-latest marker grows with each escalation. Whenever it grows while
  // the page is open and a new escalation is shown, the chime plays once. Watched through DOM mutations,
  // so it does not matter which of several quick refreshes brought the change.
  var heard = null;

  function play(url) {
    try {
      var played = new Audio(url).play();
      if (played && played.catch) {
        played.catch(function () { /* the browser blocks sound until the page was clicked */ });
      }
    } catch (e) { /* no audio support */ }
  }

  // The number of chats waiting for a person leads the page title: "(2) Conversations · AceBuddy".
  function updateTitle(alerts) {
    var waiting = parseInt(alerts.getAttribute("data-waiting") || "0", 10) || 0;
    var base = document.title.replace(/^\(\d+\) /, "");
    var title = waiting > 0 ? "(" + waiting + ") " + base : base;
    if (document.title !== title) document.title = title;
  }

  function checkAlerts() {
    var alerts = document.getElementById("alerts");
    if (!alerts) return;
    updateTitle(alerts);
    var latest = parseInt(alerts.getAttribute("data-latest") || "0", 10) || 0;
    if (heard === null || latest <= heard) {
      heard = heard === null ? latest : heard;
      return;
    }
    heard = latest;
    if (alerts.querySelector(".alert-new")) {
      play(alerts.getAttribute("data-alert-sound"));
    }
  }

  var watching = false;

  function onLoad() {
    var live = liveRoot();
    if (!live) return;
    if (!watching) {
      watching = true;
      var serverNow = Date.parse(live.getAttribute("data-server-now") || "");
      if (!isNaN(serverNow)) skew = serverNow - Date.now();
      new MutationObserver(checkAlerts).observe(live, {childList: true, subtree: true});
    }
    checkAlerts();
  }

  if (window.htmx) {
    htmx.onLoad(onLoad);
  }
})();
