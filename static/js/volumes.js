// Volume file browser: uploads with a progress bar (the form still works without JavaScript).
(function () {
  "use strict";

  function refreshFiles() {
    var section = document.getElementById("volume-files");
    if (!section || !window.htmx) { window.location.reload(); return; }
    window.htmx.ajax("GET", section.dataset.filesUrl, { target: "#volume-files", swap: "outerHTML" });
  }

  function wireUpload(form) {
    if (form.dataset.wired) return;
    form.dataset.wired = "1";
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var input = form.querySelector("input[type=file]");
      var bar = form.querySelector("progress");
      var status = form.querySelector(".upload-status");
      var limit = Number(form.dataset.maxBytes || 0);
      var files = Array.prototype.slice.call(input.files || []);
      var tooBig = files.filter(function (file) { return limit && file.size > limit; });
      if (tooBig.length) {
        status.textContent = tooBig[0].name + " is over the upload limit.";
        return;
      }
      var request = new XMLHttpRequest();
      request.open("POST", form.action);
      request.setRequestHeader("HX-Request", "true");  // the server answers with the fragment
      request.upload.addEventListener("progress", function (progress) {
        if (!progress.lengthComputable) return;
        bar.hidden = false;
        bar.value = Math.round((progress.loaded / progress.total) * 100);
        status.textContent = bar.value + " %";
      });
      request.addEventListener("load", function () {
        var trigger = request.getResponseHeader("HX-Trigger");
        if (trigger) {
          try {
            var messages = JSON.parse(trigger).messages || [];
            document.dispatchEvent(new CustomEvent("messages", { detail: messages }));
          } catch (ignored) { /* not JSON: nothing to show */ }
        }
        if (request.status >= 400) status.textContent = "Upload failed (" + request.status + ").";
        refreshFiles();
        document.body.dispatchEvent(new CustomEvent("volume-changed"));
      });
      request.addEventListener("error", function () { status.textContent = "Upload failed: connection lost."; });
      bar.hidden = false;
      bar.value = 0;
      request.send(new FormData(form));
    });
  }

  function wireAll() {
    document.querySelectorAll("form.upload-form#volume-upload").forEach(wireUpload);
  }
  document.addEventListener("DOMContentLoaded", wireAll);
  document.addEventListener("htmx:afterSettle", wireAll);
})();
