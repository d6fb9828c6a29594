// Sandbox page: the exec box streams over the console WebSocket, the metrics chart polls
// a small JSON endpoint. Both sit on top of working HTML (the exec form still POSTs
// without JavaScript, or when the socket cannot open).
(function () {
  "use strict";

  function changed(name) {
    document.body.dispatchEvent(new CustomEvent(name, { bubbles: true }));
  }

  function wireExec() {
    var form = document.getElementById("exec-form");
    if (!form || form.dataset.wired || !window.WebSocket) return;
    form.dataset.wired = "1";
    var output = document.getElementById("exec-output");
    var input = form.querySelector("input[name=command]");
    var run = document.getElementById("exec-run");
    var stop = document.getElementById("exec-stop");
    var socket = null, running = false, fresh = true, history = [], back = 0;

    function append(text, cls) {
      var span = document.createElement("span");
      if (cls) span.className = cls;
      span.textContent = text;
      output.appendChild(span);
      output.scrollTop = output.scrollHeight;
    }
    function setRunning(on) {
      running = on;
      run.disabled = on;
      stop.hidden = !on;
    }
    function onFrame(event) {
      var frame = JSON.parse(event.data);
      if (frame.type === "exec_started") {
        changed("processes-changed");
      } else if (frame.type === "exec_stdout") {
        append(frame.data);
      } else if (frame.type === "exec_stderr") {
        append(frame.data, "term-err");
      } else if (frame.type === "exec_truncated") {
        append("[output truncated: past " + frame.limit_bytes + " bytes it is not kept]\n", "term-err");
      } else if (frame.type === "exec_exit") {
        append("[exit " + frame.exit_code + "]\n", "term-exit" + (frame.exit_code ? " failed" : ""));
        setRunning(false);
        changed("processes-changed");
      } else if (frame.type === "error") {
        append(frame.message + "\n", "term-err");
        setRunning(false);
      }
    }
    function connect(then, fallback) {
      var opened = false;
      var scheme = location.protocol === "https:" ? "wss://" : "ws://";
      socket = new WebSocket(scheme + location.host + form.dataset.execSocket);
      socket.onopen = function () { opened = true; then(); };
      socket.onmessage = onFrame;
      socket.onclose = function () {
        socket = null;
        if (!opened) return fallback();
        if (running) { append("[connection closed]\n", "term-err"); setRunning(false); }
      };
    }

    form.addEventListener("submit", function (event) {
      var command = input.value.trim();
      if (!command) return event.preventDefault();
      event.preventDefault();
      if (running) return;
      if (fresh) { output.textContent = ""; fresh = false; }
      history.push(command);
      back = history.length;
      append("$ " + command + "\n", "term-cmd");
      input.value = "";
      setRunning(true);
      var send = function () { socket.send(JSON.stringify({ type: "exec_start", command: command })); };
      if (socket && socket.readyState === WebSocket.OPEN) return send();
      connect(send, function () {
        input.value = command;
        form.submit();
      });
    });
    stop.addEventListener("click", function () {
      if (socket) socket.send(JSON.stringify({ type: "exec_kill" }));
    });
    input.addEventListener("keydown", function (event) {
      if (event.key !== "ArrowUp" && event.key !== "ArrowDown") return;
      back = Math.max(0, Math.min(history.length, back + (event.key === "ArrowUp" ? -1 : 1)));
      input.value = history[back] || "";
      event.preventDefault();
    });
  }

  var SAMPLES = 60, WIDTH = 300, HEIGHT = 120;

  function polyline(values) {
    var step = WIDTH / (SAMPLES - 1), offset = SAMPLES - values.length;
    return values.map(function (value, i) {
      var y = HEIGHT - 2 - (Math.max(0, Math.min(value, 100)) / 100) * (HEIGHT - 4);
      return ((offset + i) * step).toFixed(1) + "," + y.toFixed(1);
    }).join(" ");
  }

  function wireMetrics() {
    var card = document.getElementById("metrics");
    if (!card || card.dataset.wired) return;
    card.dataset.wired = "1";
    var cpu = [], mem = [];
    var cpuLine = card.querySelector(".line-cpu"), memLine = card.querySelector(".line-mem");
    var cpuText = document.getElementById("metric-cpu"), memText = document.getElementById("metric-mem");
    var note = document.getElementById("metric-note");

    // Samples are taken only while the sandbox runs; a paused page asks for nothing
    // until the live socket says the sandbox changed (live.js fires sandbox-changed).
    var polling = false;
    function later() { polling = true; setTimeout(tick, 2000); }
    function tick() {
      polling = true;
      if (document.hidden) return later();
      fetch(card.dataset.metricsUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (body) {
          if (!body) return later();
          var sample = body.sample;
          if (sample) {
            var memPercent = sample.mem_total_bytes ? 100 * sample.mem_used_bytes / sample.mem_total_bytes : 0;
            cpu.push(sample.cpu_percent);
            mem.push(memPercent);
            if (cpu.length > SAMPLES) { cpu.shift(); mem.shift(); }
            cpuLine.setAttribute("points", polyline(cpu));
            memLine.setAttribute("points", polyline(mem));
            cpuText.textContent = sample.cpu_percent.toFixed(1) + " %";
            memText.textContent = (sample.mem_used_bytes / 1048576).toFixed(1) + " MiB";
            note.textContent = "sampling every 2 s";
          } else {
            cpuText.textContent = memText.textContent = "–";
            note.textContent = body.status + ": no samples";
          }
          if (body.status === "running") later();
          else polling = false;
        })
        .catch(later);
    }
    document.body.addEventListener("sandbox-changed", function () { if (!polling) tick(); });
    tick();
  }

  function wire() { wireExec(); wireMetrics(); }
  document.addEventListener("DOMContentLoaded", wire);
  // htmx swaps the exec box for its no-JS answer only on a plain POST; rewire if it ever does.
  document.addEventListener("htmx:afterSettle", wire);
})();
