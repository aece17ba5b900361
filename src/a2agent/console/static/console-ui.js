/* A2Agent console: layout behaviour that needs a script (the pages work without it).
 *
 * - the sidebar collapses behind a Menu button on narrow screens;
 * - UTC timestamps (<time data-local>) are shown in the browser's time zone, UTC on hover;
 * - light / dark theme: follows prefers-color-scheme unless the user picked one (remembered
 *   in localStorage "a2agent.theme").
 */
(function () {
  "use strict";

  var THEME = "a2agent.theme";

  // ---- theme (runs at once: the stylesheet reads data-theme on <html>) ----------------------
  function storedTheme() {
    try { return window.localStorage.getItem(THEME); } catch (e) { return null; }
  }
  function systemDark() {
    return window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
  }
  function applyTheme() {
    var theme = storedTheme();
    var root = document.documentElement;
    if (theme === "dark" || theme === "light") root.setAttribute("data-theme", theme);
    else root.removeAttribute("data-theme");
    var dark = theme === "dark" || (theme !== "light" && systemDark());
    document.querySelectorAll(".theme-toggle").forEach(function (b) {
      b.hidden = false;
      b.setAttribute("aria-pressed", dark ? "true" : "false");
      b.textContent = dark ? (b.getAttribute("data-light") || "Light mode")
        : (b.getAttribute("data-dark") || "Dark mode");
    });
  }
  function toggleTheme() {
    var dark = document.documentElement.getAttribute("data-theme") === "dark" ||
      (!document.documentElement.hasAttribute("data-theme") && systemDark());
    try { window.localStorage.setItem(THEME, dark ? "light" : "dark"); } catch (e) { /* off */ }
    applyTheme();
  }
  applyTheme();

  // ---- local times ---------------------------------------------------------------------------
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function localTimes(root) {
    (root || document).querySelectorAll("time[data-local]").forEach(function (el) {
      var d = new Date(el.getAttribute("datetime"));
      if (isNaN(d.getTime())) return;
      var text = d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate());
      if (el.getAttribute("data-local") !== "date") {
        text += " " + pad(d.getHours()) + ":" + pad(d.getMinutes());
        if (el.getAttribute("data-local") === "second") text += ":" + pad(d.getSeconds());
      }
      el.textContent = text;
      el.removeAttribute("data-local");
    });
  }

  // ---- scrollable regions reachable by keyboard ----------------------------------------------
  function scrollables(root) {
    (root || document).querySelectorAll(".table-wrap, .code pre").forEach(function (el) {
      var scrolls = el.scrollWidth > el.clientWidth + 1 || el.scrollHeight > el.clientHeight + 1;
      if (scrolls && !el.hasAttribute("tabindex")) {
        el.setAttribute("tabindex", "0");
        el.setAttribute("data-scroll-focus", "");
      } else if (!scrolls && el.hasAttribute("data-scroll-focus")) {
        el.removeAttribute("tabindex");
        el.removeAttribute("data-scroll-focus");
      }
    });
  }

  // ---- collapsing navigation -----------------------------------------------------------------
  var narrow = window.matchMedia ? window.matchMedia("(max-width: 860px)") : null;
  function setupNav() {
    var button = document.querySelector(".nav-toggle");
    var sidebar = document.getElementById("sidebar");
    if (!button || !sidebar) return;
    button.hidden = false;
    sidebar.classList.add("collapsible");
    button.addEventListener("click", function () {
      var open = button.getAttribute("aria-expanded") !== "true";
      button.setAttribute("aria-expanded", open ? "true" : "false");
      sidebar.classList.toggle("open", open);
    });
    document.addEventListener("keydown", function (ev) {
      if (ev.key === "Escape" && sidebar.classList.contains("open") && narrow && narrow.matches) {
        button.setAttribute("aria-expanded", "false");
        sidebar.classList.remove("open");
        button.focus();
      }
    });
  }

  document.addEventListener("click", function (ev) {
    if (ev.target.closest && ev.target.closest(".theme-toggle")) toggleTheme();
  });
  if (window.matchMedia) {
    var mq = window.matchMedia("(prefers-color-scheme: dark)");
    if (mq.addEventListener) mq.addEventListener("change", applyTheme);
  }
  document.addEventListener("DOMContentLoaded", function () {
    applyTheme();
    setupNav();
    localTimes(document);
    scrollables(document);
  });
  window.addEventListener("resize", function () { scrollables(document); });
  document.addEventListener("toggle", function () { scrollables(document); }, true);
  document.addEventListener("htmx:afterSettle", function (ev) {
    localTimes(ev.target);
    scrollables(ev.target);
  });
})();
