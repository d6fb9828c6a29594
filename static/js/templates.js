// Build page: the log streams in over server-sent events as lines land; each step is a
// phase of its own; the view follows the tail unless the reader scrolled up. Without
// JavaScript the page shows every entry recorded when it was loaded.
(function () {
  "use strict";

  function phaseBox(log, phase) {
    var boxes = log.querySelectorAll(".build-phase");
    var last = boxes.length ? boxes[boxes.length - 1] : null;
    if (last && last.dataset.phase === phase) return last;
    var box = document.createElement("div");
    box.className = "build-phase";
    box.dataset.phase = phase;
    var title = document.createElement("div");
    title.className = "phase-title";
    title.textContent = phase;
    box.appendChild(title);
    log.appendChild(box);
    return box;
  }

  function wire() {
    var log = document.getElementById("build-log");
    if (!log || log.dataset.live !== "1" || !window.EventSource) return;
    var source = new EventSource(log.dataset.streamUrl + "?after=" + encodeURIComponent(log.dataset.after || "0"));
    source.addEventListener("entry", function (message) {
      var entry = JSON.parse(message.data);
      var empty = log.querySelector(".log-empty");
      if (empty) empty.remove();
      var atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
      var line = document.createElement("span");
      line.className = "log-line lvl-" + entry.level + " kind-" + entry.kind;
      line.textContent = entry.time + " " + entry.message + "\n";
      phaseBox(log, entry.phase).appendChild(line);
      if (atBottom) log.scrollTop = log.scrollHeight;
    });
    source.addEventListener("end", function (message) {
      source.close();
      var status = JSON.parse(message.data).status;
      var badge = document.getElementById("build-status");
      if (badge) {
        badge.textContent = status;
        badge.className = "badge tpl-" + status;
      }
      var cancel = document.getElementById("build-cancel");
      if (cancel) cancel.remove();
      log.dataset.live = "0";
      // The final facts (duration, cache hits, the failure) are the server's: load them once.
      window.location.reload();
    });
  }

  document.addEventListener("DOMContentLoaded", wire);
})();
