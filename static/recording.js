// recording.js is the recording page's script (an ES module): it plays the
// recording at #recording-player's data-src with asciinema-player.
//
// The player is vendored as one classic script that defines the global
// AsciinemaPlayer; this loads it from its fixed, versioned path (see
// static.go) when the page has not. Its terminal emulator is WebAssembly,
// so the page's CSP must allow 'wasm-unsafe-eval' in script-src.
//
// Tests read window.switchboardPlayer.
const playerScript = "/static/vendor/asciinema-player-3.18.0/asciinema-player.min.js";

let loading = null;

function loadPlayer() {
  if (window.AsciinemaPlayer) {
    return Promise.resolve(window.AsciinemaPlayer);
  }
  if (!loading) {
    loading = new Promise((resolve, reject) => {
      const s = document.createElement("script");
      s.src = playerScript;
      s.onload = () => (window.AsciinemaPlayer ? resolve(window.AsciinemaPlayer) : reject(new Error("no AsciinemaPlayer")));
      s.onerror = () => reject(new Error("could not load " + playerScript));
      document.head.appendChild(s);
    }).catch((err) => {
      loading = null;
      throw err;
    });
  }
  return loading;
}

let current = null; // { el, player } of the page shown

function start(el) {
  const entry = { el, player: null, gone: false };
  el.replaceChildren(); // a page restored from htmx's history
  loadPlayer().then(
    (AP) => {
      if (entry.gone) {
        return;
      }
      entry.player = AP.create(el.dataset.src, el, { fit: "width" });
      window.switchboardPlayer = entry.player;
    },
    () => {
      el.textContent = "The player could not be loaded. Reload the page to try again.";
    },
  );
  return entry;
}

function stop(entry) {
  entry.gone = true;
  if (entry.player) {
    try {
      entry.player.dispose();
    } catch (err) {
      // already gone
    }
    if (window.switchboardPlayer === entry.player) {
      delete window.switchboardPlayer;
    }
  }
}

// The page may arrive and leave by boosted (htmx) navigations, which run a
// module once per document: so the script follows #recording-player.
function sync() {
  const el = document.getElementById("recording-player");
  if (current && current.el !== el) {
    stop(current);
    current = null;
  }
  if (el && !current && el.dataset.src) {
    current = start(el);
  }
}

new MutationObserver(sync).observe(document.documentElement, { childList: true, subtree: true });
sync();
