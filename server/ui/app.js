// Refreshes the status page's content in place at the interval the server
// names, keeping the page's filters. Plain JS; no framework.
"use strict";
(function () {
  const secs = Number(document.body.dataset.refreshSecs) || 15;
  async function refresh() {
    try {
      const url = "fragment" + window.location.search;
      const resp = await fetch(url, { credentials: "same-origin", cache: "no-store" });
      if (resp.ok) {
        // The fragment is rendered by the server with every value escaped.
        document.getElementById("content").innerHTML = await resp.text();
        document.body.classList.remove("offline");
      } else {
        document.body.classList.add("offline");
      }
    } catch (e) {
      document.body.classList.add("offline");
    }
  }
  window.setInterval(refresh, secs * 1000);
})();
