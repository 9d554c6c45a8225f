/* paftrace report plots: everything comes from the JSON data island #paftrace-data.
   Progress is exposed for tests and users: <body data-plots-rendered="ids..."> and
   window.paftraceStatus. No network access: Plotly is inlined in the page. */
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("paftrace-data").textContent);
  var status = { rendered: [], failed: [] };
  window.paftraceStatus = status;
  var meta = data.meta;
  var COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
                "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"];
  var WM = { min: "#c62828", low: "#ef6c00", high: "#2e7d32" };
  var config = { displaylogo: false, responsive: true,
                 modeBarButtonsToRemove: ["sendDataToCloud", "select2d", "lasso2d"] };

  /* Plotly reads a few tags (<b>, <br>, <a href>) in labels and hover text: recorded text
     (task names, symbols) goes in as entities, so it is shown, never interpreted. */
  function esc(text) {
    return String(text === null || text === undefined ? "" : text)
      .replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }
  function pad(n, w) { return String(n).padStart(w || 2, "0"); }
  /* x values: UTC wall-clock strings when the recording has a start time, else seconds. */
  var wall0 = meta.start_wall_ns === null || meta.start_wall_ns === undefined
    ? null : meta.start_wall_ns / 1e6;
  function x(seconds) {
    if (wall0 === null) { return seconds; }
    var d = new Date(wall0 + seconds * 1000);
    return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()) +
      " " + pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + ":" + pad(d.getUTCSeconds()) +
      "." + pad(d.getUTCMilliseconds(), 3);
  }
  function xs(list) { return list.map(x); }
  var xTitle = wall0 === null ? "seconds since the start" : "time (UTC)";
  var xType = wall0 === null ? "linear" : "date";

  function plot(id, traces, layout) {
    var el = document.getElementById(id);
    if (!el) { return Promise.resolve(); }
    var base = { margin: { l: 70, r: 70, t: 40, b: 50 }, paper_bgcolor: "#fff",
                 plot_bgcolor: "#fff", font: { size: 12 }, hovermode: "closest",
                 legend: { orientation: "h", y: -0.08 } };
    return Plotly.newPlot(el, traces, Object.assign(base, layout), config).then(function () {
      status.rendered.push(id);
      el.setAttribute("data-rendered", "yes");
    }, function (err) {
      status.failed.push(id);
      console.error("plot " + id + " failed: " + err);
    });
  }

  /* One figure, one shared time axis: failures, then each zone's free blocks and
     watermarks, then the stalls. Zooming one row zooms them all. */
  function timeline() {
    var zones = data.zones;
    var rows = [{ kind: "failures", weight: 2.2 }];
    zones.forEach(function (z) { rows.push({ kind: "zone", zone: z, weight: 1.6 }); });
    rows.push({ kind: "stalls", weight: 1.2 });
    var total = rows.reduce(function (s, r) { return s + r.weight; }, 0);
    var gap = 0.05, usable = 1 - gap * (rows.length - 1), top = 1;
    var traces = [], layout = { height: 220 + rows.length * 190, showlegend: true,
                                annotations: [], shapes: [] };
    // Drawn once, under the last row; every y axis is anchored to it.
    layout.xaxis = { type: xType, title: { text: xTitle }, anchor: "free", position: 0,
                     showspikes: true, spikemode: "across", spikethickness: 1 };
    rows.forEach(function (row, i) {
      var h = usable * row.weight / total;
      var y = "y" + (2 * i + 1), y2 = "y" + (2 * i + 2);
      var ykey = "yaxis" + (2 * i + 1), y2key = "yaxis" + (2 * i + 2);
      layout[ykey] = { domain: [top - h, top], rangemode: "tozero" };
      row.domain = [top - h, top];
      var title = "";
      if (row.kind === "failures") {
        title = "Failed allocations per " + data.failure_series.bucket_s +
          " s, by order and context (traced)";
        layout[ykey].title = { text: "failures" };
        data.failure_series.series.forEach(function (s, k) {
          // Each bar spans its bucket [t, t + bucket) (date axes measure widths in ms).
          traces.push({ type: "bar", name: "order " + s.order + " " + s.context,
                        x: xs(data.failure_series.t), y: s.counts, yaxis: y, offset: 0,
                        width: data.failure_series.bucket_s * (wall0 === null ? 1 : 1000),
                        marker: { color: COLORS[k % COLORS.length] },
                        legendgroup: "failures" });
        });
        if (data.rates.t.length) {
          // Same axis and unit as the bars: the kernel's counters (all orders, before any
          // filter) per bucket, so a gap between line and bars is failures not traced.
          var bucket = data.failure_series.bucket_s;
          traces.push({ type: "scatter", mode: "lines", x: xs(data.rates.t),
                        name: "failures counted in the kernel (all orders, per " + bucket +
                          " s)", y: data.rates.failures_per_s.map(function (v) {
                            return v * bucket; }), yaxis: y,
                        line: { color: "#555", width: 1.2, dash: "dot", shape: "hv" } });
        }
        layout.barmode = "stack";
      } else if (row.kind === "zone") {
        var z = row.zone;
        title = "Node " + z.node + " " + z.zone + ": free blocks of order >= " + z.order +
          " (left) and free pages with the min/low/high watermarks (right)";
        layout[ykey].title = { text: "blocks >= " + z.order };
        // Log scale: free pages and watermarks differ by orders of magnitude.
        layout[y2key] = { overlaying: y, side: "right", type: "log",
                          dtick: 1, tickformat: "~s", title: { text: "pages (log)" },
                          showgrid: false };
        // One legend entry per kind of line (the first zone's), each row has them all.
        traces.push({ type: "scatter", mode: "lines", name: "free blocks >= order " + z.order,
                      x: xs(z.t), y: z.blocks_at_or_above, yaxis: y, legendgroup: "blocks",
                      line: { width: 2.5, color: "#1f77b4" }, fill: "tozeroy",
                      fillcolor: "rgba(31,119,180,0.12)", showlegend: i === 1 });
        traces.push({ type: "scatter", mode: "lines", name: "free pages", x: xs(z.t),
                      y: z.free_pages, yaxis: y2, legendgroup: "free",
                      line: { width: 1.5, color: "#555" }, showlegend: i === 1 });
        ["min", "low", "high"].forEach(function (w) {
          if (z[w].some(function (v) { return v !== null; })) {
            traces.push({ type: "scatter", mode: "lines", name: w + " watermark",
                          x: xs(z.t), y: z[w], yaxis: y2, legendgroup: w,
                          showlegend: i === 1,
                          line: { width: 1.2, dash: "dash", color: WM[w] } });
          }
        });
        var fx = data.failure_points.map(function (p) { return x(p[0]); });
        if (fx.length) {
          traces.push({ type: "scatter", mode: "markers", name: "failure", x: fx,
                        y: fx.map(function () { return 0; }), yaxis: y, legendgroup: "fail",
                        showlegend: i === 1, marker: { symbol: "line-ns-open", size: 10,
                        color: "#c62828" }, hoverinfo: "x+text",
                        text: data.failure_points.map(function (p) {
                          return esc("order " + p[1] + " " + p[2] + (p[3] ? ":" + p[3] : "") +
                                     " " + (p[4] || "?") + " (" + p[6] + ", " + p[5] + ")");
                        }) });
        }
      } else {
        title = "Direct reclaim / compaction stalls (duration of each, ms)";
        layout[ykey].title = { text: "ms" };
        var kinds = {};
        data.stalls.points.forEach(function (p) { (kinds[p[2]] = kinds[p[2]] || []).push(p); });
        Object.keys(kinds).forEach(function (k, n) {
          traces.push({ type: "scatter", mode: "markers", name: k + " stall",
                        x: kinds[k].map(function (p) { return x(p[0]); }),
                        y: kinds[k].map(function (p) { return p[1]; }), yaxis: y,
                        text: kinds[k].map(function (p) {
                          return esc(p[3] + " order " + p[4] + " " + (p[5] || "")); }),
                        marker: { color: COLORS[(n + 4) % COLORS.length], size: 7 } });
        });
        if (!data.stalls.points.length) {
          layout.annotations.push({ text: "no direct reclaim or compaction stall recorded",
                                    xref: "paper", yref: "paper", x: 0.5,
                                    y: (row.domain[0] + row.domain[1]) / 2, showarrow: false,
                                    font: { color: "#666" } });
        }
      }
      layout.annotations.push({ text: "<b>" + esc(title) + "</b>",
                                xref: "paper", yref: "paper", x: 0, xanchor: "left",
                                y: top, yanchor: "bottom", showarrow: false });
      top -= h + gap;
    });
    // Each kernel report: a dotted line across every row, labelled once at the top.
    var labelled = false;
    data.kernel_reports.forEach(function (r) {
      r.times.forEach(function (t) {
        if (t === null || t === undefined) { return; }
        layout.shapes.push({ type: "line", xref: "x", yref: "paper", x0: x(t), x1: x(t),
                             y0: 0, y1: 1, line: { color: "#c62828", width: 1, dash: "dot" } });
        if (!labelled) {
          layout.annotations.push({ text: "kernel report", xref: "x", yref: "paper", x: x(t),
                                    y: 1, yanchor: "bottom", showarrow: false,
                                    font: { color: "#c62828", size: 11 } });
          labelled = true;
        }
      });
    });
    return plot("plot-timeline", traces, layout);
  }

  function orders() {
    var o = data.orders;
    var labels = o.map(function (r) { return "order " + r.order; });
    return plot("plot-orders", [
      { type: "bar", name: "attempts", x: labels, y: o.map(function (r) { return r.attempts; }),
        marker: { color: "#90caf9" } },
      { type: "bar", name: "failures", x: labels, y: o.map(function (r) { return r.failures; }),
        marker: { color: "#c62828" } }
    ], { barmode: "group", height: 340, yaxis: { type: "log", title: { text: "count (log)" } } });
  }

  function sites() {
    var s = data.call_sites.slice(0, 10).reverse();
    return plot("plot-sites", [{
      type: "bar", orientation: "h", x: s.map(function (r) { return r.count; }),
      y: s.map(function (r, i) { return "#" + (s.length - i) + " " + esc(r.blame); }),
      marker: { color: s.map(function (r) {
        return r.judgement.verdict === "harmful" ? "#c62828" : "#2e7d32"; }) },
      hovertext: s.map(function (r) {
        return esc("order " + r.order + " " + r.gfp_flags.join("|")); })
    }], { height: 120 + 32 * Math.max(1, s.length), margin: { l: 380, r: 30, t: 20, b: 40 },
          yaxis: { automargin: true } });
  }

  var jobs = [timeline(), orders()];
  if (data.call_sites.length) { jobs.push(sites()); }
  Promise.all(jobs).then(function () {
    document.body.setAttribute("data-plots-rendered", status.rendered.join(" "));
    document.body.setAttribute("data-plots-failed", status.failed.join(" "));
  });
})();
