import Foundation
import TunaCore

/// The dashboard's one stylesheet and one script, served from memory (the release tarball has
/// no resource bundle). No charting library: npm is out of reach and a fetched one may not be
/// committed, so the charts are a few hundred lines of canvas drawing of our own: a line chart
/// (many series, hover, live append), parallel coordinates and scatter plots. Canvas rather
/// than SVG: a 10,000-job sweep's parallel-coordinates plot is 10,000 polylines.
enum Assets {
    static let style = """
        body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d2329;background:#f7f8fa}
        nav{background:#12263a;padding:8px 16px;display:flex;gap:16px;align-items:center}
        nav a{color:#cfe3f5;text-decoration:none}nav a.brand{color:#fff;font-weight:700;margin-right:12px}nav a.logout{margin-left:auto}
        main{padding:12px 20px;max-width:1500px}h1{font-size:20px;margin:8px 0}h2{font-size:15px;margin:14px 0 6px;display:flex;gap:12px;align-items:center}
        section{background:#fff;border:1px solid #e1e4e8;border-radius:6px;padding:8px 12px;margin:10px 0;flex:1;min-width:0}
        .row{display:flex;gap:12px}.facts{color:#444}.note{color:#666;margin:2px 0;font-size:12px}
        table.grid{border-collapse:collapse;width:100%;font-size:13px}table.grid th,table.grid td{border-bottom:1px solid #eceef1;padding:3px 8px;text-align:left;white-space:nowrap}
        table.grid th{background:#f0f2f5;position:sticky;top:0}table.sortable th{cursor:pointer}table.kv th{width:30%}
        .bar{display:inline-block;width:90px;height:8px;background:#e6e9ee;border-radius:4px;vertical-align:middle;overflow:hidden}.bar span{display:block;height:100%;background:#0072B2}
        .status.succeeded{color:#1a7f37}.status.failed,.problem{color:#c62828}.status.running{color:#0072B2}.status.stopped,.status.cancelled{color:#777}.status.paused{color:#b26a00}
        .chart{position:relative}canvas{width:100%;display:block}.tip{position:absolute;pointer-events:none;background:#12263aee;color:#fff;padding:3px 7px;border-radius:4px;font-size:12px;display:none;white-space:nowrap}
        .scatters{display:flex;flex-wrap:wrap;gap:10px}.scatters div{flex:1 1 300px}.scatters canvas{height:200px}
        pre.log{max-height:320px;overflow:auto;background:#0f1720;color:#d6e2ee;padding:8px;font-size:12px}
        .live{font-size:12px;color:#888}.live.on{color:#1a7f37}.best{font-weight:600}tr.bestrow td{background:#eef7ee}
        """

    static let script = #"""
        "use strict";
        (function () {
        const PALETTE = \#(String(decoding: try! JSONEncoder().encode(SweepPlot.palette), as: UTF8.self));
        const dash = window.tunaDash = {ready: false, series: 0, evalPoints: 0, points: 0, jobs: 0, axes: 0, updates: 0, loads: 0, scatters: 0};
        const $ = (s) => document.querySelector(s);
        const fmt = (v) => v == null || !isFinite(v) ? "–" : (Math.abs(v) !== 0 && (Math.abs(v) < 1e-3 || Math.abs(v) >= 1e5) ? v.toExponential(3) : String(+v.toPrecision(5)));
        const getJSON = async (url) => { const r = await fetch(url, {credentials: "same-origin"}); if (!r.ok) throw new Error(url + ": " + r.status); return r.json(); };
        // Min and max by a loop: Math.min(...xs) overflows the call stack past ~100,000 values.
        const extent = (xs) => { let lo = Infinity, hi = -Infinity; for (const x of xs) { if (x < lo) lo = x; if (x > hi) hi = x; } return [lo, hi]; };
        const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));

