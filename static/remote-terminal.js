// remote-terminal.js is the terminal page's script (an ES module): an SSH
// session to a Client's service in #remote-terminal, with xterm.js.
//
// The WebSocket (data-socket, on the page's own origin) opens only when the
// sign-in form (#ssh-login) is sent. Its protocol:
//   browser → gateway: first one text message
//     {"type":"auth","user","password","key","passphrase","cols","rows"},
//     then binary terminal input and text {"type":"resize","cols","rows"};
//   gateway → browser: binary terminal output, and text
//     {"type":"hostkey","algorithm","fingerprint","new"}, {"type":"ready"},
//     {"type":"error","code","message"}, {"type":"ended","message"}.
// The password, key and passphrase go into that one message and nowhere
// else: their fields are cleared as it is sent.
//
// Tests read document.body.dataset.remoteState ("connecting", "connected",
// "error", "ended", "disconnected") and window.switchboardTerm.
//
// xterm.js and its fit addon are served at their fixed, versioned paths
// (see static.go).
import { Terminal } from "/static/vendor/xterm-6.0.0/xterm.mjs";
import { FitAddon } from "/static/vendor/xterm-addon-fit-0.11.0/addon-fit.mjs";

const $ = (id) => document.getElementById(id);

// --- xterm.js under the console's CSP (style-src 'self') --------------
//
// xterm's DOM renderer puts its generated rules (cell size, theme colours)
// in <style> elements and sets some colours with setAttribute("style"),
// both of which the CSP refuses. The same rules are applied through the
// CSSOM instead, which the CSP allows. While the terminal opens (when it
// makes its <style> elements), document.createElement("style") gives an
// inert <template> whose text goes into a constructed stylesheet adopted
// by the document; and a style attribute set by script becomes
// style.cssText. Neither lets markup in a page carry styles: they only
// change how script already running applies them.
function cspSafeAttributes() {
  if (cspSafeAttributes.done) {
    return;
  }
  cspSafeAttributes.done = true;
  const setAttribute = Element.prototype.setAttribute;
  Element.prototype.setAttribute = function (name, value) {
    if (String(name).toLowerCase() === "style" && this.style) {
      this.style.cssText = String(value);
      return;
    }
    setAttribute.call(this, name, value);
  };
}

// withAdoptedStyles runs fn with <style> elements made as said above.
function withAdoptedStyles(fn) {
  if (!("adoptedStyleSheets" in Document.prototype)) {
    return fn();
  }
  const createElement = Document.prototype.createElement;
  Document.prototype.createElement = function (tag, options) {
    if (String(tag).toLowerCase() === "style") {
      return adoptedStyle(this);
    }
    return createElement.call(this, tag, options);
  };
  try {
    return fn();
  } finally {
    Document.prototype.createElement = createElement;
  }
}

function adoptedStyle(doc) {
  const el = Document.prototype.createElement.call(doc, "template");
  el.className = "xterm-adopted-style";
  const sheet = new (doc.defaultView || window).CSSStyleSheet();
  let text = "";
  let adopted = false;
  Object.defineProperty(el, "textContent", {
    configurable: true,
    get: () => text,
    set: (v) => {
      text = v == null ? "" : String(v);
      sheet.replaceSync(text);
      if (!adopted) {
        doc.adoptedStyleSheets = [...doc.adoptedStyleSheets, sheet];
        adopted = true;
      }
    },
  });
  el.remove = function () {
    doc.adoptedStyleSheets = doc.adoptedStyleSheets.filter((s) => s !== sheet);
    adopted = false;
    return Element.prototype.remove.call(this);
  };
  return el;
}

// --- the page -----------------------------------------------------------

function socketURL(path) {
  const u = new URL(path, window.location.href);
  u.protocol = window.location.protocol === "https:" ? "wss:" : "ws:";
  u.host = window.location.host;
  return u.href;
}

function setState(state) {
  document.body.dataset.remoteState = state;
}

function say(text) {
  const status = $("remote-status");
  if (status) {
    status.textContent = text;
  }
}

// warn shows (text) or takes away (null) the prominent host key warning.
function warn(text) {
  let w = $("ssh-warning");
  if (text == null) {
    if (w) {
      w.hidden = true;
      w.textContent = "";
    }
    return;
  }
  if (!w) {
    w = document.createElement("div");
    w.id = "ssh-warning";
    w.className = "flash error";
    w.setAttribute("role", "alert");
    const status = $("remote-status");
    const form = $("ssh-login");
    const before = status || form;
    if (before && before.parentNode) {
      before.parentNode.insertBefore(w, before);
    } else {
      document.body.prepend(w);
    }
  }
  w.textContent = text;
  w.hidden = false;
}

let current = null; // { el, stop } of the page shown

