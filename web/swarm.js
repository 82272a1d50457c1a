// The swarm page: polls the gateway's GET /swarm (doc/swarm-page.md) about
// once a second and draws the map of the swarm, the requests with the chains
// they run through, and the tokens/s chart. No libraries: plain DOM and canvas.
"use strict";

const POLL_MS = 1000;
const MAX_COLUMNS = 48; // deeper models show runs of layers per column

// The last answer of /swarm, for chat.js (which model to ask).
window.swarmState = null;

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

const fmt = {
  num(v, digits = 0) {
    if (v === null || v === undefined) return "–";
    if (v >= 1e6) return (v / 1e6).toFixed(1) + "M";
    if (v >= 1e4) return (v / 1e3).toFixed(0) + "k";
    return v.toFixed(digits);
  },
  // Credits and prices: small amounts keep their digits.
  credits(v) {
    if (v === null || v === undefined) return "–";
    if (v === 0) return "0";
    if (Math.abs(v) < 0.01) return v.toPrecision(2);
    if (Math.abs(v) < 100) return v.toFixed(2);
    return fmt.num(v);
  },
  bytes(v) {
    if (v === null || v === undefined) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return v.toFixed(i ? 1 : 0) + " " + units[i];
  },
  range(first, last) { return last - first === 1 ? `layer ${first}` : `layers ${first}–${last - 1}`; },
  short(id) { return id.length > 14 ? id.slice(0, 10) + "…" : id; },
};

// Which columns the layers fall in: one per layer up to MAX_COLUMNS, else runs.
function columnsOf(nLayer) {
  const per = Math.max(1, Math.ceil(nLayer / MAX_COLUMNS));
  const cols = [];
  for (let a = 0; a < nLayer; a += per) cols.push([a, Math.min(nLayer, a + per)]);
  return cols;
}

// The share of column [a, b) that [first, last) covers.
function share(a, b, first, last) {
  return Math.max(0, Math.min(b, last) - Math.max(a, first)) / (b - a);
}

function nodeLabel(n) {
  return n.node_id ? `${fmt.short(n.node_id)} · ${n.address}` : n.address;
}

function nodeState(n) {
  if (n.excluded) return "excluded";
  if (!n.reachable) return "down";
  if (n.draining) return "draining";
  return "up";
}

function reputationBar(score) {
  if (score === null || score === undefined) return el("span", { class: "muted" }, "–");
  const pct = Math.round(score * 100);
  return el("span", { class: "rep", title: `reputation ${score.toFixed(3)}` },
    el("span", { class: "rep-bar" }, el("span", { style: `width:${pct}%` })), ` ${score.toFixed(2)}`);
}

