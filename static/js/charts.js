// Renders every [data-figure] element from the JSON figure embedded next to it, and
// turns a zoom on any chart into the page's time range (kept in the URL).
(function () {
  "use strict";
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
    Plotly.newPlot(el, figure.data, themed(figure.layout), { displaylogo: false, responsive: true });
    el.on("plotly_relayout", function (ev) {
      var a = ev["xaxis.range[0]"], b = ev["xaxis.range[1]"];
      if (!a || !b || el.hasAttribute("data-no-zoom-nav")) return;
      var url = new URL(window.location.href);
      url.searchParams.delete("range");
      url.searchParams.set("from", (Date.parse(a.replace(" ", "T") + "Z") / 1000).toFixed(3));
      url.searchParams.set("to", (Date.parse(b.replace(" ", "T") + "Z") / 1000).toFixed(3));
      window.location.assign(url.toString());
    });
  }
  document.querySelectorAll("[data-figure]").forEach(render);
  document.querySelectorAll("[data-autosubmit]").forEach(function (el) {
    el.addEventListener("change", function () { if (el.form) el.form.submit(); });
  });
})();
