// Pages marked data-refresh (something on them still moves) reload their <main> every few
// seconds, without a full navigation and without a build step.
(function () {
  var every = Number(document.body.dataset.refresh || 0);
  if (!every) return;
  async function refresh() {
    try {
      var response = await fetch(location.href, { credentials: "same-origin" });
      if (response.ok) {
        var page = new DOMParser().parseFromString(await response.text(), "text/html");
        var main = page.querySelector("main");
        if (main) document.querySelector("main").replaceWith(main);
        if (!page.body.dataset.refresh) return;  // it stopped moving
      }
    } catch (e) { /* the console restarting: try again */ }
    setTimeout(refresh, every);
  }
  setTimeout(refresh, every);
})();