function modelMap(model, nodes, busy) {
  const cols = columnsOf(model.n_layer);
  const gaps = model.gaps;
  const inGap = (a, b) => gaps.some((g) => g.first_layer < b && a < g.last_layer);
  const head = el("tr", {}, el("th", { class: "who" }, "node"),
    cols.map(([a, b]) => el("th", { class: "layer" }, b - a === 1 ? a : `${a}`)),
    el("th", {}, "speed"), el("th", {}, "load"), el("th", {}, "reputation"), el("th", {}, "rtt"),
    el("th", {}, "price · earned"));
  const coverage = el("tr", { class: "coverage" }, el("td", { class: "who" }, "coverage"),
    cols.map(([a, b]) => {
      const gap = inGap(a, b);
      return el("td", { class: gap ? "cell gap" : "cell covered", "data-layer": `${a}:${b}`,
                        title: gap ? `${fmt.range(a, b)}: no reachable node serves it` : fmt.range(a, b) });
    }), el("td", { colspan: 5 }, ""));
  const rows = nodes.map((n) => {
    const state = nodeState(n);
    const known = n.first_layer !== null && n.last_layer !== null;
    const why = n.reachable ? "" : ` · unreachable: ${n.error || "no answer"}`;
    const load = n.reachable
      ? `${n.active_sessions} sess · ${n.queued_steps} queued` +
        (n.kv_bytes_total ? ` · KV ${fmt.bytes(n.kv_bytes_free)} free` : "")
      : "–";
    return el("tr", { class: `node ${state}${busy.has(n.address) ? " busy" : ""}`, "data-address": n.address,
                      "data-reachable": String(n.reachable), "data-state": state },
      el("td", { class: "who", title: nodeLabel(n) + why },
        el("span", { class: `dot ${state}` }), nodeLabel(n),
        n.reachable ? null : el("span", { class: "tag down" }, "unreachable"),
        n.excluded ? el("span", { class: "tag excluded" }, "excluded") : null,
        n.recently_failed ? el("span", { class: "tag warn" }, "failed") : null),
      cols.map(([a, b]) => {
        const s = known ? share(a, b, n.first_layer, n.last_layer) : 0;
        return el("td", { class: s > 0 ? `cell on ${state}` : "cell",
                          style: s > 0 && s < 1 ? `opacity:${0.35 + 0.65 * s}` : null });
      }),
      el("td", { class: "num", title: "measured decode speed through one layer" },
        n.layer_tokens_per_second ? `${fmt.num(n.layer_tokens_per_second)} layer-tok/s` : "not measured"),
      el("td", { class: "num", title: "as of the gateway's last survey of its nodes (at most about 5 s old)" }, load),
      el("td", {}, reputationBar(n.reputation)),
      el("td", { class: "num" }, n.rtt_ms === null ? "–" : `${n.rtt_ms.toFixed(1)} ms`),
      el("td", { class: "num", title: "credits per 1,000 tokens through its layers; credits it earned here (pending + paid)" },
        (n.price_per_1k === null ? "–" : `${fmt.credits(n.price_per_1k)}/1k`) +
        (n.credits_pending === null || n.credits_pending === undefined ? ""
          : ` · ${fmt.credits(n.credits_pending + n.credits_paid)} cr`)));
  });
  const gapText = gaps.length
    ? el("span", { class: "badge bad", "data-gaps": gaps.map((g) => `${g.first_layer}:${g.last_layer}`).join(",") },
      "gap: " + gaps.map((g) => fmt.range(g.first_layer, g.last_layer)).join(", ") + " — no reachable node serves it")
    : el("span", { class: "badge good", "data-gaps": "" }, "every layer covered");
  return el("div", { class: "model", "data-model": model.model_id },
    el("h3", {}, model.names.join(", "), " ",
      el("small", { class: "muted", title: model.model_id },
        `${model.n_layer} layers · ${model.covered_layers}/${model.n_layer} covered · id ${fmt.short(model.model_id)}`),
      " ", gapText),
    el("div", { class: "scroll" }, el("table", { class: "map" }, el("thead", {}, head),
      el("tbody", {}, coverage, rows))));
}

function renderMap(s) {
  const map = document.getElementById("map");
  const busy = new Set();
  for (const r of s.requests) if (r.live) for (const c of r.chain) busy.add(c.address);
  const parts = s.models.map((m) =>
    modelMap(m, s.nodes.filter((n) => n.model_id === m.model_id && n.n_layer === m.n_layer ||
                                      n.model_id === null && n.first_layer !== null), busy));
  const others = s.nodes.filter((n) => !s.models.some((m) => n.model_id === m.model_id && n.n_layer === m.n_layer) &&
                                       !(n.model_id === null && n.first_layer !== null));
  if (others.length)
    parts.push(el("div", { class: "others" }, el("h3", {}, "Other nodes"),
      el("ul", {}, others.map((n) => el("li", { class: `node ${nodeState(n)}`, "data-address": n.address,
                                                 "data-reachable": String(n.reachable) },
        el("span", { class: `dot ${nodeState(n)}` }), n.address, " ",
        el("span", { class: "muted" }, n.model_id ? `serves another model (${fmt.short(n.model_id)})`
                                                  : `not reached yet: ${n.error || "no answer"}`))))));
  if (!parts.length) parts.push(el("p", { class: "muted" }, "The gateway knows no models."));
  if (s.credits) {
    const c = s.credits;
    parts.push(el("p", { class: "credits muted", "data-conserved": String(c.conserved) },
      `Credits: ${fmt.credits(c.granted)} granted · ${fmt.credits(c.balances)} in balances · ${fmt.credits(c.held)} held · ` +
      `${fmt.credits(c.pending)} owed to nodes · ${fmt.credits(c.paid)} paid · ${fmt.credits(c.forfeited)} forfeited · ` +
      (c.conserved ? "conserved" : "NOT conserved")));
  }
  map.replaceChildren(...parts);
}

