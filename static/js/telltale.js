// Telltale page behaviour shared by every page: theme toggle and confirmations.
(function () {
  "use strict";
  var root = document.documentElement;
  var saved = window.localStorage && localStorage.getItem("telltale-theme");
  if (saved) root.setAttribute("data-theme", saved);
  document.addEventListener("click", function (event) {
    var toggle = event.target.closest("[data-theme-toggle]");
    if (!toggle) return;
    var dark = getComputedStyle(root).colorScheme === "dark";
    var next = dark ? "light" : "dark";
    root.setAttribute("data-theme", next);
    try { localStorage.setItem("telltale-theme", next); } catch (e) { /* private mode */ }
  });
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) event.preventDefault();
  });
})();
