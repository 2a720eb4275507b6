// live.js ends a live console page whose session is over. When a live
// stream no longer admits its page (signed out, idle or absolute session
// timeout, operator disabled or no longer an admin) the server sends a
// "signin" event (web.LiveEnd) whose data is the sign-in URL, and closes
// the stream; the layout's sse-close stops the EventSource reconnecting,
// and this sends the page there, taking the stale live data off screen.
(function () {
  "use strict";
  var seen = new WeakSet();
  // htmx's SSE extension announces each EventSource it opens; it fires
  // again when one reconnects, hence the WeakSet.
  document.addEventListener("htmx:sseOpen", function (e) {
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
})();