function renderRequests(s) {
  const list = document.getElementById("requests");
  if (!s.requests.length) {
    list.replaceChildren(el("li", { class: "muted" }, "None yet."));
    return;
  }
  list.replaceChildren(...s.requests.map((r) => {
    const stages = r.chain.length
      ? r.chain.map((c, i) => [i ? el("span", { class: "arrow" }, "→") : null,
          el("span", { class: "stage", style: `--i:${i};--n:${r.chain.length}`, title: fmt.range(c.first_layer, c.last_layer) },
            `${c.address} [${c.first_layer},${c.last_layer})`)])
      : [el("span", { class: "muted" }, r.live ? "routing…" : "no chain")];
    const state = r.live ? "live" : r.outcome;
    const rate = r.seconds > 0 ? ` · ${(r.completion_tokens / r.seconds).toFixed(1)} tok/s` : "";
    return el("li", { class: `request ${r.live ? "live" : "ended"}`, "data-id": r.id, "data-live": String(r.live) },
      el("div", { class: "request-head" },
        el("span", { class: `tag ${r.live ? "live" : r.outcome === "error" ? "down" : ""}` }, state),
        el("code", { title: r.id }, fmt.short(r.id)), ` ${r.model} · `,
        el("span", { class: "tokens" }, `${r.completion_tokens} tokens`),
        ` · ${r.seconds.toFixed(1)} s${rate}`, r.chains > 1 ? ` · ${r.chains - 1} failover(s)` : ""),
      el("div", { class: "chain" }, stages));
  }));
}

// A hand-drawn area chart of the samples (oldest first), one per bucket.
function renderChart(s) {
  const canvas = document.getElementById("rate-chart");
  const { samples, bucket_seconds: step } = s.tokens_per_second;
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  if (canvas.width !== Math.round(w * ratio) || canvas.height !== Math.round(h * ratio)) {
    canvas.width = Math.round(w * ratio);
    canvas.height = Math.round(h * ratio);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const css = getComputedStyle(document.body);
  const ink = css.getPropertyValue("--muted").trim() || "#888";
  const accent = css.getPropertyValue("--accent").trim() || "#2563eb";
  const left = 40, right = 8, top = 8, bottom = 20;
  const pw = w - left - right, ph = h - top - bottom;
  const peak = Math.max(1, ...samples);
  const mag = Math.pow(10, Math.floor(Math.log10(peak)));
  const yMax = [1, 2, 5, 10].map((m) => m * mag).find((v) => v >= peak);
  const lines = 5; // yMax / 5 is a round number for each of those
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = ink;
  ctx.strokeStyle = "rgba(127,127,127,0.25)";
  ctx.lineWidth = 1;
  for (let i = 0; i <= lines; i++) {
    const y = top + ph - (ph * i) / lines;
    ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(left + pw, y); ctx.stroke();
    ctx.textAlign = "right"; ctx.textBaseline = "middle";
    ctx.fillText(fmt.num((yMax * i) / lines, yMax < 5 ? 1 : 0), left - 6, y);
  }
  const span = samples.length * step;
  ctx.textAlign = "center"; ctx.textBaseline = "top";
  for (let m = 0; m * 60 <= span; m++) {
    const x = left + pw - (pw * m * 60) / span;
    ctx.fillText(m ? `-${m}m` : "now", Math.min(Math.max(x, left + 10), left + pw - 10), top + ph + 5);
  }
  const x = (i) => left + (pw * (i + 1)) / samples.length;
  const y = (v) => top + ph - (ph * v) / yMax;
  ctx.beginPath();
  ctx.moveTo(left, top + ph);
  samples.forEach((v, i) => ctx.lineTo(x(i), y(v)));
  ctx.lineTo(left + pw, top + ph);
  ctx.closePath();
  ctx.globalAlpha = 0.18; ctx.fillStyle = accent; ctx.fill();
  ctx.globalAlpha = 1;
  ctx.beginPath();
  samples.forEach((v, i) => (i ? ctx.lineTo(x(i), y(v)) : ctx.moveTo(x(i), y(v))));
  ctx.strokeStyle = accent; ctx.lineWidth = 1.5; ctx.stroke();
  const recent = samples.slice(-10);
  const avg = recent.reduce((a, b) => a + b, 0) / Math.max(1, recent.length);
  document.getElementById("rate-now").textContent =
    `last 10 s: ${avg.toFixed(1)} tok/s · peak ${fmt.num(Math.max(0, ...samples), 1)} tok/s · ` +
    `${s.live_requests} live request(s)`;
}

function setStatus(ok, text) {
  const s = document.getElementById("status");
  s.className = ok ? "status ok" : "status bad";
  s.textContent = text;
}

async function poll() {
  try {
    const res = await fetch("swarm", { cache: "no-store" });
    if (!res.ok) throw new Error(`GET /swarm: HTTP ${res.status}`);
    const s = await res.json();
    window.swarmState = s;
    renderMap(s);
    renderRequests(s);
    renderChart(s);
    const up = s.nodes.filter((n) => n.reachable).length;
    setStatus(true, `${up} of ${s.nodes.length} nodes reachable · updated ${new Date().toLocaleTimeString()}`);
  } catch (e) {
    setStatus(false, `gateway unreachable (${e.message})`);
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

poll();
