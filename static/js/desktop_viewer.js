// The desktop viewer page: noVNC's RFB client on the WebSocket the server put in
// data-socket (through the preview gateway). View-only streams are refused input by the
// VNC server itself; viewOnly here only stops the page from sending it.
import RFB from "/v1/desktop/viewer-assets/core/rfb.js";

const screen = document.getElementById("desktop-screen");
const status = document.getElementById("desktop-status");

function show(state, text) {
  document.body.dataset.state = state;
  status.textContent = text;
}

const rfb = new RFB(screen, screen.dataset.socket);
rfb.viewOnly = screen.dataset.viewOnly === "1";
rfb.scaleViewport = true;
rfb.background = "#1b1b1f";
rfb.addEventListener("connect", () => {
  show("connected", rfb.viewOnly ? "Live (view only)" : "Live");
});
rfb.addEventListener("disconnect", (event) => {
  show("disconnected", event.detail.clean ? "Stream ended" : "Connection lost; reload to retry");
});
