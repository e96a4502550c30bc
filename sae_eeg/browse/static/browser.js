/* SAE feature browser: the index (sortable, filterable table and t-SNE map) and the feature page.
 *
 * Data files are scripts that call SAE_BROWSER.index(...) or SAE_BROWSER.block(k, ...): a page
 * opened from file:// may load scripts but not fetch JSON. Charts use the vendored uPlot.
 */
"use strict";

const SAE_BROWSER = (() => {
  let indexData = null;
  const blocks = {};
  const waiting = {};

  // ------------------------------------------------------------------ data
  function index(data) { indexData = data; }

  function block(k, data) {
    blocks[k] = data;
    (waiting[k] || []).forEach((resolve) => resolve(data));
    delete waiting[k];
  }

  function loadBlock(k) {
    if (blocks[k]) return Promise.resolve(blocks[k]);
    return new Promise((resolve, reject) => {
      if (waiting[k]) { waiting[k].push(resolve); return; }
      waiting[k] = [resolve];
      const script = document.createElement("script");
      script.src = `data/features_${String(k).padStart(5, "0")}.js`;
      script.onerror = () => reject(new Error(`cannot load ${script.src}`));
      document.head.appendChild(script);
    });
  }

  /** Float32Array from {lo, hi, q}: bytes 0..255 mapped back onto [lo, hi]. */
  function unpack(packed) {
    const bytes = atob(packed.q);
    const out = new Float32Array(bytes.length);
    const step = (packed.hi - packed.lo) / 255;
    for (let i = 0; i < bytes.length; i++) out[i] = packed.lo + step * bytes.charCodeAt(i);
    return out;
  }

  // ------------------------------------------------------------------ formatting
  function fmt(value, type) {
    if (value === null || value === undefined) return "\u2013";
    if (type === "bool" || typeof value === "boolean") return value ? "yes" : "no";
    if (typeof value === "number") {
      if (Number.isInteger(value)) return String(value);
      const abs = Math.abs(value);
      return abs !== 0 && (abs < 1e-3 || abs >= 1e5) ? value.toExponential(2) : String(+value.toPrecision(4));
    }
    return String(value);
  }

  function escapeHtml(text) {
    return String(text).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
  }

  function el(tag, attrs = {}, text = null) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== null) node.textContent = text;
    return node;
  }

  const PALETTE = ["#0173b2", "#de8f05", "#029e73", "#d55e00", "#cc78bc", "#ca9161", "#fbafe4", "#949494",
                   "#ece133", "#56b4e9"];

  function categoryColours(values) {
    const cats = [...new Set(values.filter((v) => v !== null))].sort();
    const colours = {};
    cats.forEach((c, i) => { colours[c] = PALETTE[i % PALETTE.length]; });
    return colours;
  }

  // ------------------------------------------------------------------ index page
  /** A predicate for one filter box, or null when empty; throws on text it cannot read. */
  function parseFilter(text, type) {
    text = text.trim();
    if (!text) return null;
    if (type === "bool") {
      const t = text.toLowerCase();
      if (["yes", "y", "true", "1"].includes(t)) return (v) => v === true;
      if (["no", "n", "false", "0"].includes(t)) return (v) => v === false;
      throw new Error("yes or no");
    }
    if (type === "number") {
      const num = "([-+]?(?:\\d+\\.?\\d*|\\.\\d+)(?:[eE][-+]?\\d+)?)";
      let m = text.match(new RegExp(`^${num}\\s*\\.\\.\\s*${num}$`));
      if (m) { const lo = +m[1], hi = +m[2]; return (v) => v !== null && v >= lo && v <= hi; }
      m = text.match(new RegExp(`^(>=|<=|>|<|=|!=)?\\s*${num}$`));
      if (!m) throw new Error("a number, >x, <x, >=x, <=x, !=x or a..b");
      const x = +m[2];
      const ops = {">": (v) => v > x, "<": (v) => v < x, ">=": (v) => v >= x, "<=": (v) => v <= x,
                   "!=": (v) => v !== x, "=": (v) => v === x};
      const op = ops[m[1] || "="];
      return (v) => v !== null && op(v);
    }
    const needle = text.toLowerCase();
    return (v) => v !== null && String(v).toLowerCase().includes(needle);
  }

  function startIndex() {
    const data = indexData;
    const cols = data.columns;
    const rows = data.rows;
    document.title = data.title;
    document.getElementById("title").textContent = data.title;
    const sizes = data.sizes ? ` \u00b7 ${(Object.values(data.sizes).reduce((a, b) => a + b, 0) / 1e6).toFixed(1)} MB` : "";
    document.getElementById("summary").textContent =
      `${data.n_features} features \u00b7 ${data.stimuli.length} stimuli \u00b7 top ${data.n_clips} clips of ` +
      `${data.clip_length} s per feature${sizes}`;
    const state = {sortKey: 0, sortDir: 1, filters: cols.map(() => null)};

    const thead = document.querySelector("#features thead");
    const headRow = el("tr");
    const filterRow = el("tr", {class: "filters"});
    cols.forEach((col, j) => {
      const th = el("th", {class: col.type === "text" ? "text" : "", "data-key": col.key, title: `sort by ${col.header}`}, col.header);
      th.addEventListener("click", () => {
        state.sortDir = state.sortKey === j ? -state.sortDir : 1;
        state.sortKey = j;
        render();
      });
      headRow.appendChild(th);
      const input = el("input", {type: "text", "data-key": col.key, placeholder: "filter", "aria-label": `filter ${col.header}`});
      let timer = null;
      input.addEventListener("input", () => {
        clearTimeout(timer);
        timer = setTimeout(() => {
          try { state.filters[j] = parseFilter(input.value, col.type); input.classList.remove("invalid"); input.title = ""; }
          catch (err) { state.filters[j] = null; input.classList.add("invalid"); input.title = `expected ${err.message}`; }
          render();
        }, 150);
      });
      const cell = el("th");
      cell.appendChild(input);
      filterRow.appendChild(cell);
    });
    thead.append(headRow, filterRow);
    document.getElementById("reset").addEventListener("click", () => {
      filterRow.querySelectorAll("input").forEach((input) => { input.value = ""; input.classList.remove("invalid"); });
      state.filters = cols.map(() => null);
      render();
    });

    const colourKey = data.colour ? cols.findIndex((c) => c.key === data.colour) : -1;
    const colours = colourKey >= 0 ? categoryColours(rows.map((r) => r[colourKey])) : {};
    const map = data.tsne ? makeMap(data, rows, colourKey, colours) : null;
    if (!map) document.getElementById("map-section").hidden = true;

    const tbody = document.querySelector("#features tbody");
    function render() {
      const active = state.filters.map((f, j) => [f, j]).filter(([f]) => f);
      const shown = [];
      for (let i = 0; i < rows.length; i++) {
        if (active.every(([f, j]) => f(rows[i][j]))) shown.push(i);
      }
      const k = state.sortKey, dir = state.sortDir;
      shown.sort((a, b) => {
        const va = rows[a][k], vb = rows[b][k];
        if (va === vb) return a - b;
        if (va === null) return 1;
        if (vb === null) return -1;
        return (va < vb ? -1 : 1) * dir;
      });
      tbody.innerHTML = shown.map((i) => {
        const r = rows[i];
        const cells = cols.map((col, j) => {
          const text = escapeHtml(fmt(r[j], col.type));
          if (j === 0) return `<td><a href="feature.html#${r[0]}">${text}</a></td>`;
          return `<td${col.type === "text" ? ' class="text"' : ""}>${text}</td>`;
        });
        return `<tr data-feature="${r[0]}">${cells.join("")}</tr>`;
      }).join("");
      headRow.querySelectorAll("th").forEach((th, j) => {
        th.classList.toggle("sorted-asc", j === k && dir === 1);
        th.classList.toggle("sorted-desc", j === k && dir === -1);
      });
      document.getElementById("count").textContent = `${shown.length} of ${rows.length} features shown`;
      if (map) map.draw(new Set(shown));
    }
    render();
  }

  function makeMap(data, rows, colourKey, colours) {
    const canvas = document.getElementById("map");
    const ctx = canvas.getContext("2d");
    const pts = data.tsne.map((xy, i) => (xy ? {i, x: xy[0], y: xy[1]} : null)).filter(Boolean);
    if (!pts.length) return null;
    const xs = pts.map((p) => p.x), ys = pts.map((p) => p.y);
    const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
    const pad = 10, w = canvas.width - 2 * pad, h = canvas.height - 2 * pad;
    pts.forEach((p) => {
      p.px = pad + (x1 > x0 ? (p.x - x0) / (x1 - x0) : 0.5) * w;
      p.py = pad + (y1 > y0 ? (y1 - p.y) / (y1 - y0) : 0.5) * h;
    });
    const legend = document.getElementById("legend");
    for (const [name, colour] of Object.entries(colours)) {
      const item = el("span");
      const dot = el("i");
      dot.style.background = colour;
      item.append(dot, document.createTextNode(name));
      legend.appendChild(item);
    }
    const colourOf = (i) => (colourKey >= 0 && rows[i][colourKey] !== null ? colours[rows[i][colourKey]] : "#555");
    function nearest(evt) {
      const box = canvas.getBoundingClientRect();
      const mx = (evt.clientX - box.left) * canvas.width / box.width, my = (evt.clientY - box.top) * canvas.height / box.height;
      let best = null, dist = 36;
      for (const p of pts) {
        const d = (p.px - mx) ** 2 + (p.py - my) ** 2;
        if (d < dist) { dist = d; best = p; }
      }
      return best;
    }
    canvas.addEventListener("mousemove", (evt) => {
      const p = nearest(evt);
      canvas.title = p ? `feature ${p.i}${colourKey >= 0 ? ` (${fmt(rows[p.i][colourKey])})` : ""}` : "";
    });
    canvas.addEventListener("click", (evt) => {
      const p = nearest(evt);
      if (p) window.location.href = `feature.html#${p.i}`;
    });
    return {
      draw(shown) {
        ctx.clearRect(0, 0, canvas.width, canvas.height);
        for (const pass of [false, true]) {
          for (const p of pts) {
            if (shown.has(p.i) !== pass) continue;
            ctx.fillStyle = pass ? colourOf(p.i) : "#ddd";
            ctx.beginPath();
            ctx.arc(p.px, p.py, pass ? 2.6 : 2, 0, 2 * Math.PI);
            ctx.fill();
          }
        }
      },
    };
  }

  // ------------------------------------------------------------------ feature page
  const charts = [];

  function startFeature() {
    window.addEventListener("hashchange", showFeature);
    document.getElementById("goto").addEventListener("submit", (evt) => {
      evt.preventDefault();
      window.location.hash = `#${document.getElementById("goto-id").value}`;
    });
    showFeature();
  }

  function currentFeature() {
    const id = Number.parseInt(window.location.hash.slice(1), 10);
    return Number.isInteger(id) && id >= 0 && id < indexData.n_features ? id : null;
  }

  async function showFeature() {
    const data = indexData;
    const id = currentFeature();
    charts.splice(0).forEach((chart) => chart.destroy());
    const title = document.getElementById("title");
    if (id === null) {
      title.textContent = `No feature "${window.location.hash.slice(1)}": ids go from 0 to ${data.n_features - 1}`;
      return;
    }
    document.title = `Feature ${id} \u00b7 ${data.title}`;
    title.textContent = `Feature ${id}`;
    document.getElementById("goto-id").value = id;
    document.getElementById("prev").href = `#${Math.max(id - 1, 0)}`;
    document.getElementById("next").href = `#${Math.min(id + 1, data.n_features - 1)}`;
    renderFacts(id);
    const blockData = await loadBlock(Math.floor(id / data.block_size));
    const feature = blockData.features[String(id)];
    renderEeg(id, feature);
    renderClips(feature, blockData.excerpts);
    renderReceptiveField(feature.rf);
    renderNeighbours(feature.neighbours);
    renderTables(feature.tables, blockData.columns);
  }

  function renderFacts(id) {
    const facts = document.getElementById("facts");
    facts.replaceChildren();
    indexData.columns.forEach((col, j) => {
      if (j === 0) return;
      const item = el("div");
      item.append(el("dt", {}, col.header), el("dd", {"data-key": col.key}, fmt(indexData.rows[id][j], col.type)));
      facts.appendChild(item);
    });
  }

  function missing(container, text) {
    container.replaceChildren(el("p", {class: "missing"}, text));
  }

  /** The channel of the feature's row in the first index column that names channels, when it has a TRF there. */
  function tableChannel(id, channels) {
    const j = indexData.columns.findIndex((c) => c.key.endsWith(".channel"));
    const value = j >= 0 ? indexData.rows[id][j] : null;
    return value !== null && value in channels ? value : null;
  }

  /** Lags in s: a list, or {start, step, n} for a regular grid. */
  function lagValues(lags) {
    return Array.isArray(lags) ? lags : Array.from({length: lags.n}, (_, i) => lags.start + i * lags.step);
  }

  function splitColour(split, k) { return SPLIT_COLOURS[split] || PALETTE[k % PALETTE.length]; }

  function renderEeg(id, feature) {
    const select = document.getElementById("channel");
    const trfBox = document.getElementById("trf");
    const note = document.getElementById("trf-note");
    select.replaceChildren();
    select.onchange = null;
    const trf = feature.trf;
    if (!trf) {
      select.disabled = true;
      missing(trfBox, "No TRF: the protocol did not analyse this feature (it fires too rarely, or the EEG analyses have not run).");
      note.textContent = "";
    } else {
      select.disabled = false;
      Object.keys(trf.channels).forEach((ch) => select.appendChild(el("option", {value: ch}, ch)));
      select.value = trf.chosen || tableChannel(id, trf.channels) || trf.strongest;
      const draw = () => drawTrf(trfBox, lagValues(trf.lags), trf.channels[select.value], select.value);
      select.onchange = draw;
      draw();
      note.replaceChildren(document.createTextNode("Mean over subjects with its 95% confidence interval: "));
      Object.entries(Object.values(trf.channels)[0]).forEach(([split, v], k) => {
        const label = el("b", {}, `${split} runs (n = ${v.n})`);
        label.style.color = splitColour(split, k);
        note.append(k ? ", " : "", label);
      });
    }
    const img = document.getElementById("topo");
    const caption = document.getElementById("topo-note");
    if (feature.topo) {
      img.hidden = false;
      img.src = feature.topo;
      caption.textContent = "Subject-mean TRF weights over the scalp at the lag where their spread over channels peaks.";
    } else {
      img.hidden = true;
      img.removeAttribute("src");
      caption.textContent = "No topography: all-channel TRFs were fitted only for the features named in the alignment's clusters settings.";
    }
  }

  const SPLIT_COLOURS = {test: "#c0392b", dev: "#2c7fb8", all: "#c0392b"};

  function drawTrf(box, lagsSeconds, channel, name) {
    box.replaceChildren();
    const lags = lagsSeconds.map((l) => +(l * 1e3).toFixed(3));
    const n = lags.length;
    const data = [lags];
    const series = [{label: "lag (ms)"}];
    const bands = [];
    Object.entries(channel).forEach(([split, s], k) => {
      const colour = splitColour(split, k);
      const base = data.length;
      const v = Array.from(unpack(s.values));  // mean, lower, upper bound, one after the other
      data.push(v.slice(0, n), v.slice(n, 2 * n), v.slice(2 * n, 3 * n));
      series.push({label: `${split} mean`, stroke: colour, width: 2},
                  {label: `${split} CI low`, stroke: colour + "55", width: 1, points: {show: false}},
                  {label: `${split} CI high`, stroke: colour + "55", width: 1, points: {show: false}});
      bands.push({series: [base + 2, base + 1], fill: colour + "22"});
    });
    const chart = new uPlot({
      width: 520, height: 280, title: `TRF at ${name}`, legend: {show: false},
      scales: {x: {time: false}},
      series, bands,
      axes: [{label: "Lag (ms)"}, {label: "TRF weight (a.u.)", size: 60}],
    }, data, box);
    charts.push(chart);
  }

  function renderClips(feature, excerpts) {
    const box = document.getElementById("clips");
    box.replaceChildren();
    if (!feature.clips.length) { missing(box, "This feature never fires on these stimuli."); return; }
    feature.clips.forEach((clip, rank) => {
      const ex = excerpts[String(clip.excerpt)];
      const card = el("div", {class: "clip"});
      card.appendChild(el("div", {class: "head"},
        `#${rank + 1} \u00b7 ${ex.stimulus} at ${fmt(clip.peak)} s \u00b7 max activation ${fmt(clip.max)}`));
      const audio = el("audio", {controls: "", preload: "metadata", src: ex.src});
      card.appendChild(audio);
      const plot = el("div");
      card.appendChild(plot);
      box.appendChild(card);
      const env = unpack(ex.env), act = unpack(clip.act);
      const n = ex.n;
      const times = Array.from({length: n}, (_, i) => +(ex.t0 + i * ex.dt).toFixed(4));
      const lo = Array.from({length: n}, (_, i) => env[2 * i]), hi = Array.from({length: n}, (_, i) => env[2 * i + 1]);
      const chart = new uPlot({
        width: 360, height: 120, legend: {show: false}, cursor: {y: false},
        scales: {x: {time: false}, wave: {range: [ex.env.lo || -1, ex.env.hi || 1]}, act: {range: [0, clip.act.hi || 1]}},
        series: [{}, {scale: "wave", stroke: "#bbb", width: 1, points: {show: false}},
                 {scale: "wave", stroke: "#bbb", width: 1, points: {show: false}},
                 {scale: "act", stroke: "#d62728", width: 2, points: {show: false}, label: "activation"}],
        bands: [{series: [2, 1], fill: "#00000022"}],
        axes: [{size: 30}, {scale: "wave", show: false}, {scale: "act", side: 1, size: 40}],
      }, [times, lo, hi, Array.from(act)], plot);
      charts.push(chart);
      audio.addEventListener("timeupdate", () => {
        chart.setCursor({left: chart.valToPos(audio.currentTime, "x"), top: 0});
      });
    });
  }

  // magma colour map at 9 stops
  const MAGMA = [[0, 0, 4], [28, 16, 68], [79, 18, 123], [129, 37, 129], [181, 54, 122], [229, 80, 100],
                 [251, 135, 97], [254, 194, 135], [252, 253, 191]];

  function magma(t) {
    const x = Math.min(Math.max(t, 0), 1) * (MAGMA.length - 1);
    const i = Math.min(Math.floor(x), MAGMA.length - 2), f = x - i;
    return MAGMA[i].map((c, k) => Math.round(c + f * (MAGMA[i + 1][k] - c)));
  }

  function renderReceptiveField(rf) {
    const canvas = document.getElementById("rf");
    const axes = document.getElementById("rf-axes");
    const {lags, mel_freqs: freqs} = indexData.rf_axes;
    if (!rf) {
      canvas.hidden = true;
      axes.textContent = "No receptive field: the feature never fires.";
      return;
    }
    canvas.hidden = false;
    const values = unpack(rf);
    const nLags = lags.length, nMels = freqs.length;
    const scale = 4;
    canvas.width = nLags;
    canvas.height = nMels;
    canvas.style.width = `${nLags * scale * 3}px`;
    canvas.style.height = `${nMels * scale}px`;
    const ctx = canvas.getContext("2d");
    const image = ctx.createImageData(nLags, nMels);
    const span = rf.hi - rf.lo || 1;
    for (let t = 0; t < nLags; t++) {
      for (let m = 0; m < nMels; m++) {
        const [r, g, b] = magma((values[t * nMels + m] - rf.lo) / span);
        const p = 4 * ((nMels - 1 - m) * nLags + t);  // low bands at the bottom
        image.data[p] = r; image.data[p + 1] = g; image.data[p + 2] = b; image.data[p + 3] = 255;
      }
    }
    ctx.putImageData(image, 0, 0);
    axes.textContent = `Time ${fmt(lags[0] * 1e3)} to ${fmt(lags[nLags - 1] * 1e3)} ms (left to right), ` +
      `${fmt(freqs[0])} Hz to ${fmt(freqs[nMels - 1] / 1e3)} kHz (bottom to top); colour: log10 mel power ` +
      `${fmt(rf.lo)} (dark) to ${fmt(rf.hi)} (light).`;
  }

  function labelOf(id) {
    const j = indexData.colour ? indexData.columns.findIndex((c) => c.key === indexData.colour) : -1;
    return j >= 0 && indexData.rows[id][j] !== null ? ` \u00b7 ${indexData.rows[id][j]}` : "";
  }

  function renderNeighbours(neighbours) {
    const list = document.getElementById("neighbours");
    list.replaceChildren();
    if (!neighbours) { list.appendChild(el("li", {class: "missing"}, "No SAE given: no decoder directions.")); return; }
    neighbours.forEach(([id, cos]) => {
      const item = el("li");
      item.append(el("a", {href: `#${id}`}, `feature ${id}`), document.createTextNode(` \u00b7 cosine ${fmt(cos)}${labelOf(id)}`));
      list.appendChild(item);
    });
  }

  function renderTables(tables, columns) {
    const box = document.getElementById("tables");
    box.replaceChildren();
    indexData.tables.forEach((spec) => {
      const section = el("section", {"data-table": spec.name});
      section.appendChild(el("h2", {}, spec.title));
      if (spec.description) section.appendChild(el("p", {class: "note"}, spec.description));
      const rows = tables[spec.name] || [];
      if (!rows.length) {
        section.appendChild(el("p", {class: "missing"}, "No row for this feature."));
      } else {
        const table = el("table");
        const head = el("tr");
        columns[spec.name].forEach((c) => head.appendChild(el("th", {}, c)));
        table.appendChild(el("thead")).appendChild(head);
        const body = el("tbody");
        rows.forEach((row) => {
          const tr = el("tr");
          row.forEach((v) => tr.appendChild(el("td", {class: typeof v === "string" ? "text" : ""}, fmt(v))));
          body.appendChild(tr);
        });
        table.appendChild(body);
        section.appendChild(table);
      }
      box.appendChild(section);
    });
  }

  function start() {
    const page = document.body.dataset.page;
    if (!indexData) throw new Error("data/index.js did not load: the site is incomplete");
    if (page === "index") startIndex();
    else if (page === "feature") startFeature();
  }

  document.addEventListener("DOMContentLoaded", start);
  return {index, block, unpack, parseFilter};
})();
