// remote-desktop.js is the remote desktop page's script (an ES module): it
// shows a Client's VNC service in #remote-desktop with noVNC.
//
// The page's WebSocket (data-socket, on the page's own origin) carries the
// RFB protocol; this script opens it itself and hands it to noVNC's RFB as
// its channel, so it can read the close event's reason: the gateway closes
// with a code 4000–4999 and a sentence for the operator ("Session ended by
// admin alice"), shown in #remote-status. The VNC password goes to the VNC
// server only and is never kept.
//
// Tests read document.body.dataset.remoteState ("connecting", "connected",
// "disconnected") and window.switchboardRFB.
//
// noVNC is served at its fixed, versioned path (see static.go): its modules
// import each other relatively.
import RFB from "/static/vendor/novnc-1.7.0/core/rfb.js";

const $ = (id) => document.getElementById(id);

// socketURL is the page's WebSocket URL: data-socket's path, always on
// the page's own origin.
export function socketURL(path) {
  const u = new URL(path, window.location.href);
  u.protocol = window.location.protocol === "https:" ? "wss:" : "ws:";
  u.host = window.location.host;
  return u.href;
}

let current = null; // { el, rfb, ws, stop } of the page shown

function setState(state) {
  document.body.dataset.remoteState = state;
}

function say(text) {
  const status = $("remote-status");
  if (status) {
    status.textContent = text;
  }
}

function start(el) {
  const client = el.dataset.client || "";
  const service = el.dataset.service || "";
  const passForm = $("vnc-password-form");
  const passInput = $("vnc-password");
  const viewOnly = $("vnc-view-only");
  const scale = $("vnc-scale");
  const clip = $("vnc-clipboard");

  setState("connecting");
  say("Connecting to " + client + " " + service + "…");

  // A page restored from htmx's history holds the last session's screen.
  el.replaceChildren();
  const ws = new WebSocket(socketURL(el.dataset.socket));
  ws.binaryType = "arraybuffer";
  // Added before RFB sets ws.onclose, so the reason is known when RFB
  // reports the disconnect.
  let closeReason = "";
  ws.addEventListener("close", (e) => {
    closeReason = e.reason || "";
  });
  let failure = "";

  const rfb = new RFB(el, ws, {});
  rfb.scaleViewport = scale ? scale.checked : true;
  rfb.viewOnly = viewOnly ? viewOnly.checked : false;
  rfb.resizeSession = false;
  window.switchboardRFB = rfb;

  rfb.addEventListener("connect", () => {
    if (passForm) {
      passForm.hidden = true;
    }
    setState("connected");
    say("Connected");
    rfb.focus();
  });
  rfb.addEventListener("disconnect", () => {
    if (passForm) {
      passForm.hidden = true;
    }
    setState("disconnected");
    say(closeReason || failure || "Disconnected");
  });
  rfb.addEventListener("securityfailure", (e) => {
    const d = e.detail || {};
    failure = d.reason ? "Authentication failed: " + d.reason : "Authentication failed";
    say(failure);
  });
  rfb.addEventListener("credentialsrequired", () => {
    if (!passForm) {
      return;
    }
    passForm.hidden = false;
    say("The remote desktop asks for its password");
    if (passInput) {
      passInput.focus();
    }
  });

  const handlers = [];
  const bind = (node, type, fn) => {
    if (node) {
      const capture = node === document;
      node.addEventListener(type, fn, capture);
      handlers.push([node, type, fn, capture]);
    }
  };

  // Caught on the way down, before any listener of the form's own (htmx
  // boosts forms): the password goes only to the VNC server.
  bind(document, "submit", (e) => {
    if (!passForm || e.target !== passForm) {
      return;
    }
    e.preventDefault();
    e.stopImmediatePropagation();
    const password = passInput ? passInput.value : "";
    if (passInput) {
      passInput.value = "";
    }
    passForm.hidden = true;
    say("Connecting to " + client + " " + service + "…");
    rfb.sendCredentials({ password: password });
  });
  bind($("vnc-ctrl-alt-del"), "click", () => {
    rfb.sendCtrlAltDel();
    rfb.focus();
  });
  bind($("vnc-fullscreen"), "click", () => {
    if (document.fullscreenElement === el) {
      document.exitFullscreen();
    } else if (el.requestFullscreen) {
      el.requestFullscreen().then(() => rfb.focus(), () => {});
    }
  });
  bind(viewOnly, "change", () => {
    rfb.viewOnly = viewOnly.checked;
  });
  bind(scale, "change", () => {
    rfb.scaleViewport = scale.checked;
  });
  bind($("vnc-clipboard-send"), "click", () => {
    if (clip && clip.value) {
      rfb.clipboardPasteFrom(clip.value);
      rfb.focus();
    }
  });

  function stop() {
    for (const [node, type, fn, capture] of handlers) {
      node.removeEventListener(type, fn, capture);
    }
    try {
      rfb.disconnect();
    } catch (err) {
      // already disconnected
    }
    if (window.switchboardRFB === rfb) {
      delete window.switchboardRFB;
    }
  }
  return { el, rfb, ws, stop };
}

// The page may arrive by a boosted (htmx) navigation, which runs a module
// once per document, and leave the same way, which must end the session:
// so the script follows #remote-desktop coming and going.
function sync() {
  const el = $("remote-desktop");
  if (current && current.el !== el) {
    current.stop();
    current = null;
  }
  if (el && !current && el.dataset.socket) {
    current = start(el);
  }
}

new MutationObserver(sync).observe(document.documentElement, { childList: true, subtree: true });
sync();
