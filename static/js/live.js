// Live parts of a console page (console/live.py): an element with
// data-live-socket="<path>" and data-live-event="<name>" holds one WebSocket; each
// {"type": "changed"} it receives fires <name> on <body>, and the page's htmx fragments
// that listen for it (hx-trigger="<name> from:body") re-fetch themselves once. Nothing
// is requested while nothing changes. After a dropped connection the page reconnects
// with backoff and refreshes once, for whatever it missed meanwhile. Listening fragments
// carry hx-sync="this:replace": a change announced while the fragment's previous request
// is in flight restarts it (htmx's default drops that trigger). One change still makes
// a burst (a pause records "requested", then "succeeded"), and a trigger that lands while
// htmx swaps the listening element out is lost; so after the last message of a burst the
// page refreshes once more, when things have settled, and shows the final state.
(function () {
  "use strict";

  var REFUSED = 4403;
  var MAX_BACKOFF_MS = 30000;
  var SETTLED_MS = 750;

  function fire(name) {
    document.body.dispatchEvent(new CustomEvent(name, { bubbles: true }));
  }

  function connect(holder, attempt) {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + location.host + holder.dataset.liveSocket);
    var name = holder.dataset.liveEvent;
    var trailing = null;
    socket.onopen = function () {
      holder.dataset.liveState = "open";
      if (attempt > 0) fire(name);
      attempt = 0;
    };
    socket.onmessage = function (message) {
      var frame;
      try { frame = JSON.parse(message.data); } catch (e) { return; }
      if (frame.type !== "changed") return;
      fire(name);
      clearTimeout(trailing);
      trailing = setTimeout(function () { fire(name); }, SETTLED_MS);
    };
    socket.onclose = function (event) {
      holder.dataset.liveState = "closed";
      if (event.code === REFUSED || !document.body.contains(holder)) return;
      var wait = Math.min(MAX_BACKOFF_MS, 1000 * Math.pow(2, attempt));
      setTimeout(function () { connect(holder, attempt + 1); }, wait);
    };
  }

  function start() {
    if (!window.WebSocket) return;
    document.querySelectorAll("[data-live-socket]").forEach(function (holder) {
      if (holder.dataset.liveState) return;
      holder.dataset.liveState = "connecting";
      connect(holder, 0);
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
