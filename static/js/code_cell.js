// The sandbox page's code cell: posts the code and reads the server-sent events of the
// run as they arrive (stdout, stderr, results, errors, artifacts). Without JavaScript
// the form still POSTs and the page shows the output when the code ends.
// HTML results (a pandas table) are rebuilt from a short list of tags, text only: the
// sandbox's HTML never runs in the console's page.
(function () {
  "use strict";

  var SAFE_TAGS = {
    TABLE: 1, THEAD: 1, TBODY: 1, TFOOT: 1, TR: 1, TH: 1, TD: 1, CAPTION: 1,
    P: 1, DIV: 1, SPAN: 1, B: 1, I: 1, STRONG: 1, EM: 1, CODE: 1, PRE: 1, BR: 1,
    UL: 1, OL: 1, LI: 1, H1: 1, H2: 1, H3: 1, H4: 1, H5: 1, H6: 1
  };

  function rebuild(source, target) {
    source.childNodes.forEach(function (node) {
      if (node.nodeType === Node.TEXT_NODE) {
        target.appendChild(document.createTextNode(node.textContent));
      } else if (node.nodeType === Node.ELEMENT_NODE && SAFE_TAGS[node.tagName]) {
        var copy = document.createElement(node.tagName.toLowerCase());
        ["colspan", "rowspan"].forEach(function (name) {
          var value = node.getAttribute(name);
          if (value && /^\d{1,3}$/.test(value)) copy.setAttribute(name, value);
        });
        rebuild(node, copy);
        target.appendChild(copy);
      }
    });
  }

  function safeHtml(html) {
    // Styles would be dropped by rebuild() anyway; taking them out first keeps the parser
    // from reporting them against the page's Content-Security-Policy.
    var plain = html.replace(/<style[\s\S]*?<\/style>/gi, "").replace(/\sstyle\s*=\s*("[^"]*"|'[^']*'|[^\s>]+)/gi, "");
    var parsed = new DOMParser().parseFromString(plain, "text/html");
    var box = document.createElement("div");
    box.className = "code-html";
    rebuild(parsed.body, box);
    return box;
  }

  function wire() {
    var form = document.getElementById("code-form");
    if (!form || form.dataset.wired || !window.fetch || !window.TextDecoder) return;
    form.dataset.wired = "1";
    var output = document.getElementById("code-output");
    var status = document.getElementById("code-status");
    var run = document.getElementById("code-run");
    var source = document.getElementById("code-source");
    var stop = document.getElementById("code-stop");
    var running = null; // the AbortController of the run being shown

    function pre(text, cls) {
      var last = output.lastElementChild;
      if (last && last.tagName === "PRE" && last.className === cls) {
        last.textContent += text; // stream chunks of one kind join up
      } else {
        var block = document.createElement("pre");
        block.className = cls;
        block.textContent = text;
        output.appendChild(block);
      }
    }

    function image(mime, data) {
      var img = document.createElement("img");
      img.className = "code-image";
      img.alt = "Figure";
      img.src = "data:" + mime + ";base64," + data;
      output.appendChild(img);
    }

    function show(event) {
      if (event.type === "stdout") pre(event.text, "code-stdout");
      else if (event.type === "stderr") pre(event.text, "code-stderr");
      else if (event.type === "error") pre(event.traceback || event.name + ": " + event.value, "code-stderr");
      else if (event.type === "result") {
        if (event.png) image("image/png", event.png);
        else if (event.jpeg) image("image/jpeg", event.jpeg);
        else if (event.html) output.appendChild(safeHtml(event.html));
        else if (event.text) pre(event.text, "code-result");
      } else if (event.type === "artifact" && event.artifact) {
        var note = document.createElement("p");
        note.className = "muted small code-artifact";
        note.textContent = "Artifact " + event.artifact.id + ": " + event.artifact.name +
          " (" + event.artifact.mime_type + ", " + event.artifact.size_bytes + " bytes)";
        output.appendChild(note);
      } else if (event.type === "number_of_executions") {
        status.textContent = "Running [" + event.execution_count + "]…";
      }
    }

    function parse(block) {
      block.split("\n").forEach(function (line) {
        if (line.indexOf("data: ") === 0) show(JSON.parse(line.slice(6)));
      });
    }

    function finish(text) {
      run.disabled = false;
      stop.hidden = true;
      running = null;
      status.textContent = text;
    }

    // Leaving the stream is what stops the code: the server interrupts the kernel then.
    stop.addEventListener("click", function () {
      if (running) running.abort();
    });

    form.addEventListener("submit", function (submit) {
      submit.preventDefault();
      if (run.disabled) return;
      run.disabled = true;
      stop.hidden = false;
      output.textContent = "";
      status.textContent = "Starting…";
      running = new AbortController();
      fetch(form.action, {
        method: "POST",
        credentials: "same-origin",
        headers: { Accept: "text/event-stream" },
        body: new FormData(form),
        signal: running.signal
      }).then(function (response) {
        if (!response.ok) {
          return response.json().then(function (body) {
            pre(body.error || ("HTTP " + response.status), "code-stderr");
            finish("Failed");
          });
        }
        var reader = response.body.getReader();
        var decoder = new TextDecoder();
        var pending = "";
        function pump() {
          return reader.read().then(function (chunk) {
            if (chunk.done) {
              if (pending.trim()) parse(pending);
              finish("Done");
              return;
            }
            pending += decoder.decode(chunk.value, { stream: true });
            var blocks = pending.split("\n\n");
            pending = blocks.pop();
            blocks.forEach(parse);
            return pump();
          });
        }
        return pump();
      }).catch(function (error) {
        finish(error && error.name === "AbortError" ? "Stopped" : "The connection was lost");
      });
    });

    source.addEventListener("keydown", function (key) {
      if (key.key === "Enter" && (key.ctrlKey || key.metaKey || key.shiftKey)) {
        key.preventDefault();
        form.requestSubmit();
      }
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", wire);
  else wire();
  document.addEventListener("htmx:afterSettle", wire);
})();
