/* A2Agent console behaviour. Loaded as a static file (the CSP forbids inline scripts).
 *
 * Keys created in this browser are kept in localStorage under "a2agent.keys.<scope>" (id ->
 * value), one store per signed-in account, so "Copy Connection Info" can include them. They are
 * never sent back to the server, and every store is cleared at sign-out.
 */
(function () {
  "use strict";

  var PREFIX = "a2agent.keys";
  var STORE = PREFIX + "." + (document.body.getAttribute("data-key-scope") || "anonymous");

  function clearKeyStores() {
    try {
      for (var i = window.localStorage.length - 1; i >= 0; i--) {
        var name = window.localStorage.key(i);
        if (name && name.indexOf(PREFIX) === 0) window.localStorage.removeItem(name);
      }
    } catch (e) { /* storage off */ }
  }
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    if (form && form.getAttribute && form.getAttribute("action") === "/logout") clearKeyStores();
  }, true);

  // ---- browser key store ------------------------------------------------------------------
  function loadKeys() {
    try { return JSON.parse(window.localStorage.getItem(STORE) || "{}") || {}; }
    catch (e) { return {}; }
  }
  function saveKeys(keys) {
    try { window.localStorage.setItem(STORE, JSON.stringify(keys)); } catch (e) { /* storage off */ }
  }
  function rememberKey(id, value, masked) {
    var keys = loadKeys();
    keys[id] = { value: value, masked: masked };
    saveKeys(keys);
  }
  function forgetKey(id) {
    var keys = loadKeys();
    delete keys[id];
    saveKeys(keys);
  }
  function heldKey(id, masked) {
    var entry = loadKeys()[id];
    if (!entry || typeof entry.value !== "string") return null;
    // the same id on another deployment or after a reset: trust it only if it still matches
    if (masked && entry.masked && entry.masked !== masked) return null;
    return entry.value;
  }

  // ---- clipboard and toast -----------------------------------------------------------------
  var toastTimer = null;
  function toast(text) {
    var el = document.getElementById("toast");
    if (!el) return;
    el.textContent = text;
    el.classList.add("show");
    clearTimeout(toastTimer);
    toastTimer = setTimeout(function () { el.classList.remove("show"); }, 2200);
  }
  function fallbackCopy(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "sr-only";
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    document.body.removeChild(area);
    return ok;
  }
  function copyText(text, message) {
    var done = function () { toast(message || "Copied to clipboard"); };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () {
        if (fallbackCopy(text)) done(); else toast("Copy failed: select the text and copy it");
      });
    } else if (fallbackCopy(text)) {
      done();
    } else {
      toast("Copy failed: select the text and copy it");
    }
  }

  // ---- connection info -----------------------------------------------------------------------
  // One block that pastes into bash/zsh as is: every descriptive line is a comment, the
  // variables are exported and single-quoted, and the Codex config is commented out so pasting
  // never writes a file. Models come from the catalogue (data-* attributes on <body>).
  function shq(value) { return "'" + String(value).replace(/'/g, "'\\''") + "'"; }

  function connectionBlock(name, masked, value) {
    var body = document.body;
    var base = body.getAttribute("data-base-url") || window.location.origin;
    var model = body.getAttribute("data-model") || "MODEL_ID";
    var claude = body.getAttribute("data-claude-model") || model;
    var small = body.getAttribute("data-small-model") || claude;
    var key = value || "<YOUR_API_KEY>";
    var safeName = String(name).replace(/[\r\n]+/g, " ");
    var lines = ["# A2Agent connection info for key \"" + safeName + "\" (" + masked + ")"];
    if (!value) {
      lines.push(
        "# NOTE: this browser does not hold the full value of key " + masked + ".",
        "# Keys are shown only once, when created. Replace <YOUR_API_KEY> below with your saved",
        "# key, or create a new key in this browser."
      );
    }
    lines.push(
      "# OpenAI base URL:    " + base + "/v1",
      "# Anthropic base URL: " + base,
      "export OPENAI_API_KEY=" + shq(key),
      "export OPENAI_BASE_URL=" + shq(base + "/v1"),
      "export ANTHROPIC_AUTH_TOKEN=" + shq(key),
      "export ANTHROPIC_BASE_URL=" + shq(base),
      "# Claude Code: the models it asks for (any model of the catalogue works)",
      "export ANTHROPIC_MODEL=" + shq(claude),
      "export ANTHROPIC_DEFAULT_HAIKU_MODEL=" + shq(small),
      "# Codex CLI: copy the lines below, minus their leading \"#\", into ~/.codex/config.toml",
      "# (top-level keys above any [table]); Codex reads the key from OPENAI_API_KEY.",
      "#   model = \"" + model + "\"",
      "#   model_provider = \"a2agent\"",
      "#   [model_providers.a2agent]",
      "#   name = \"A2Agent\"",
      "#   base_url = \"" + base + "/v1\"",
      "#   env_key = \"OPENAI_API_KEY\"",
      "#   wire_api = \"responses\"",
      "#   model_catalog_url = \"" + base + "/v1/codex/models\""
    );
    return lines.join("\n") + "\n";
  }

  // ---- dialogs ---------------------------------------------------------------------------------
  function openDialog(el) {
    if (el && typeof el.showModal === "function" && !el.open) el.showModal();
  }
  function closeDialog(el) {
    if (el && el.open) el.close();
  }

  var pendingForm = null;
  function confirmSubmit(form) {
    var dialog = document.getElementById("confirm-dialog");
    if (!dialog) { form.submit(); return; }
    document.getElementById("confirm-title").textContent = form.getAttribute("data-confirm-title") || "Are you sure?";
    document.getElementById("confirm-text").textContent = form.getAttribute("data-confirm");
    pendingForm = form;
    openDialog(dialog);
  }

  // A freshly created key: remember it in this browser, then show it once.
  function revealNewKey(root) {
    var dialog = (root || document).querySelector("#new-key-dialog[data-autoshow]");
    if (!dialog) return;
    dialog.removeAttribute("data-autoshow");
    var code = dialog.querySelector("[data-secret]");
    if (code) rememberKey(dialog.getAttribute("data-key-id"), code.textContent.trim(), dialog.getAttribute("data-key-masked"));
    dialog.addEventListener("close", function () {
      if (code) code.textContent = "";  // the value leaves the page once the dialog is closed
      dialog.remove();
    });
    openDialog(dialog);
  }

  // ---- charts ------------------------------------------------------------------------------------
  var PALETTE = ["#4f46e5", "#0ea5e9", "#10b981", "#f59e0b", "#ef4444"];

  function trim(text) { return text.indexOf(".") < 0 ? text : text.replace(/0+$/, "").replace(/\.$/, ""); }

  function fmtValue(kind, v) {
    if (v == null) return "—";
    if (kind === "usd") {
      if (v === 0) return "$0";
      if (Math.abs(v) >= 1) return "$" + v.toLocaleString("en-US", { maximumFractionDigits: 2 });
      return "$" + trim(v.toFixed(Math.min(8, Math.max(2, 1 - Math.floor(Math.log10(Math.abs(v))) + 1))));
    }
    var a = Math.abs(v);
    if (a >= 1e9) return trim((v / 1e9).toFixed(1)) + "B";
    if (a >= 1e6) return trim((v / 1e6).toFixed(1)) + "M";
    if (a >= 1e3) return trim((v / 1e3).toFixed(1)) + "K";
    return String(Math.round(v));
  }

  function fmtDay(ts) { return new Date(ts * 1000).toISOString().slice(0, 10); }

  // A small hover card instead of uPlot's legend table.
  function tooltipPlugin(spec) {
    var tip;
    return {
      hooks: {
        init: function (u) {
          tip = document.createElement("div");
          tip.className = "chart-tip";
          u.over.appendChild(tip);
          u.over.addEventListener("mouseleave", function () { tip.style.display = "none"; });
        },
        setCursor: function (u) {
          var i = u.cursor.idx;
          if (i == null) { tip.style.display = "none"; return; }
          tip.textContent = "";
          var day = document.createElement("div");
          day.className = "tip-day";
          day.textContent = fmtDay(u.data[0][i]);
          tip.appendChild(day);
          spec.series.forEach(function (s, k) {
            var row = document.createElement("div");
            row.className = "tip-row";
            var name = document.createElement("span");
            var sw = document.createElement("span");
            sw.className = "swatch";
            sw.style.background = PALETTE[k % PALETTE.length];
            name.appendChild(sw);
            name.appendChild(document.createTextNode(s.label));
            var val = document.createElement("strong");
            val.textContent = fmtValue(spec.kind, u.data[k + 1][i]);
            row.appendChild(name);
            row.appendChild(val);
            tip.appendChild(row);
          });
          tip.style.display = "block";
          var left = u.valToPos(u.data[0][i], "x");
          var width = tip.offsetWidth;
          var x = left + 12 + width > u.over.clientWidth ? left - width - 12 : left + 12;
          tip.style.transform = "translate(" + Math.max(0, x) + "px, 8px)";
        }
      }
    };
  }

  function drawChart(el) {
    if (!window.uPlot || el.getAttribute("data-drawn")) return;
    var spec;
    try { spec = JSON.parse(el.getAttribute("data-chart")); } catch (e) { return; }
    el.setAttribute("data-drawn", "1");
    var kind = spec.kind;
    var single = spec.series.length === 1;
    var data = [spec.x];
    var series = [{}];
    var bars = window.uPlot.paths && window.uPlot.paths.bars ? window.uPlot.paths.bars({ size: [0.7, 28], radius: 0.2 }) : null;
    spec.series.forEach(function (s, i) {
      data.push(s.values);
      var color = PALETTE[i % PALETTE.length];
      series.push(single && bars ? {
        label: s.label, stroke: color, fill: "rgba(79, 70, 229, 0.85)", width: 0, paths: bars, points: { show: false }
      } : {
        label: s.label, stroke: color, width: 2, points: { show: false }
      });
    });
    // grid lines in the theme's border colour, so they stay faint in dark mode too
    var gridColor = getComputedStyle(document.documentElement).getPropertyValue("--border").trim() || "#eef0f3";
    var axisStyle = { stroke: "#667085", grid: { stroke: gridColor, width: 1 }, ticks: { show: false }, font: "12px Inter, sans-serif" };
    var height = 240;
    var opts = {
      width: Math.max(el.clientWidth, 200), height: height,
      series: series,
      padding: [12, 12, 0, 0],
      scales: {
        x: { time: true, range: function (u, min, max) { return single ? [min - 43200, max + 43200] : [min, max]; } },
        y: { range: function (u, min, max) { return [0, max > 0 ? max * 1.15 : 1]; } }
      },
      axes: [
        Object.assign({}, axisStyle, { grid: { show: false } }),
        Object.assign({}, axisStyle, { size: 80, values: function (u, vals) { return vals.map(function (v) { return fmtValue(kind, v); }); } })
      ],
      legend: { show: !single, live: false },
      cursor: { drag: { x: false, y: false }, points: { show: !single } },
      plugins: [tooltipPlugin(spec)]
    };
    var plot = new window.uPlot(opts, data, el);
    if (window.ResizeObserver) {
      new ResizeObserver(function () {
        if (el.clientWidth) plot.setSize({ width: Math.max(el.clientWidth, 200), height: height });
      }).observe(el);
    }
  }

  function init(root) {
    root = root || document;
    root.querySelectorAll(".chart[data-chart]").forEach(drawChart);
    root.querySelectorAll("dialog[data-autoopen]").forEach(function (d) {
      d.removeAttribute("data-autoopen");
      openDialog(d);
    });
    revealNewKey(root);
  }

  // ---- event wiring ------------------------------------------------------------------------------
  document.addEventListener("click", function (ev) {
    var t = ev.target.closest("[data-open], [data-close], [data-copy-target], [data-connection], #confirm-ok");
    if (!t) return;
    if (t.id === "confirm-ok") {
      var form = pendingForm;
      pendingForm = null;
      closeDialog(document.getElementById("confirm-dialog"));
      if (form) {
        var forget = form.getAttribute("data-forget-key");
        if (forget) forgetKey(forget);
        form.submit();
      }
    } else if (t.hasAttribute("data-open")) {
      openDialog(document.getElementById(t.getAttribute("data-open")));
    } else if (t.hasAttribute("data-close")) {
      closeDialog(t.closest("dialog"));
    } else if (t.hasAttribute("data-copy-target")) {
      var src = document.querySelector(t.getAttribute("data-copy-target"));
      if (src) copyText(src.textContent.trim() + (src.tagName === "CODE" && src.closest("pre") ? "\n" : ""));
    } else if (t.hasAttribute("data-connection")) {
      var id = t.getAttribute("data-key-id");
      var masked = t.getAttribute("data-key-masked");
      var value = heldKey(id, masked);
      copyText(connectionBlock(t.getAttribute("data-key-name"), masked, value),
        value ? "Connection info copied" : "Copied — this browser does not hold this key; a placeholder was used");
    }
  });

  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    if (form.hasAttribute("data-confirm")) {
      ev.preventDefault();
      confirmSubmit(form);
      return;
    }
    var dialog = form.closest("dialog");
    if (dialog && form.querySelector("[data-close-on-submit]")) {
      // htmx sends the form; close the dialog and reset it for next time
      setTimeout(function () { closeDialog(dialog); form.reset(); }, 0);
    }
  });

  // every htmx request carries the session's CSRF token
  document.addEventListener("htmx:configRequest", function (ev) {
    var token = document.body.getAttribute("data-csrf");
    if (token) ev.detail.headers["X-CSRF-Token"] = token;
  });

  // a looked-up key does not stay in the page
  document.addEventListener("htmx:afterRequest", function (ev) {
    var form = ev.target.closest && ev.target.closest("form[data-reset-after]");
    if (form) form.reset();
  });

  document.addEventListener("DOMContentLoaded", function () { init(document); });
  document.addEventListener("htmx:afterSettle", function (ev) { init(ev.target); });
})();
