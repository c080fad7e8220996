// gather-envs leaderboard: renders the embedded data (the same as data.json) with hand-written SVG.
// Every submitted text reaches the page as textContent or an attribute value, never as markup; a link
// becomes an <a> only when its URL parses with an http(s) scheme.
"use strict";

const DATA = JSON.parse(document.getElementById("leaderboard-data").textContent);
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"];
const SVG_NS = "http://www.w3.org/2000/svg";
const W = 540, H = 300, PAD = { left: 44, right: 14, top: 12, bottom: 34 };

const $ = (id) => document.getElementById(id);
const fmt = (x) => (x === null || x === undefined ? "—" : x.toFixed(3));
const percent = (x) => (x === null || x === undefined ? "—" : (100 * x).toFixed(1) + "%");
const signed = (x) => (x === null || x === undefined ? "—" : (x >= 0 ? "+" : "") + x.toFixed(3));

function el(tag, attrs, text) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG_NS, tag.slice(4)) : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function cell(entry, T, k) {
  return entry.table.find((row) => row.T === T && row.k === k) || null;
}

function options(select, values, labels, keep) {
  const previous = select.value;
  select.replaceChildren(...values.map((v, i) => el("option", { value: String(v) }, labels ? labels[i] : String(v))));
  if (keep && values.map(String).includes(previous)) select.value = previous;
}

function board() {
  return DATA.boards.find((b) => b.id === $("board").value) || DATA.boards[0];
}

function renderTable(b) {
  const T = b.rank_T, K = b.top_k;
  $("board-title").textContent = `${b.env_id} · ${b.family} · ${b.track_label}`;
  $("board-note").textContent =
    `${b.num_tasks} test tasks, T ∈ {${b.budgets.join(", ")}}, ranked at T = ${T}; 95% bootstrap intervals over tasks.`;
  const head = el("tr");
  for (const [label, cls] of [["#", ""], ["entry", "name"], ["model", "name"], [`PASS@(1,${T})`, ""], ["95% CI", ""],
    [`PASS@(${K},${T})`, ""], ["95% CI", ""], [`|B_${T}|`, ""], ["T*", ""], ["n", ""], ["repeats", ""], ["above next", ""], ["McNemar p", ""]]) {
    head.append(el("th", cls ? { class: cls } : {}, label));
  }
  $("ranking").tHead.replaceChildren(head);
  const rows = b.entries.map((e, i) => {
    const one = cell(e, T, 1), top = cell(e, T, K), above = e.above_next;
    const tr = el("tr", { "data-name": e.name });
    tr.append(el("td", {}, String(i + 1)), el("td", { class: "name" }, e.name),
      el("td", { class: "name" }, e.model || `scripted (${e.agent})`),
      el("td", {}, fmt(one.pass)), el("td", { class: "ci" }, `[${fmt(one.ci_low)}, ${fmt(one.ci_high)}]`),
      el("td", {}, fmt(top.pass)), el("td", { class: "ci" }, `[${fmt(top.ci_low)}, ${fmt(top.ci_high)}]`),
      el("td", {}, String(e.boundary[String(T)])), el("td", {}, e.t_star === null ? "—" : String(e.t_star)),
      el("td", {}, String(e.n)),
      el("td", { class: "repeats", title: "share of episodes at T >= 1 whose whole trajectory repeats another of their (task, T) cell" },
        percent(e.duplicates.searching)));
    if (above) {
      tr.append(el("td", { class: above.significant ? "yes" : "no" },
        `${above.significant ? "yes" : "no"} (Δ ${signed(above.diff)})`), el("td", {}, above.mcnemar_p.toPrecision(3)));
    } else {
      tr.append(el("td", { class: "no" }, "—"), el("td", {}, "—"));
    }
    return tr;
  });
  const floor = b.chance_floor;
  if (Object.keys(floor).length) {
    const tr = el("tr", { class: "floor" });
    tr.append(el("td", {}, ""), el("td", { class: "name" }, "chance floor"), el("td", { class: "name" }, "question-only guesser"),
      el("td", {}, fmt(floor["1"])), el("td", {}, ""), el("td", {}, fmt(floor[String(K)])), el("td", {}, ""),
      el("td", {}, "—"), el("td", {}, "—"), el("td", {}, "—"), el("td", {}, ""), el("td", {}, ""), el("td", {}, ""));
    rows.push(tr);
  }
  $("ranking").tBodies[0].replaceChildren(...rows);
}

function safeLink(url) {
  try {
    const parsed = new URL(url);
    return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
  } catch (error) {
    return null;
  }
}

