// Renders every [data-figure] element from the JSON figure embedded next to it, turns a
// zoom on a time chart into the page's time range (kept in the URL), shows times in UTC or
// the browser's zone, and refreshes the page on the chosen interval while it is visible.
(function () {
  "use strict";
  var LOCAL = localStorage.getItem("telltale-tz") === "local";
  // Plotly draws epoch-ms date axes in UTC; shifting by the zone offset shows local time.
  var OFFSET = LOCAL ? -new Date().getTimezoneOffset() * 60000 : 0;

  function themed(layout) {
    var css = getComputedStyle(document.documentElement);
    var text = css.getPropertyValue("--text").trim() || "#1f2328";
    var grid = css.getPropertyValue("--border").trim() || "#d1d9e0";
    layout.paper_bgcolor = "rgba(0,0,0,0)";
    layout.plot_bgcolor = "rgba(0,0,0,0)";
    layout.font = Object.assign({ color: text }, layout.font || {});
    ["xaxis", "yaxis"].forEach(function (axis) {
      layout[axis] = Object.assign({ gridcolor: grid, linecolor: grid }, layout[axis] || {});
    });
    return layout;
  }

  function isTimeAxis(layout) {
    return layout.xaxis && layout.xaxis.type === "date";
  }

  function shift(figure) {
    if (!OFFSET || !isTimeAxis(figure.layout)) return;
    figure.data.forEach(function (trace) {
      if (Array.isArray(trace.x)) trace.x = trace.x.map(function (x) { return typeof x === "number" ? x + OFFSET : x; });
      if (typeof trace.x0 === "number") trace.x0 += OFFSET;  // evenly spaced: x0 + k * dx
    });
    var range = figure.layout.xaxis.range;
    if (range) figure.layout.xaxis.range = range.map(function (x) { return x + OFFSET; });
    (figure.layout.shapes || []).forEach(function (s) {
      if (s.xref === "x") { s.x0 += OFFSET; s.x1 += OFFSET; }
    });
    figure.layout.xaxis.title = { text: "local time" };
  }

  function render(el) {
    var source = document.getElementById(el.getAttribute("data-figure"));
    if (!source) return;
    var figure = JSON.parse(source.textContent);
    if (figure.layout && figure.layout.meta && figure.layout.meta.empty) {
      el.classList.add("nodata-box");
      el.textContent = (figure.layout.title && figure.layout.title.text ? figure.layout.title.text + ": " : "") +
        "no data in this time range.";
      return;
    }
    shift(figure);
    Plotly.newPlot(el, figure.data, themed(figure.layout), { displaylogo: false, responsive: true });
    if (!isTimeAxis(figure.layout)) return;
    el.on("plotly_relayout", function (ev) {
      var a = ev["xaxis.range[0]"], b = ev["xaxis.range[1]"];
      if (!a || !b || el.hasAttribute("data-no-zoom-nav")) return;
      var from = Date.parse(a.replace(" ", "T") + "Z") - OFFSET;
      var to = Date.parse(b.replace(" ", "T") + "Z") - OFFSET;
      if (annotating) { annotate(el, from, to); return; }
      var url = new URL(window.location.href);
      url.searchParams.delete("range");
      url.searchParams.set("from", (from / 1000).toFixed(3));
      url.searchParams.set("to", (to / 1000).toFixed(3));
      window.location.assign(url.toString());
    });
  }

  // Annotating: with the toggle on, dragging across a time chart marks that region.
  var annotating = false;
  function csrfToken() {
    var match = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }
  function annotate(el, from, to) {
    var scope = el.closest("[data-annotate]");
    var text = window.prompt("Annotation for " + new Date(from).toISOString().slice(0, 16) + " – " +
      new Date(to).toISOString().slice(11, 16) + " UTC:");
    if (!text) { window.location.reload(); return; }
    var body = { time: Math.round(from), timeEnd: Math.round(to), text: text, tags: ["ui"] };
    if (scope) {
      ["node", "instance", "incident"].forEach(function (key) {
        var value = scope.getAttribute("data-annotate-" + key);
        if (value) body[key] = key === "incident" ? parseInt(value, 10) : value;
      });
    }
    fetch("/api/annotations", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
      body: JSON.stringify(body)
    }).then(function (response) {
      if (response.ok) { window.location.reload(); return; }
      return response.json().then(function (data) { window.alert(data.message || "The annotation was refused."); });
    });
  }
  document.querySelectorAll("[data-annotate-toggle]").forEach(function (button) {
    button.addEventListener("click", function () {
      annotating = !annotating;
      button.setAttribute("aria-pressed", annotating ? "true" : "false");
      button.textContent = annotating ? "Drag across a chart to annotate (click to stop)" : "Annotate";
    });
  });

  document.querySelectorAll("[data-figure]").forEach(render);
  document.querySelectorAll("[data-autosubmit]").forEach(function (el) {
    el.addEventListener("change", function () { if (el.form) el.form.submit(); });
  });
  document.querySelectorAll("[data-tz-toggle]").forEach(function (button) {
    button.textContent = LOCAL ? "Times: local" : "Times: UTC";
    button.setAttribute("aria-pressed", LOCAL ? "true" : "false");
    button.addEventListener("click", function () {
      localStorage.setItem("telltale-tz", LOCAL ? "utc" : "local");
      window.location.reload();
    });
  });

  // Auto-refresh: ?refresh=30 reloads every 30 s, but never while the tab is hidden.
  var seconds = parseInt(new URL(window.location.href).searchParams.get("refresh") || "0", 10);
  if (seconds > 0) {
    var due = Date.now() + seconds * 1000;
    setInterval(function () {
      if (document.hidden) { due = Date.now() + seconds * 1000; return; }
      if (Date.now() >= due) window.location.reload();
    }, 1000);
  }
})();
