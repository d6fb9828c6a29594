// Run page: the log streams in over server-sent events (pushed by the server as lines land);
// without JavaScript the page still shows every line recorded when it was loaded.
(function () {
  "use strict";

  function wireLog() {
    var log = document.getElementById("run-log");
    if (!log || log.dataset.live !== "1" || !window.EventSource) return;
    var url = log.dataset.streamUrl + "?after=" + encodeURIComponent(log.dataset.after || "0");
    var source = new EventSource(url);
    source.addEventListener("log", function (message) {
      var event = JSON.parse(message.data);
      var empty = log.querySelector(".log-empty");
      if (empty) empty.remove();
      var line = document.createElement("span");
      line.className = "log-line log-" + event.source +
        (event.level === "error" || event.level === "warn" ? " log-" + event.level : "");
      var time = new Date(event.created_at).toTimeString().slice(0, 8);
      line.textContent = time + " " + event.message + "\n";
      var atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
      log.appendChild(line);
      if (atBottom) log.scrollTop = log.scrollHeight;
    });
    source.addEventListener("end", function (message) {
      source.close();
      var run = JSON.parse(message.data);
      var badge = document.getElementById("run-status");
      if (badge && run.status) {
        badge.textContent = run.status.replace("_", " ");
        badge.className = "badge agent-" + run.status;
      }
      log.dataset.live = "0";
      // The final state and the outputs are rendered by the server: load them once.
      window.location.reload();
    });
  }

  document.addEventListener("DOMContentLoaded", wireLog);
})();