function renderDetails(b) {
  const items = b.entries.map((e) => {
    const item = el("li", { "data-name": e.name });
    item.append(el("strong", {}, e.name), document.createTextNode(
      ` — ${e.model || `scripted (${e.agent})`}${e.backend ? `, ${e.backend}` : ""}; ${e.authors.join(", ")}, ${e.date}` +
      `${e.prompts_modified ? "; prompts modified" : ""}. `));
    item.append(el("span", { class: "notes" }, e.notes));
    for (const url of e.links) {
      const href = safeLink(url);
      item.append(document.createTextNode(" "), href ? el("a", { href, rel: "noopener noreferrer nofollow" }, url) : el("span", {}, url));
    }
    return item;
  });
  $("details").replaceChildren(...items);
}

function axes(svg, xs, xLabel, yLabel, yMin, yMax) {
  const x = (k) => PAD.left + (Math.log2(k) / Math.max(1, Math.log2(xs[xs.length - 1]))) * (W - PAD.left - PAD.right);
  const y = (v) => H - PAD.bottom - ((v - yMin) / (yMax - yMin)) * (H - PAD.top - PAD.bottom);
  for (let i = 0; i <= 4; i++) {
    const v = yMin + ((yMax - yMin) * i) / 4;
    svg.append(el("svg:line", { x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v), stroke: "#eceef2" }));
    svg.append(el("svg:text", { x: PAD.left - 6, y: y(v) + 4, "text-anchor": "end" }, v.toFixed(2)));
  }
  for (const k of xs) svg.append(el("svg:text", { x: x(k), y: H - PAD.bottom + 14, "text-anchor": "middle" }, String(k)));
  svg.append(el("svg:text", { x: (W + PAD.left) / 2, y: H - 4, "text-anchor": "middle" }, xLabel));
  svg.append(el("svg:text", { x: PAD.left + 8, y: PAD.top + 12 }, yLabel));
  return { x, y };
}

function linePath(points) {
  return points.map(([px, py], i) => `${i ? "L" : "M"}${px.toFixed(1)},${py.toFixed(1)}`).join(" ");
}

