// Console niceties on top of working HTML: toasts for htmx `messages` events, copy buttons.
(function () {
  "use strict";

  function toast(text, level) {
    var box = document.getElementById("toasts");
    if (!box) return;
    var item = document.createElement("div");
    item.className = "toast toast-" + (level || "info");
    item.setAttribute("role", "status");
    item.textContent = text;
    box.appendChild(item);
    setTimeout(function () { item.remove(); }, 5000);
  }

  // HtmxMessagesMiddleware sends HX-Trigger: {"messages": [{level, text}, ...]}.
  document.addEventListener("messages", function (event) {
    var list = Array.isArray(event.detail) ? event.detail : (event.detail && event.detail.value) || [];
    list.forEach(function (message) { toast(message.text, message.level); });
  });

  // htmx 2 does not swap 4xx/5xx responses: say so instead of failing silently.
  document.addEventListener("htmx:responseError", function (event) {
    var status = event.detail.xhr.status;
    toast(status === 403 ? "Your role does not allow this." :
          status === 404 ? "That no longer exists. Reload the page." :
          "Something went wrong (" + status + "). Try again.", "error");
  });

  // Copy buttons are hidden without JavaScript; reveal them and wire them up.
  function wireCopyButtons(root) {
    root.querySelectorAll("button.copy[data-copy-target]").forEach(function (button) {
      button.hidden = false;
      if (button.dataset.wired) return;
      button.dataset.wired = "1";
      button.addEventListener("click", function () {
        var source = document.querySelector(button.dataset.copyTarget);
        if (!source) return;
        var text = source.tagName === "INPUT" ? source.value : source.textContent;
        navigator.clipboard.writeText(text).then(function () {
          button.textContent = "Copied";
          setTimeout(function () { button.textContent = "Copy"; }, 1500);
        }, function () {
          if (source.select) source.select();
          toast("Press Ctrl+C to copy.", "info");
        });
      });
    });
  }

  // Secrets shown once select themselves on focus (was an inline onfocus, refused by CSP).
  document.addEventListener("focusin", function (event) {
    var target = event.target;
    if (target && target.matches && target.matches("input[data-select-on-focus]")) target.select();
  });

  // outerHTML swaps replace the element htmx reports, so rescan the document (a few buttons at most).
  document.addEventListener("DOMContentLoaded", function () { wireCopyButtons(document); });
  document.addEventListener("htmx:afterSettle", function () { wireCopyButtons(document); });
})();
