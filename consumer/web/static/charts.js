/* Metric charts: every element with class "chart" and data-src (a /charts.json URL) gets
   a uPlot chart of that metric over steps, one line per run; the server has already
   cut each series down. When drawn, the element gets data-drawn="1". */
(function () {
  "use strict";
  var COLORS = ["#0969da", "#cf222e", "#1a7f37", "#8250df", "#bf8700", "#1b7c83", "#bc4c00", "#57606a", "#e85aad", "#4d2d00"];

  var STEPS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000, 200000, 500000, 1e6, 2e6, 5e6, 1e7];

  function align(series) {
    var steps = {};
    series.forEach(function (s) { s.points.forEach(function (p) { steps[p[0]] = true; }); });
    var xs = Object.keys(steps).map(Number).sort(function (a, b) { return a - b; });
    var index = {};
    xs.forEach(function (x, i) { index[x] = i; });
    var data = [xs];
    series.forEach(function (s) {
      var ys = xs.map(function () { return null; });
      s.points.forEach(function (p) { ys[index[p[0]]] = p[1]; });
      data.push(ys);
    });
    return data;
  }

  function draw(el, page) {
    var series = page.series.filter(function (s) { return s.points.length; });
    el.innerHTML = "";
    if (!series.length) { el.textContent = "No samples with steps for " + (page.key || "this metric") + "."; el.dataset.drawn = "0"; return; }
    var width = Math.max(280, Math.min(el.clientWidth || 600, 1100));
    var opts = {
      title: el.dataset.title || page.key, width: width, height: 240,
      scales: { x: { time: false } },
      axes: [{ label: "step", incrs: STEPS }, { size: 60 }],
      legend: { live: true },
      series: [{ label: "step" }].concat(series.map(function (s, i) {
        return { label: s.label + (s.downsampled ? " (" + s.total + " samples, cut)" : ""), stroke: COLORS[i % COLORS.length],
                 width: 1.5, spanGaps: true, points: { show: s.points.length < 60 } };
      }))
    };
    new uPlot(opts, align(series), el);
    el.dataset.drawn = "1";
  }

  function load(el) {
    fetch(el.dataset.src, { credentials: "same-origin" })
      .then(function (r) { return r.json().then(function (body) { if (!r.ok) throw new Error(body.error ? body.error.message : r.statusText); return body; }); })
      .then(function (page) { draw(el, page); })
      .catch(function (err) { el.textContent = "Chart unavailable: " + (err.message || err); el.className += " error-line"; });
  }

  function all() { Array.prototype.forEach.call(document.querySelectorAll(".chart[data-src]"), load); }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", all); else all();
})();
