/*
 * Timo Hub customer dashboard: progressive enhancement only.
 *
 * Every page works without this file; the server renders the tables, the
 * confirmation pages and UTC times. This file owns only what it adds on top:
 *
 *   - charts: a uPlot chart drawn from each <figure class="chart">'s data table
 *     (the table stays in the page as the accessible equivalent);
 *   - copy buttons: <button class="copy" data-copy-target="ID" hidden>;
 *   - local times: <time datetime="…Z" data-local> gets the browser-local time
 *     appended.
 *
 * It must stay within the pages' Content-Security-Policy (script-src 'self',
 * style-src 'self', connect-src 'self'): no inline styles as attributes (only
 * CSSOM element.style.x, which CSP allows), no <style> injection, no eval, and
 * no network requests at all. uPlot (vendor/uplot-1.6.32) keeps to the same
 * rules; see VENDOR.md.
 */
(function () {
  "use strict";

  var DAY = 86400;

  // Colours by series name first, so "forecast" is purple whatever its
  // column position; unknown names fall back to the palette by order.
  // Chosen to stay distinguishable for the common colour-vision deficiencies
  // and to keep >= 3:1 contrast against the white card background.
  var NAMED_COLOURS = {
    calls: "#2563eb",
    errors: "#dc2626",
    rejected: "#ea580c",
    forecast: "#7c3aed"
  };
  var PALETTE = ["#2563eb", "#dc2626", "#ea580c", "#7c3aed", "#0f766e", "#475569"];
  var BAND_FILL = "rgba(124, 58, 237, 0.16)";
  var BAND_EDGE = "rgba(124, 58, 237, 0.35)";
  var HLINE_COLOUR = "#475569";

  var lang = document.documentElement.lang || "en";
  var integerFormat = new Intl.NumberFormat(lang, { maximumFractionDigits: 0 });

  function formatCount(value) {
    return value == null ? "–" : integerFormat.format(value);
  }

  function onReady(fn) {
    if (document.readyState === "loading") {
      document.addEventListener("DOMContentLoaded", fn);
    } else {
      fn();
    }
  }

  function warn(message, error) {
    // A failed enhancement is not fatal (the server-rendered content is
    // still there), but leave a trace for whoever opens the console.
    if (window.console && console.warn) {
      console.warn("dashboard: " + message, error);
    }
  }

  /* ------------------------------------------------------------------ */
  /* Charts                                                              */
  /* ------------------------------------------------------------------ */

  function chartHeight() {
    return window.matchMedia("(max-width: 599px)").matches ? 180 : 240;
  }

  function parseNumber(text) {
    if (text == null || text === "") {
      return null;
    }
    var value = Number(text);
    return isFinite(value) ? value : null;
  }

  // Reads the figure's table into uPlot's column-oriented data plus a
  // description of each series. Throws if the table does not follow the
  // contract, so the caller can leave the table alone.
  function readTable(figure) {
    var table = figure.querySelector("table.data");
    if (!table || !table.tHead || !table.tBodies.length) {
      throw new Error("chart has no table.data with thead and tbody");
    }
    var headRow = table.tHead.rows[table.tHead.rows.length - 1];
    var columns = [];
    Array.prototype.forEach.call(headRow.cells, function (th, index) {
      if (!th.hasAttribute("data-series")) {
        return;
      }
      columns.push({
        index: index,
        key: th.getAttribute("data-series"),
        label: th.getAttribute("data-label") || th.textContent.trim(),
        dash: th.getAttribute("data-dash") === "true",
        colour: th.getAttribute("data-color"),
        bandOf: th.getAttribute("data-band-of")
      });
    });
    if (!columns.length) {
      throw new Error("chart table has no <th data-series> column");
    }

    var rows = [];
    Array.prototype.forEach.call(table.tBodies, function (tbody) {
      Array.prototype.forEach.call(tbody.rows, function (tr) {
        var xCell = tr.cells[0];
        var x = xCell ? parseNumber(xCell.getAttribute("data-x")) : null;
        if (x == null) {
          return;
        }
        rows.push({
          x: x,
          ys: columns.map(function (column) {
            var cell = tr.cells[column.index];
            return cell ? parseNumber(cell.getAttribute("data-y")) : null;
          })
        });
      });
    });
    // uPlot needs ascending x; the table may well list newest first.
    rows.sort(function (a, b) { return a.x - b.x; });

    var hasValue = rows.some(function (row) {
      return row.ys.some(function (y) { return y != null; });
    });

    var data = [rows.map(function (row) { return row.x; })];
    columns.forEach(function (column, i) {
      data.push(rows.map(function (row) { return row.ys[i]; }));
    });
    var xHead = headRow.cells[0];
    return {
      xLabel: xHead ? xHead.textContent.trim() : "",
      columns: columns,
      data: data,
      hasValue: hasValue
    };
  }

  // Smallest gap between consecutive x values: the width of one bar slot.
  function xStep(xs) {
    var step = Infinity;
    for (var i = 1; i < xs.length; i++) {
      if (xs[i] - xs[i - 1] > 0 && xs[i] - xs[i - 1] < step) {
        step = xs[i] - xs[i - 1];
      }
    }
    return isFinite(step) ? step : DAY;
  }

  // Integer-only tick increments (1, 2, 5, 10, 20, 25, 50, …), so the y axis
  // never shows fractional call counts.
  var COUNT_INCRS = (function () {
    var incrs = [];
    for (var mag = 1; mag <= 1e12; mag *= 10) {
      incrs.push(mag, 2 * mag);
      if (mag >= 10) {
        incrs.push(2.5 * mag);
      }
      incrs.push(5 * mag);
    }
    return incrs;
  })();

  // Day-granularity ticks only: the data are one point per UTC day, so
  // hour ticks would only ever land between points.
  var MONTH = 30 * DAY;
  var YEAR = 365 * DAY;
  var DAY_INCRS = [
    DAY, 2 * DAY, 3 * DAY, 4 * DAY, 5 * DAY, 6 * DAY, 7 * DAY, 14 * DAY,
    MONTH, 2 * MONTH, 3 * MONTH, 6 * MONTH,
    YEAR, 2 * YEAR, 5 * YEAR, 10 * YEAR
  ];
  // uPlot's tick-label table: [min incr, format, format on year change, …,
  // mode 1 = append the change format to the default one].
  var DATE_TICKS = [
    [YEAR, "{YYYY}", null, null, null, null, null, null, 1],
    [MONTH, "{MMM}", "\n{YYYY}", null, null, null, null, null, 1],
    [DAY, "{D} {MMM}", "\n{YYYY}", null, null, null, null, null, 1]
  ];

  function yAxisSize(u, values, axisIndex, cycleNum) {
    var axis = u.axes[axisIndex];
    // uPlot calls this again after the first layout; keep the size stable
    // on later cycles so it does not oscillate.
    if (cycleNum > 1) {
      return axis._size;
    }
    var size = axis.ticks.size + axis.gap;
    var longest = (values || []).reduce(function (acc, v) {
      return v != null && String(v).length > acc.length ? String(v) : acc;
    }, "");
    if (longest) {
      u.ctx.font = axis.font[0];
      size += u.ctx.measureText(longest).width / devicePixelRatio;
    }
    return Math.ceil(size) + 4;
  }

  // Grouped bars: each of n series gets its own slot inside the day's
  // column, by giving uPlot's bars path builder explicit left edges (x0) and
  // a width (size), both in x-scale units (seconds).
  function groupedBars(slot, position, count) {
    var group = slot * 0.8;
    var width = group / count;
    var offset = -group / 2 + position * width;
    return uPlot.paths.bars({
      disp: {
        x0: {
          unit: 1,
          values: function (u) {
            return u.data[0].map(function (x) { return x + offset; });
          }
        },
        size: {
          unit: 1,
          values: function () { return [width]; }
        }
      }
    });
  }

  function buildOptions(figure, table, width) {
    var isBar = figure.getAttribute("data-chart") === "bar";
    var columns = table.columns;
    var xs = table.data[0];
    var step = xStep(xs);
    var plain = columns.filter(function (c) { return !c.bandOf && !c.hline; });

    // The tables are dated by UTC midnight; show them in UTC so a day's bar
    // is labelled with the day the server counted it under, whatever the
    // viewer's time zone.
    var tzDate = function (ts) {
      return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC");
    };
    var legendDate = uPlot.fmtDate("{WWW} {D} {MMM} {YYYY}");

    var series = [{
      label: table.xLabel || "Day",
      value: function (u, ts) {
        return ts == null ? "–" : legendDate(tzDate(ts));
      }
    }];
    var paletteIndex = 0;
    columns.forEach(function (column) {
      var s = {
        label: column.label,
        value: function (u, v) { return formatCount(v); },
        spanGaps: false
      };
      if (column.hline) {
        s.stroke = column.colour || HLINE_COLOUR;
        s.width = 1.5;
        s.dash = [3, 3];
        s.points = { show: false };
      } else if (column.bandOf) {
        s.stroke = column.colour || BAND_EDGE;
        s.width = 1;
        s.points = { show: false };
      } else {
        var colour = column.colour || NAMED_COLOURS[column.key] ||
          PALETTE[paletteIndex % PALETTE.length];
        paletteIndex += 1;
        s.stroke = colour;
        s.width = 2;
        if (column.dash) {
          s.dash = [6, 4];
        }
        if (isBar) {
          s.fill = colour;
          s.width = 0;
          s.paths = groupedBars(step, plain.indexOf(column), plain.length);
          s.points = { show: false };
        }
      }
      series.push(s);
    });

    // Bands: the first data-band-of column is the low edge, the second the
    // high one; uPlot wants [upper, lower] series indices (1-based, x is 0).
    var bands = [];
    var bandGroups = {};
    columns.forEach(function (column, i) {
      if (column.bandOf) {
        (bandGroups[column.bandOf] = bandGroups[column.bandOf] || []).push(i + 1);
      }
    });
    Object.keys(bandGroups).forEach(function (key) {
      var edges = bandGroups[key];
      if (edges.length === 2) {
        bands.push({ series: [edges[1], edges[0]], fill: BAND_FILL });
      }
    });

    // Computed from the data rather than from uPlot's proposal: for a single
    // point uPlot widens a seconds-based time scale by 86400 *milliseconds'*
    // worth (1000 days), which would squash the chart into one edge.
    var xRange = function (u) {
      var d = u.data[0];
      var lo = d[0];
      var hi = d[d.length - 1];
      if (isBar) {
        // Half a slot either side so the outer bars are not cut in half.
        return [lo - step / 2, hi + step / 2];
      }
      return lo === hi ? [lo - DAY, hi + DAY] : [lo, hi];
    };

    return {
      width: width,
      height: chartHeight(),
      tzDate: tzDate,
      series: series,
      bands: bands,
      cursor: {
        points: { show: !isBar },
        drag: { x: false, y: false }
      },
      scales: {
        x: { time: true, range: xRange },
        y: {
          // Counts start at zero; a truncated axis would exaggerate change.
          range: function (u, min, max) {
            var top = max == null || max <= 0 ? 10 : max;
            return [0, uPlot.rangeNum(0, top, 0.1, true)[1]];
          }
        }
      },
      axes: [
        {
          incrs: DAY_INCRS,
          values: DATE_TICKS,
          stroke: "#475569",
          grid: { stroke: "#e2e8f0", width: 1 },
          ticks: { stroke: "#cbd5e1", width: 1 }
        },
        {
          incrs: COUNT_INCRS,
          values: function (u, splits) { return splits.map(formatCount); },
          size: yAxisSize,
          stroke: "#475569",
          grid: { stroke: "#e2e8f0", width: 1 },
          ticks: { stroke: "#cbd5e1", width: 1 }
        }
      ]
    };
  }

  function addHorizontalLine(figure, table) {
    var value = parseNumber(figure.getAttribute("data-hline"));
    if (value == null) {
      return;
    }
    table.columns.push({
      index: -1,
      key: "hline",
      label: figure.getAttribute("data-hline-label") || "Limit",
      dash: true,
      colour: figure.getAttribute("data-hline-color"),
      bandOf: null,
      hline: true
    });
    table.data.push(table.data[0].map(function () { return value; }));
  }

  function plotWidth(plot) {
    // A chart in a hidden container has no width yet; draw it at a
    // plausible size and let the ResizeObserver correct it when shown.
    return plot.clientWidth || 600;
  }

  function drawChart(figure) {
    var plot = figure.querySelector(".chart-plot");
    if (!plot) {
      throw new Error("chart has no .chart-plot");
    }
    var table = readTable(figure);
    if (!table.hasValue) {
      // Nothing to plot (every cell empty): an empty grid says less than
      // the table, so keep the table and skip the chart.
      return null;
    }
    addHorizontalLine(figure, table);
    var options = buildOptions(figure, table, plotWidth(plot));
    var chart = new uPlot(options, table.data, plot);
    figure.classList.add("chart-drawn");
    var details = figure.querySelector("details.chart-data");
    if (details) {
      details.open = false;
    }
    return chart;
  }

  function resizeWhenNeeded(entries) {
    entries.forEach(function (entry) {
      var plot = entry.target;
      var chart = plot.timoChart;
      if (!chart) {
        return;
      }
      var width = plot.clientWidth;
      var height = chartHeight();
      if (width > 0 && (width !== chart.width || height !== chart.height)) {
        chart.setSize({ width: width, height: height });
      }
    });
  }

  function drawCharts() {
    var figures = document.querySelectorAll("figure.chart");
    if (!figures.length) {
      return;
    }
    if (typeof window.uPlot !== "function") {
      warn("uPlot is not loaded; charts stay as tables");
      return;
    }
    var plots = [];
    Array.prototype.forEach.call(figures, function (figure) {
      var plot = figure.querySelector(".chart-plot");
      try {
        var chart = drawChart(figure);
        if (chart) {
          plot.timoChart = chart;
          plots.push(plot);
        }
      } catch (error) {
        // Leave this chart's table as the only presentation.
        if (plot) {
          while (plot.firstChild) {
            plot.removeChild(plot.firstChild);
          }
        }
        figure.classList.remove("chart-drawn");
        warn("chart not drawn, table left visible", error);
      }
    });

    // Resize in the next frame rather than inside the observer callback:
    // changing layout during delivery is what triggers Chromium's
    // "ResizeObserver loop" error.
    var pending = [];
    var scheduled = false;
    function schedule(entries) {
      pending = pending.concat(entries);
      if (!scheduled) {
        scheduled = true;
        window.requestAnimationFrame(function () {
          scheduled = false;
          var batch = pending;
          pending = [];
          resizeWhenNeeded(batch);
        });
      }
    }
    var targets = plots.map(function (plot) { return { target: plot }; });
    if (typeof window.ResizeObserver === "function") {
      var observer = new ResizeObserver(schedule);
      plots.forEach(function (plot) { observer.observe(plot); });
      // The height depends on the viewport, not on the plot's own box.
      var phone = window.matchMedia("(max-width: 599px)");
      if (phone.addEventListener) {
        phone.addEventListener("change", function () { schedule(targets); });
      }
    } else {
      window.addEventListener("resize", function () { schedule(targets); });
    }
  }

  /* ------------------------------------------------------------------ */
  /* Copy buttons                                                        */
  /* ------------------------------------------------------------------ */

  function selectText(element) {
    var range = document.createRange();
    range.selectNodeContents(element);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  // Fallback for browsers without the async clipboard API or where it is
  // refused (e.g. not a secure context). Leaves the text selected so the
  // user can still copy by hand if even this fails.
  function copyBySelection(element) {
    selectText(element);
    try {
      return document.execCommand("copy");
    } catch (error) {
      return false;
    }
  }

  function flash(button, text) {
    button.textContent = text;
    window.clearTimeout(button.timoRestore);
    button.timoRestore = window.setTimeout(function () {
      button.textContent = button.getAttribute("data-label-idle");
    }, 2000);
  }

  function setUpCopyButton(button) {
    var target = document.getElementById(button.getAttribute("data-copy-target"));
    if (!target) {
      return;
    }
    button.setAttribute("data-label-idle", button.textContent);
    button.setAttribute("aria-live", "polite");
    button.addEventListener("click", function () {
      var text = target.textContent;
      var done = function () { flash(button, "Copied"); };
      var fallback = function () {
        flash(button, copyBySelection(target) ? "Copied" : "Press Ctrl+C");
      };
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(text).then(done, fallback);
      } else {
        fallback();
      }
    });
    button.hidden = false;
  }

  /* ------------------------------------------------------------------ */
  /* Local times                                                         */
  /* ------------------------------------------------------------------ */

  var UTC_ZONES = ["UTC", "Etc/UTC", "Etc/UCT", "Etc/GMT", "Etc/Universal",
    "Etc/Zulu", "GMT", "UCT", "Universal", "Zulu"];

  function localTime(element, zone, format) {
    if (element.getAttribute("data-local-shown") === "true") {
      return;
    }
    var date = new Date(element.getAttribute("datetime"));
    if (isNaN(date.getTime())) {
      return;
    }
    var parts = {};
    format.formatToParts(date).forEach(function (part) {
      parts[part.type] = part.value;
    });
    var span = document.createElement("span");
    span.className = "local-time";
    span.textContent = " (" + parts.weekday + " " + parts.day + " " + parts.month +
      " " + parts.year + ", " + parts.hour + ":" + parts.minute + " in " + zone + ")";
    element.parentNode.insertBefore(span, element.nextSibling);
    element.setAttribute("data-local-shown", "true");
  }

  function showLocalTimes() {
    var elements = document.querySelectorAll("time[data-local][datetime]");
    if (!elements.length || !window.Intl || !Intl.DateTimeFormat) {
      return;
    }
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (!zone || UTC_ZONES.indexOf(zone) !== -1) {
      return;
    }
    var format = new Intl.DateTimeFormat("en-GB", {
      timeZone: zone,
      weekday: "short",
      day: "numeric",
      month: "short",
      year: "numeric",
      hour: "2-digit",
      minute: "2-digit",
      hourCycle: "h23"
    });
    Array.prototype.forEach.call(elements, function (element) {
      localTime(element, zone, format);
    });
  }

  /* ------------------------------------------------------------------ */

  // Each enhancement is isolated: one failing must not stop the others.
  function run(name, fn) {
    try {
      fn();
    } catch (error) {
      warn(name + " failed", error);
    }
  }

  onReady(function () {
    run("copy buttons", function () {
      Array.prototype.forEach.call(
        document.querySelectorAll("button.copy[data-copy-target]"), setUpCopyButton);
    });
    run("local times", showLocalTimes);
    run("charts", drawCharts);
  });
})();