        // An axis: numbers (linear, or log when positive and spanning more than 10x) or categories.
        function makeScale(values, log) {
          const nums = values.filter((v) => typeof v === "number" && isFinite(v));
          if (nums.length && nums.length === values.filter((v) => v != null).length) {
            let [lo, hi] = extent(nums);
            const useLog = log !== undefined ? log && lo > 0 : lo > 0 && hi / lo > 10;
            if (useLog) { lo = Math.log10(lo); hi = Math.log10(hi); }
            if (lo === hi) { lo -= 0.5; hi += 0.5; }
            const f = (v) => ((useLog ? Math.log10(v) : v) - lo) / (hi - lo);
            return {kind: "number", log: useLog, f, ticks: (n) => niceTicks(lo, hi, n, useLog)};
          }
          const cats = [...new Set(values.filter((v) => v != null).map((v) => JSON.stringify(v)))].sort();
          const f = (v) => cats.length < 2 ? 0.5 : cats.indexOf(JSON.stringify(v)) / (cats.length - 1);
          return {kind: "category", f, ticks: () => cats.map((c) => ({t: f(JSON.parse(c)), label: c.replace(/^"|"$/g, "")}))};
        }
        function niceTicks(lo, hi, n, log) {
          const span = hi - lo, raw = span / Math.max(1, n), mag = Math.pow(10, Math.floor(Math.log10(raw)));
          const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => span / s <= n) || 10 * mag;
          const out = [], first = Math.ceil(lo / step);
          if (!(span > 0) || !isFinite(step) || step <= 0) return out;
          // From an index, not by adding steps: a step below the values' precision would never advance.
          for (let k = 0; k <= n + 1; k++) { const v = (first + k) * step; if (v > hi + 1e-9 * span) break; out.push({t: (v - lo) / span, label: fmt(log ? Math.pow(10, v) : v)}); }
          return out;
        }
        function setupCanvas(canvas) {
          // The CSS height is fixed from the height attribute first given: a canvas's auto height
          // follows its pixel size, which is set below.
          const h = +(canvas.dataset.h || (canvas.dataset.h = canvas.getAttribute("height") || 200));
          canvas.style.height = h + "px";
          const dpr = window.devicePixelRatio || 1, w = canvas.clientWidth;
          canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr);
          const g = canvas.getContext("2d"); g.setTransform(dpr, 0, 0, dpr, 0, 0); g.clearRect(0, 0, w, h);
          g.font = "11px system-ui,sans-serif"; return {g, w, h};
        }

        // Many series of (step, value) on one chart; points may be appended as they arrive.
        class LineChart {
          constructor(canvas, tip, opts) {
            this.canvas = canvas; this.tip = tip; this.opts = opts || {}; this.series = new Map(); this.hot = null; this.log = false; this.pending = false;
            window.addEventListener("resize", () => this.draw());
            canvas.addEventListener("mousemove", (e) => this.hover(e));
            canvas.addEventListener("mouseleave", () => { this.hot = null; if (tip) tip.style.display = "none"; this.draw(); });
            canvas.addEventListener("click", () => { if (this.hot && this.opts.onClick) this.opts.onClick(this.hot.id); });
          }
          clear() { this.series.clear(); this.draw(); }
          set(id, xs, ys, label) { this.series.set(id, {id, xs: xs.slice(), ys: ys.slice(), label: label || String(id), color: PALETTE[this.series.size % PALETTE.length]}); this.draw(); }
          append(id, x, y) {
            const s = this.series.get(id); if (!s) return false;
            let i = s.xs.length; while (i > 0 && s.xs[i - 1] > x) i--;
            if (i > 0 && s.xs[i - 1] === x) s.ys[i - 1] = y; else { s.xs.splice(i, 0, x); s.ys.splice(i, 0, y); }
            this.draw(); return true;
          }
          get pointCount() { let n = 0; for (const s of this.series.values()) n += s.xs.length; return n; }
          draw() { if (this.pending) return; this.pending = true; requestAnimationFrame(() => { this.pending = false; this.paint(); }); }
          frame(w, h) {
            let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
            for (const s of this.series.values()) for (let i = 0; i < s.xs.length; i++) {
              const y = s.ys[i]; if (this.log && !(y > 0)) continue;
              x0 = Math.min(x0, s.xs[i]); x1 = Math.max(x1, s.xs[i]); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
            }
            if (!isFinite(x0)) return null;
            if (this.log) { y0 = Math.log10(y0); y1 = Math.log10(y1); }
            if (x0 === x1) { x0 -= 1; x1 += 1; }
            if (y0 === y1) { const d = Math.abs(y0) * 0.1 || 0.5; y0 -= d; y1 += d; }
            const L = 58, R = 12, T = 10, B = 30, pad = (y1 - y0) * 0.04;
            y0 -= pad; y1 += pad;
            return {L, R, T, B, x0, x1, y0, y1, px: (x) => L + (x - x0) / (x1 - x0) * (w - L - R), py: (y) => T + (1 - ((this.log ? Math.log10(y) : y) - y0) / (y1 - y0)) * (h - T - B)};
          }
          paint() {
            const {g, w, h} = setupCanvas(this.canvas), f = this.frame(w, h); this.f = f;
            if (!f) { g.fillStyle = "#888"; g.fillText(this.opts.empty || "no points yet", 60, 30); return; }
            g.strokeStyle = "#e6e9ee"; g.fillStyle = "#555"; g.lineWidth = 1;
            for (const t of niceTicks(f.y0, f.y1, 6, this.log)) { const y = f.T + (1 - t.t) * (h - f.T - f.B); g.beginPath(); g.moveTo(f.L, y); g.lineTo(w - f.R, y); g.stroke(); g.fillText(t.label, 4, y + 4); }
            for (const t of niceTicks(f.x0, f.x1, 8, false)) { const x = f.L + t.t * (w - f.L - f.R); g.fillText(t.label, x - 8, h - 12); }
            g.fillText(this.opts.xLabel || "step", w - 40, h - 1);
            const list = [...this.series.values()];
            g.globalAlpha = this.hot ? 0.25 : 0.85;
            for (const s of list) if (s !== this.hot) this.stroke(g, f, s, 1.3);
            g.globalAlpha = 1;
            if (this.hot) this.stroke(g, f, this.hot, 2.6);
            if (this.opts.legend) {
              let x = f.L + 8;
              for (const s of list) { g.fillStyle = s.color; g.fillRect(x, f.T + 2, 14, 3); g.fillStyle = "#333"; g.fillText(s.label, x + 18, f.T + 8); x += 26 + g.measureText(s.label).width; }
            }
          }
          stroke(g, f, s, width) {
            g.strokeStyle = s.color; g.lineWidth = width; g.beginPath(); let on = false;
            for (let i = 0; i < s.xs.length; i++) {
              if (this.log && !(s.ys[i] > 0)) { on = false; continue; }
              const x = f.px(s.xs[i]), y = f.py(s.ys[i]); if (on) g.lineTo(x, y); else { g.moveTo(x, y); on = true; }
            }
            g.stroke();
            if (s.xs.length === 1) { g.fillStyle = s.color; g.fillRect(f.px(s.xs[0]) - 2, f.py(s.ys[0]) - 2, 4, 4); }
          }
          hover(e) {
            if (!this.f) return; const r = this.canvas.getBoundingClientRect(), mx = e.clientX - r.left, my = e.clientY - r.top;
            let best = null, bd = 144;
            for (const s of this.series.values()) for (let i = 0; i < s.xs.length; i++) {
              const dx = this.f.px(s.xs[i]) - mx, dy = this.f.py(s.ys[i]) - my, d = dx * dx + dy * dy;
              if (d < bd) { bd = d; best = {s, i}; }
            }
            const hot = best ? best.s : null; if (hot !== this.hot) { this.hot = hot; this.draw(); }
            this.canvas.style.cursor = hot && this.opts.onClick ? "pointer" : "default";
            if (!this.tip) return;
            if (!best) { this.tip.style.display = "none"; return; }
            this.tip.innerHTML = esc(best.s.label) + " · step " + best.s.xs[best.i] + " · " + fmt(best.s.ys[best.i]);
            this.tip.style.left = (mx + 12) + "px"; this.tip.style.top = (my + 8) + "px"; this.tip.style.display = "block";
          }
        }

        // One line per job across the varied hyperparameters and the objective.
        function parallelCoords(canvas, jobs, dims, objective) {
          const {g, w, h} = setupCanvas(canvas), T = 24, B = 26, L = 50, R = 50;
          const axes = dims.map((d) => ({name: d, scale: makeScale(jobs.map((j) => d === objective ? j.objective : j.params[d]))}));
          const x = (i) => axes.length < 2 ? w / 2 : L + i * (w - L - R) / (axes.length - 1), y = (t) => T + (1 - t) * (h - T - B);
          const vals = jobs.map((j) => j.objective).filter((v) => v != null && isFinite(v)), [lo, hi] = extent(vals);
          const colour = (v) => { if (v == null || !vals.length) return "rgba(150,150,150,0.25)"; const t = hi === lo ? 0 : (v - lo) / (hi - lo), k = dash.mode === "max" ? 1 - t : t;
            return "hsla(" + Math.round(210 - 190 * k) + ",75%," + Math.round(38 + 18 * k) + "%,0.55)"; };
          const order = jobs.slice().sort((a, b) => (b.objective == null) - (a.objective == null) || (dash.mode === "max" ? a.objective - b.objective : b.objective - a.objective));
          g.lineWidth = 1; let lines = 0;
          for (const j of order) {
            g.strokeStyle = colour(j.objective); g.beginPath(); let on = false, segments = 0;
            axes.forEach((a, i) => { const v = a.name === objective ? j.objective : j.params[a.name];
              if (v == null) { on = false; return; } const px = x(i), py = y(a.scale.f(v)); if (on) { g.lineTo(px, py); segments++; } else { g.moveTo(px, py); on = true; } });
            g.stroke(); if (segments > 0) lines++;
          }
          g.fillStyle = "#222"; g.strokeStyle = "#555";
          axes.forEach((a, i) => {
            const px = x(i); g.beginPath(); g.moveTo(px, T); g.lineTo(px, h - B); g.stroke();
            g.textAlign = "center"; g.font = "bold 12px system-ui,sans-serif"; g.fillText(a.name + (a.scale.log ? " (log)" : ""), px, 14);
            g.font = "11px system-ui,sans-serif"; g.textAlign = i === axes.length - 1 ? "right" : "left";
            const ticks = a.scale.ticks(4); const step = Math.max(1, Math.ceil(ticks.length / 8));
            ticks.forEach((t, k) => { if (k % step === 0) g.fillText(t.label, px + (i === axes.length - 1 ? -4 : 4), y(t.t) + 4); });
          });
          g.textAlign = "left";
          return {axes: axes.length, lines};
        }

        function scatter(canvas, jobs, dim) {
          const {g, w, h} = setupCanvas(canvas), L = 50, R = 10, T = 16, B = 28;
          const pts = jobs.filter((j) => j.objective != null && j.params[dim] != null);
          const sx = makeScale(pts.map((j) => j.params[dim])), sy = makeScale(pts.map((j) => j.objective), false);
          g.fillStyle = "#222"; g.font = "bold 12px system-ui,sans-serif"; g.fillText(dim + (sx.log ? " (log)" : ""), L, 12); g.font = "11px system-ui,sans-serif";
          g.strokeStyle = "#e6e9ee";
          for (const t of sy.ticks(4)) { const y = T + (1 - t.t) * (h - T - B); g.beginPath(); g.moveTo(L, y); g.lineTo(w - R, y); g.stroke(); g.fillStyle = "#555"; g.fillText(t.label, 2, y + 4); }
          const xt = sx.ticks(5), step = Math.max(1, Math.ceil(xt.length / 6));
          xt.forEach((t, k) => { if (k % step === 0) g.fillText(t.label, L + t.t * (w - L - R) - 8, h - 10); });
          g.fillStyle = "rgba(0,114,178,0.6)";
          for (const j of pts) { const x = L + sx.f(j.params[dim]) * (w - L - R), y = T + (1 - sy.f(j.objective)) * (h - T - B); g.beginPath(); g.arc(x, y, 3, 0, 7); g.fill(); }
          return pts.length;
        }

        // The jobs table: sortable, filterable, shown 200 rows at a time (a 10,000-row table is slow to lay out).
        function jobsTable(table, more, shownLabel, varying) {
          const cols = [["id", (j) => j.id], ["status", (j) => j.status]].concat(varying.map((v) => [v, (j) => j.params[v]]),
            [["objective", (j) => j.objective], ["best val", (j) => j.best_val_loss], ["final train", (j) => j.final_train_loss],
             ["tokens/s", (j) => j.tokens_per_s], ["attempts", (j) => j.attempts], ["worker", (j) => j.worker]]);
          let rows = [], sortCol = -1, asc = true, filter = "", limit = 200;
          const head = table.tHead, body = table.tBodies[0];
          head.innerHTML = "<tr>" + cols.map((c, i) => "<th data-col=\"" + i + "\">" + esc(c[0]) + "</th>").join("") + "</tr>";
          head.addEventListener("click", (e) => { const i = +e.target.dataset.col; if (isNaN(i)) return; asc = sortCol === i ? !asc : true; sortCol = i; render(); });
          $("#filter").addEventListener("input", (e) => { filter = e.target.value.trim().toLowerCase(); limit = 200; render(); });
          more.addEventListener("click", () => { limit += 1000; render(); });
          function render() {
            let list = rows;
            if (filter) {
              const m = filter.match(/^(\w[\w.]*):(.*)$/), col = m && cols.findIndex((c) => c[0].toLowerCase() === m[1]);
              list = list.filter((j) => col != null && col >= 0 ? String(cols[col][1](j)).toLowerCase() === m[2].trim() : JSON.stringify(j).toLowerCase().includes(filter));
            }
            if (sortCol >= 0) { const get = cols[sortCol][1]; list = list.slice().sort((a, b) => { const x = get(a), y = get(b); if (x == null) return 1; if (y == null) return -1; return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1); }); }
            const best = rows.length && rows[0].objective != null ? rows[0].id : null;
            body.innerHTML = list.slice(0, limit).map((j) => "<tr" + (j.id === best ? " class=\"bestrow\"" : "") + ">" + cols.map((c, i) => { const v = c[1](j);
              return "<td" + (i === 1 ? " class=\"status " + esc(v) + "\"" : "") + ">" + (i === 0 ? "<a href=\"/jobs/" + v + "\">" + v + "</a>" : esc(typeof v === "number" ? fmt(v) : v == null ? "–" : typeof v === "object" ? JSON.stringify(v) : v)) + "</td>"; }).join("") + "</tr>").join("");
            more.hidden = list.length <= limit; shownLabel.textContent = Math.min(limit, list.length) + " of " + list.length + " shown";
            dash.rows = Math.min(limit, list.length);
          }
          return {set(r) { rows = r; render(); }};
        }

        // A stream that fails may mean the session ended (a logout, a restart, a removed token):
        // then go to the login page rather than reconnect for ever.
        async function loggedOutCheck() {
          try { const r = await fetch("/api/workers", {credentials: "same-origin"}); if (r.status === 401) location.href = "/login?next=" + encodeURIComponent(location.pathname); } catch (e) {}
        }

        async function sweepPage(root) {
          const sweep = +root.dataset.sweep, varying = JSON.parse(root.dataset.varying), metric = root.dataset.metric; dash.mode = root.dataset.mode;
          const curves = new LineChart($("#curves"), $("#curves-tip"), {onClick: (id) => { location.href = "/jobs/" + id; }, empty: "no curve points yet"});
          const table = jobsTable($("#jobs"), $("#more"), $("#shown"), varying);
          let jobs = [], kind = "eval", limit = 100, jobsTimer = null, lastJobsFetch = 0;
          const label = (id) => { const j = jobs.find((x) => x.id === id); return "job " + id + (j ? " " + varying.map((v) => v + "=" + JSON.stringify(j.params[v])).join(" ") : ""); };
          async function loadJobs() {
            // (at most every 5 s for a sweep of over 2,000 jobs while jobs change state: jobsSoon)
            lastJobsFetch = Date.now(); jobs = await getJSON("/api/sweeps/" + sweep + "/jobs"); dash.jobs = jobs.length;
            table.set(jobs);
            const best = jobs.find((j) => j.objective != null); if (best) $("#best").textContent = fmt(best.objective);
            drawPlots();
          }
          function drawPlots() {
            const dims = varying.concat([metric]);
            const drawn = parallelCoords($("#parallel"), jobs, dims, metric); dash.axes = drawn.axes; dash.lines = drawn.lines;
            const box = $("#scatters"); box.innerHTML = varying.map((v, i) => "<div><canvas id=\"scatter-" + i + "\" height=\"200\"></canvas></div>").join("");
            // Points drawn in each scatter plot (the jobs with both the value and an objective).
            dash.scatterPoints = varying.map((v, i) => scatter($("#scatter-" + i), jobs, v));
          }
          async function loadCurves() {
            const data = await getJSON("/api/sweeps/" + sweep + "/curves?kind=" + kind + "&limit=" + limit);
            curves.clear();
            for (const s of data.series) curves.set(s.job, s.steps, s.values, label(s.job));
            dash.series = curves.series.size; dash.points = curves.pointCount; if (kind === "eval") dash.evalPoints = curves.pointCount;
            $("#curve-note").textContent = (data.series.length < data.jobs ? "the " + data.series.length + " best of " + data.jobs + " jobs (by the objective), " : data.series.length + " jobs, ") + "at most 200 points each; click a line to open its job";
          }
          // One load at a time; a reload asked for meanwhile runs once after it.
          let loading = null, again = false;
          async function loadAll() {
            if (loading) { again = true; return loading; }
            loading = (async () => {
              do { again = false; dash.loads++; await loadJobs(); await loadCurves(); } while (again);
              if (!dash.ready) dash.readyMs = Math.round(performance.now()); dash.ready = true;
            })();
            try { await loading; } finally { loading = null; }
          }
          const adding = new Set();
          async function addJob(job) {
            if (adding.has(job) || curves.series.size >= limit) return; adding.add(job);
            try { const d = await getJSON("/api/sweeps/" + sweep + "/curves?kind=" + kind + "&jobs=" + job); for (const s of d.series) if (s.steps.length) curves.set(s.job, s.steps, s.values, label(s.job)); }
            finally { adding.delete(job); dash.series = curves.series.size; dash.points = curves.pointCount; if (kind === "eval") dash.evalPoints = curves.pointCount; }
          }
          function jobsSoon() { if (jobsTimer) return; const wait = Math.max(0, (jobs.length > 2000 ? 5000 : 1000) - (Date.now() - lastJobsFetch));
            jobsTimer = setTimeout(() => { jobsTimer = null; loadJobs().catch(console.error); }, wait); }
          $("#curve-kind").addEventListener("change", (e) => { kind = e.target.value; loadCurves(); });
          $("#curve-limit").addEventListener("change", (e) => { limit = Math.max(1, Math.min(2000, +e.target.value || 100)); loadCurves(); });
          $("#curve-log").addEventListener("change", (e) => { curves.log = e.target.checked; curves.draw(); });
          window.addEventListener("resize", () => { if (jobs.length) drawPlots(); });
          // The stream is subscribed first (its `hello`), so nothing stored between the first
          // fetch and it is missed (a point that arrives twice just lands on its step again).
          const live = $("#live"), es = new EventSource("/api/sweeps/" + sweep + "/stream");
          const subscribed = new Promise((done) => { es.addEventListener("hello", done, {once: true}); setTimeout(done, 3000); });
          es.onopen = () => { live.textContent = "live"; live.className = "live on"; };
          es.onerror = () => { live.textContent = "reconnecting…"; live.className = "live"; loggedOutCheck(); };
          es.addEventListener("points", (e) => {
            const d = JSON.parse(e.data), k = kind === "train" ? 0 : 1; dash.updates++;
            let known = curves.series.has(d.job);
            for (const [pk, step, v] of d.points) if (pk === k && known) curves.append(d.job, step, v);
            if (!known && d.points.some((p) => p[0] === k)) addJob(d.job);
            dash.points = curves.pointCount; if (kind === "eval") dash.evalPoints = curves.pointCount;
          });
          es.addEventListener("changed", (e) => { const c = JSON.parse(e.data); $("#counts").textContent = Object.entries(c).map(([s, n]) => n + " " + s).join(", "); jobsSoon(); });
          es.addEventListener("reload", () => loadAll());
          await subscribed;
          await loadAll();
        }

        async function jobPage(root) {
          const job = +root.dataset.job, sweep = +root.dataset.sweep;
          const loss = new LineChart($("#job-loss"), $("#job-loss-tip"), {legend: true}), lr = new LineChart($("#job-lr"), null), tps = new LineChart($("#job-tps"), null);
          const rows = await getJSON("/api/jobs/" + job + "/events");
          const col = {train: [[], []], eval: [[], []], lr: [[], []], tps: [[], []]};
          const put = (c, x, y) => { if (typeof x === "number" && typeof y === "number") { col[c][0].push(x); col[c][1].push(y); } };
          for (const r of rows) { const e = r.event; if (!e) continue;
            if (e.event === "step") { put("train", e.step, e.loss); put("lr", e.step, e.lr); put("tps", e.step, e.tokens_per_s); }
            if (e.event === "eval") put("eval", e.step, e.loss); }
          // Steps may repeat across attempts: the later attempt's value wins, as in `tuna export`.
          const dedupe = ([xs, ys]) => { const m = new Map(); xs.forEach((x, i) => m.set(x, ys[i])); const k = [...m.keys()].sort((a, b) => a - b); return [k, k.map((x) => m.get(x))]; };
          loss.set("train", ...dedupe(col.train), "train loss"); loss.set("eval", ...dedupe(col.eval), "validation loss");
          lr.set("lr", ...dedupe(col.lr), "learning rate"); tps.set("tps", ...dedupe(col.tps), "tokens/s");
          dash.series = [...loss.series.values()].filter((s) => s.xs.length > 0).length; dash.points = loss.pointCount;
          dash.trainPoints = loss.series.get("train").xs.length; dash.evalPoints = loss.series.get("eval").xs.length; dash.ready = true;
          const es = new EventSource("/api/sweeps/" + sweep + "/stream");
          es.onerror = loggedOutCheck;
          es.addEventListener("points", (e) => { const d = JSON.parse(e.data); if (d.job !== job) return; dash.updates++;
            for (const [k, step, v] of d.points) loss.append(k === 0 ? "train" : "eval", step, v);
            dash.points = loss.pointCount; dash.evalPoints = loss.series.get("eval").xs.length; });
        }

        const sweepRoot = document.getElementById("sweep-page"), jobRoot = document.getElementById("job-page");
        const fail = (e) => { dash.error = String(e); console.error(e); };
        if (sweepRoot) sweepPage(sweepRoot).catch(fail); else if (jobRoot) jobPage(jobRoot).catch(fail); else dash.ready = true;
        })();
        """#
}