function renderCurves(b) {
  const T = Number($("curve-t").value);
  const ks = [...new Set(b.entries.flatMap((e) => e.table.filter((r) => r.T === T).map((r) => r.k)))].sort((p, q) => p - q);
  const svg = el("svg:svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, id: "curves-svg" });
  const { x, y } = axes(svg, ks, "k (log scale)", `PASS@(k,${T})`, 0, 1);
  const legend = el("div", { class: "legend" });
  b.entries.forEach((e, i) => {
    const rows = e.table.filter((r) => r.T === T).sort((p, q) => p.k - q.k);
    const color = COLORS[i % COLORS.length];
    if (rows.length && rows[0].ci_low !== null) {
      const band = [...rows.map((r) => [x(r.k), y(r.ci_high)]), ...rows.slice().reverse().map((r) => [x(r.k), y(r.ci_low)])];
      svg.append(el("svg:path", { d: linePath(band) + " Z", fill: color, "fill-opacity": 0.15, stroke: "none", class: "band" }));
    }
    svg.append(el("svg:path", { d: linePath(rows.map((r) => [x(r.k), y(r.pass)])), fill: "none", stroke: color,
      "stroke-width": 2, class: "curve", "data-name": e.name }));
    const item = el("span");
    item.append(el("i", { style: `background:${color}` }), document.createTextNode(e.name));
    legend.append(item);
  });
  const floorKs = ks.filter((k) => String(k) in b.chance_floor);
  if (floorKs.length) {
    svg.append(el("svg:path", { d: linePath(floorKs.map((k) => [x(k), y(b.chance_floor[String(k)])])), fill: "none",
      stroke: "#8a6d1f", "stroke-dasharray": "4 3", class: "floor" }));
    const item = el("span");
    item.append(el("i", { style: "background:#8a6d1f" }), document.createTextNode("chance floor"));
    legend.append(item);
  }
  $("curves").replaceChildren(svg, legend);
}

function heatColor(v) {
  const t = Math.max(0, Math.min(1, v));
  return `rgb(${Math.round(247 - 216 * t)},${Math.round(251 - 132 * t)},${Math.round(255 - 75 * t)})`;
}

function renderHeatmap(b) {
  const e = b.entries.find((x) => x.name === $("heat-entry").value) || b.entries[0];
  const Ts = b.budgets, ks = [...new Set(e.table.map((r) => r.k))].sort((p, q) => p - q);
  const cw = (W - PAD.left - PAD.right) / ks.length, ch = (H - PAD.top - PAD.bottom) / Ts.length;
  const svg = el("svg:svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, id: "heatmap-svg" });
  Ts.forEach((T, row) => {
    const top = PAD.top + (Ts.length - 1 - row) * ch;
    svg.append(el("svg:text", { x: PAD.left - 6, y: top + ch / 2 + 4, "text-anchor": "end" }, `T=${T}`));
    ks.forEach((k, col) => {
      const r = cell(e, T, k);
      if (!r) return;
      const left = PAD.left + col * cw;
      svg.append(el("svg:rect", { x: left, y: top, width: cw - 1, height: ch - 1, fill: heatColor(r.pass) }));
      svg.append(el("svg:text", { x: left + cw / 2, y: top + ch / 2 + 4, "text-anchor": "middle",
        style: r.pass > 0.6 ? "fill:#fff" : "" }, r.pass.toFixed(2)));
    });
  });
  ks.forEach((k, col) => svg.append(el("svg:text", { x: PAD.left + col * cw + cw / 2, y: H - PAD.bottom + 14, "text-anchor": "middle" }, String(k))));
  svg.append(el("svg:text", { x: (W + PAD.left) / 2, y: H - 4, "text-anchor": "middle" }, `k — PASS@(k,T) of ${e.name}`));
  $("heatmap").replaceChildren(svg);
}

function pairOf(b, a, c) {
  if (b.pairs[`${a}|${c}`]) return { data: b.pairs[`${a}|${c}`], flip: false };
  if (b.pairs[`${c}|${a}`]) return { data: b.pairs[`${c}|${a}`], flip: true };
  return null;
}

function renderCompare(b) {
  const a = $("cmp-a").value, c = $("cmp-b").value, out = $("compare");
  if (a === c) {
    out.replaceChildren(el("p", { class: "note" }, "Pick two different entries."));
    return;
  }
  const pair = pairOf(b, a, c);
  const sign = pair.flip ? -1 : 1;
  const table = el("table", { id: "compare-table" });
  const head = el("tr");
  for (const label of ["T", "Δ PASS@(1,T) A−B", "95% CI", `Δ PASS@(kmax,T)`, "95% CI", "only A", "only B", "both", "neither", "McNemar p", "tasks only A solves"]) {
    head.append(el("th", {}, label));
  }
  table.append(head);
  for (const entry of pair.data.per_budget) {
    const last = entry.ks.length - 1;
    const lo = (i) => (entry.diff_low[i] === null ? null : sign > 0 ? entry.diff_low[i] : -entry.diff_high[i]);
    const hi = (i) => (entry.diff_high[i] === null ? null : sign > 0 ? entry.diff_high[i] : -entry.diff_low[i]);
    const onlyA = pair.flip ? entry.only_b : entry.only_a, onlyB = pair.flip ? entry.only_a : entry.only_b;
    const tr = el("tr", { "data-T": String(entry.T) });
    tr.append(el("td", {}, String(entry.T)), el("td", {}, signed(sign * entry.diff[0])), el("td", { class: "ci" }, `[${signed(lo(0))}, ${signed(hi(0))}]`),
      el("td", {}, `${signed(sign * entry.diff[last])} (k=${entry.ks[last]})`), el("td", { class: "ci" }, `[${signed(lo(last))}, ${signed(hi(last))}]`),
      el("td", { class: "only-a" }, String(onlyA.length)), el("td", { class: "only-b" }, String(onlyB.length)),
      el("td", {}, String(entry.both)), el("td", {}, String(entry.neither)), el("td", {}, entry.mcnemar_p.toPrecision(3)),
      el("td", { class: "ids" }, onlyA.slice(0, 6).join(", ") + (onlyA.length > 6 ? ", …" : "")));
    table.append(tr);
  }
  out.replaceChildren(el("p", { class: "note" }, `A = ${a}, B = ${c}: paired on the same tasks and episode seeds; boundary differences are the tasks one solves at least once and the other never.`), table);
}

function renderBoard() {
  const b = board();
  renderTable(b);
  renderDetails(b);
  options($("curve-t"), b.budgets, null, false);
  $("curve-t").value = String(b.rank_T);
  const names = b.entries.map((e) => e.name);
  options($("heat-entry"), names, null, true);
  options($("cmp-a"), names, null, true);
  options($("cmp-b"), names, null, true);
  if ($("cmp-a").value === $("cmp-b").value && names.length > 1) $("cmp-b").value = names[1];
  renderCurves(b);
  renderHeatmap(b);
  renderCompare(b);
}

function init() {
  $("meta").textContent = `gather-envs ${DATA.gather_envs_version}, corpus ${DATA.corpus_hash.slice(0, 12)}…`;
  options($("board"), DATA.boards.map((b) => b.id), DATA.boards.map((b) => `${b.env_id} · ${b.family} · ${b.track}`));
  $("board").addEventListener("change", renderBoard);
  $("curve-t").addEventListener("change", () => renderCurves(board()));
  $("heat-entry").addEventListener("change", () => renderHeatmap(board()));
  $("cmp-a").addEventListener("change", () => renderCompare(board()));
  $("cmp-b").addEventListener("change", () => renderCompare(board()));
  const wanted = DATA.boards.find((b) => b.env_id === "Gather-MultiHop-v0");
  if (wanted) $("board").value = wanted.id;
  renderBoard();
}

init();