function start(el) {
  cspSafeAttributes();
  const client = el.dataset.client || "";
  const service = el.dataset.service || "";
  const form = $("ssh-login");
  const hostkey = $("ssh-hostkey");
  const field = (id) => $(id) || { value: "" };

  el.replaceChildren(); // a page restored from htmx's history
  const term = new Terminal({
    cursorBlink: true,
    scrollback: 5000,
    convertEol: false,
    fontFamily: 'ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace',
    fontSize: 14,
  });
  const fit = new FitAddon();
  term.loadAddon(fit);
  withAdoptedStyles(() => term.open(el));
  window.switchboardTerm = term;

  const refit = () => {
    if (el.offsetWidth > 0 && el.offsetHeight > 0) {
      try {
        fit.fit();
      } catch (err) {
        // not laid out yet
      }
    }
  };
  refit();
  const observer = new ResizeObserver(refit);
  observer.observe(el);
  window.addEventListener("resize", refit);

  let ws = null;
  let ready = false;
  let user = "";
  let sentSize = "";
  let settled = false; // an error or ended message said why it stops
  const encoder = new TextEncoder();

  const send = (data) => {
    if (ws && ws.readyState === WebSocket.OPEN) {
      ws.send(data);
    }
  };
  const sendResize = () => {
    const size = term.cols + "x" + term.rows;
    if (ready && size !== sentSize) {
      sentSize = size;
      send(JSON.stringify({ type: "resize", cols: term.cols, rows: term.rows }));
    }
  };
  const disposers = [
    term.onData((s) => {
      if (ready) {
        send(encoder.encode(s));
      }
    }),
    term.onBinary((s) => {
      if (ready) {
        const b = new Uint8Array(s.length);
        for (let i = 0; i < s.length; i++) {
          b[i] = s.charCodeAt(i) & 0xff;
        }
        send(b);
      }
    }),
    term.onResize(sendResize),
  ];

  const showForm = () => {
    if (form) {
      form.hidden = false;
    }
  };

  function onText(m) {
    switch (m.type) {
      case "hostkey":
        if (hostkey) {
          const fp = String(m.fingerprint || "");
          hostkey.textContent = m.new
            ? "First connection to this host: its key " + fp + " is now pinned for " + client + "/" + service + "."
            : "Host key " + fp + " matches the pinned key.";
        }
        break;
      case "ready":
        ready = true;
        settled = false;
        if (form) {
          form.hidden = true;
        }
        warn(null);
        setState("connected");
        say("Connected as " + user);
        refit();
        sendResize();
        term.focus();
        break;
      case "error":
        settled = true;
        ready = false;
        say(String(m.message || "The connection failed"));
        if (m.code === "hostkey_changed") {
          warn(String(m.message || "The host key has changed"));
        }
        showForm();
        setState("error");
        break;
      case "ended":
        settled = true;
        ready = false;
        say(String(m.message || "The session ended"));
        showForm();
        setState("ended");
        break;
    }
  }

  function connect(e) {
    e.preventDefault();
    if (ws && (ws.readyState === WebSocket.CONNECTING || ws.readyState === WebSocket.OPEN)) {
      return;
    }
    refit();
    user = field("ssh-user").value;
    let auth = {
      type: "auth",
      user: user,
      password: field("ssh-password").value,
      key: field("ssh-key").value,
      passphrase: field("ssh-passphrase").value,
      cols: term.cols,
      rows: term.rows,
    };
    ready = false;
    settled = false;
    sentSize = term.cols + "x" + term.rows;
    warn(null);
    if (hostkey) {
      hostkey.textContent = "";
    }
    term.reset();
    setState("connecting");
    say("Connecting to " + client + " " + service + "…");

    const sock = new WebSocket(socketURL(el.dataset.socket));
    ws = sock;
    sock.binaryType = "arraybuffer";
    sock.addEventListener("open", () => {
      sock.send(JSON.stringify(auth));
      auth = null;
      for (const id of ["ssh-password", "ssh-key", "ssh-passphrase"]) {
        field(id).value = "";
      }
    });
    sock.addEventListener("message", (ev) => {
      if (ws !== sock) {
        return;
      }
      if (typeof ev.data === "string") {
        let m;
        try {
          m = JSON.parse(ev.data);
        } catch (err) {
          return;
        }
        if (m && typeof m === "object") {
          onText(m);
        }
      } else {
        term.write(new Uint8Array(ev.data));
      }
    });
    sock.addEventListener("close", (ev) => {
      auth = null;
      if (ws !== sock) {
        return;
      }
      ws = null;
      ready = false;
      if (!settled) {
        say(ev.reason || "Disconnected");
        setState("disconnected");
        showForm();
      }
    });
  }

  // Caught on the way down, before any listener of the form's own (htmx
  // boosts forms): the credentials go only into the WebSocket.
  const onSubmit = (e) => {
    if (form && e.target === form) {
      e.stopImmediatePropagation();
      connect(e);
    }
  };
  document.addEventListener("submit", onSubmit, true);

  function stop() {
    document.removeEventListener("submit", onSubmit, true);
    window.removeEventListener("resize", refit);
    observer.disconnect();
    if (ws) {
      const sock = ws;
      ws = null;
      sock.close();
    }
    for (const d of disposers) {
      d.dispose();
    }
    term.dispose();
    if (window.switchboardTerm === term) {
      delete window.switchboardTerm;
    }
  }
  return { el, stop };
}

// The page may arrive by a boosted (htmx) navigation, which runs a module
// once per document, and leave the same way, which must end the session:
// so the script follows #remote-terminal coming and going.
function sync() {
  const el = $("remote-terminal");
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
