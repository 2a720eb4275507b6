// live.js is the console's only script of its own (the CSP allows no
// inline script). It does four things for every page of the frame
// (web/layout.templ):
//
//  1. Ends a live page whose session is over. When a live stream no longer
//     admits its page (signed out, idle or absolute session timeout,
//     operator disabled or no longer an admin) the server sends a "signin"
//     event (web.LiveEnd) whose data is the sign-in URL and closes the
//     stream; the layout's sse-close stops the EventSource reconnecting,
//     and this sends the page there, taking the stale live data off screen.
//  2. Shows the state of the live stream: "Connection lost — reconnecting…"
//     (#conn-lost, #live.lost, #live-state) from shortly after the stream
//     breaks until it is open again, so a stopped gateway never looks
//     alive.
//  3. Shows the errors of htmx actions where the action was: the server's
//     error fragment (handlers' Console.Error) replaces the action target's
//     content, and with it any earlier success message; an action whose
//     target is the whole page gets it in #shell-flash instead. A request
//     that gets no answer at all says so the same way.
//  4. Small things of the frame: the phone menu, copy buttons
//     (data-copy), and the noun of the header's live Client count
//     ("1 Client", "2 Clients").
(function () {
  "use strict";

  // --- 1 and 2: the live stream -------------------------------------

  var seen = new WeakSet();

  function liveRoot() {
    return document.getElementById("live");
  }

  // setState shows the live stream's state: "live", "lost" or
  // "connecting".
  function setState(state) {
    var root = liveRoot();
    if (!root) {
      return;
    }
    var lost = state === "lost";
    root.classList.toggle("lost", lost);
    var banner = document.getElementById("conn-lost");
    if (banner) {
      banner.hidden = !lost;
    }
    var mark = document.getElementById("live-state");
    if (mark) {
      mark.setAttribute("data-state", state);
      mark.textContent = { live: "Live", lost: "Reconnecting…", connecting: "Connecting…" }[state];
    }
  }

  // Only the stream of the page shown counts: htmx closes the stream of a
  // page swapped away, which is no loss.
  function ours(e) {
    var root = liveRoot();
    return root && e.target === root && document.body.contains(root);
  }

  // htmx's SSE extension announces each EventSource it opens; it fires
  // again when one reconnects, hence the WeakSet.
  document.addEventListener("htmx:sseOpen", function (e) {
    if (ours(e)) {
      window.clearTimeout(lostTimer);
      lostTimer = 0;
      setState("live");
    }
    var source = e.detail && e.detail.source;
    if (!source || seen.has(source)) {
      return;
    }
    seen.add(source);
    source.addEventListener("signin", function (m) {
      var to = String(m.data || "");
      if (to.indexOf("/console/signin") !== 0) {
        to = "/console/signin";
      }
      window.location.assign(to);
    });
  });

  // A stream that is back within lostAfter was a blip (a proxy recycling
  // its connection, say): the mark says "Reconnecting…" at once, the
  // banner and the greyed figures wait that long.
  var lostAfter = 1500;
  var lostTimer = 0;

  document.addEventListener("htmx:sseError", function (e) {
    if (!ours(e) || lostTimer) {
      return;
    }
    var root = liveRoot();
    if (!root.classList.contains("lost")) {
      setState("connecting");
      var mark = document.getElementById("live-state");
      if (mark) {
        mark.textContent = "Reconnecting…";
      }
    }
    lostTimer = window.setTimeout(function () {
      lostTimer = 0;
      if (liveRoot() === root && document.body.contains(root)) {
        setState("lost");
      }
    }, lostAfter);
  });

  // --- 3: errors of htmx actions -------------------------------------

  function escapeText(s) {
    var d = document.createElement("div");
    d.textContent = s;
    return d.innerHTML;
  }

  function errorHTML(msg) {
    return '<div class="flash error" role="alert" data-error="">' + escapeText(msg) + "</div>";
  }

  // wholePage: a target that is the page (a boosted link, a search form
  // that re-renders the body) cannot take a message in place of its
  // content.
  function wholePage(el) {
    return !el || el === document.body || el === document.documentElement ||
      el.id === "live" || el.tagName === "MAIN" || !!el.querySelector("main");
  }

  // A table part cannot hold a message either.
  function tablePart(el) {
    return /^(TABLE|THEAD|TBODY|TFOOT|TR)$/.test(el.tagName);
  }

  function messageArea(target) {
    if (wholePage(target) || tablePart(target)) {
      return document.getElementById("shell-flash") || target;
    }
    return target;
  }

  // Success messages of earlier actions are out of date once another
  // action has failed.
  function clearSuccess() {
    var old = document.querySelectorAll("main .flash.ok");
    for (var i = 0; i < old.length; i++) {
      if (!old[i].closest("[sse-swap]")) {
        old[i].remove();
      }
    }
  }

  function show(area, html) {
    clearSuccess();
    area.innerHTML = html;
    if (area.id === "shell-flash") {
      area.scrollIntoView({ block: "nearest" });
    }
  }

  // A new action starts with no stale page-wide message.
  document.addEventListener("htmx:beforeRequest", function () {
    var flash = document.getElementById("shell-flash");
    if (flash) {
      flash.textContent = "";
    }
  });

  document.addEventListener("htmx:beforeSwap", function (e) {
    var d = e.detail;
    var status = d.xhr ? d.xhr.status : 0;
    if (status < 400) {
      return;
    }
    var body = String(d.serverResponse || "");
    var boosted = d.boosted || (d.requestConfig && d.requestConfig.boosted);
    if (boosted && /<body[\s>]/i.test(body)) {
      // A boosted navigation got a whole error page: show it as the page.
      d.shouldSwap = true;
      return;
    }
    if (body.indexOf('class="flash') < 0) {
      // Not one of ours (a proxy's error page, say): say what happened.
      body = errorHTML("The gateway answered " + status + " " + (d.xhr.statusText || "") + ". Try again, or reload the page.");
    }
    var area = messageArea(d.target);
    d.shouldSwap = true;
    d.target = area;
    d.serverResponse = body;
    d.swapOverride = "innerHTML";
    d.selectOverride = "unset";
    clearSuccess();
  });

  document.addEventListener("htmx:sendError", function (e) {
    var d = e.detail || {};
    var area = messageArea(d.target || (d.requestConfig && d.requestConfig.target));
    show(area, errorHTML("The gateway did not answer, so this may not have been done. Check that it is running; this page reconnects by itself."));
  });

  document.addEventListener("htmx:timeout", function (e) {
    var d = e.detail || {};
    var area = messageArea(d.target);
    show(area, errorHTML("The gateway took too long to answer, so this may not have been done."));
  });

  // --- 4: the frame ---------------------------------------------------

  document.addEventListener("click", function (e) {
    var button = e.target.closest && e.target.closest("header.top button.menu");
    if (!button) {
      return;
    }
    var header = button.closest("header.top");
    var open = !header.classList.contains("open");
    header.classList.toggle("open", open);
    button.setAttribute("aria-expanded", open ? "true" : "false");
  });

  // A button with data-copy="#selector" copies that element's text (the
  // Client page's "switchboard control connect" commands). Where the
  // clipboard is refused, the text is selected for the operator to copy.
  document.addEventListener("click", function (e) {
    var button = e.target.closest && e.target.closest("button[data-copy]");
    if (!button) {
      return;
    }
    var source = document.querySelector(button.getAttribute("data-copy"));
    if (!source) {
      return;
    }
    var text = source.textContent.trim();
    var label = button.getAttribute("data-label") || button.textContent;
    button.setAttribute("data-label", label);
    function said(msg) {
      button.textContent = msg;
      window.setTimeout(function () { button.textContent = label; }, 2000);
    }
    function selectIt() {
      var range = document.createRange();
      range.selectNodeContents(source);
      var sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      said("Press Ctrl+C");
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { said("Copied"); }, selectIt);
    } else {
      selectIt();
    }
  });

  function countNoun(el) {
    if (!el || el.id !== "client-count") {
      return;
    }
    var noun = el.parentNode && el.parentNode.querySelector(".noun");
    if (!noun) {
      return;
    }
    var n = parseInt(el.textContent, 10);
    noun.textContent = n === 1 ? noun.getAttribute("data-one") : noun.getAttribute("data-many");
  }

  document.addEventListener("htmx:sseMessage", function (e) {
    countNoun(e.target);
  });
  document.addEventListener("htmx:afterSettle", function (e) {
    countNoun(e.target);
  });
})();
