// The side of the head view: the focused head's attention map (rows = queries, columns =
// keys, drawn from the kept weights) with the active token marked, and the top weights of
// the active token for every shown head.

const MATRIX_SIDE = 300; // px, the longer side of the map on screen
const MATRIX_BINS = 512; // longer inputs are max-pooled to 512 cells a side
const DETAIL_TOP = 6;

function matrixGeometry() {
  const longest = Math.max(TQ, TK);
  return {
    nq: Math.min(TQ, MATRIX_BINS),
    nk: Math.min(TK, MATRIX_BINS),
    width: Math.max(40, Math.round((MATRIX_SIDE * TK) / longest)),
    height: Math.max(40, Math.round((MATRIX_SIDE * TQ) / longest)),
  };
}

function drawMatrix() {
  const g = matrixGeometry();
  const f = state.focus;
  const id = f === null ? null : LAYERS[state.layer].ids[f];
  hv.focusLabel.replaceChildren();
  if (f === null) {
    hv.focusLabel.append(el("span", { text: "No head shown" }));
    hv.image = null;
    drawMatrixMarker();
    return;
  }
  const dot = el("span", { class: "dot", style: "background:" + rgba(headRGB(f), 1) });
  const caption = "Layer " + state.layer + ", head " + id;
  hv.focusLabel.append(dot, el("strong", { text: caption }));
  hv.focusLabel.append(roleTags(REPORT_BY_HEAD.get(state.layer + ":" + id)));
  const offscreen = document.createElement("canvas");
  offscreen.width = g.nk;
  offscreen.height = g.nq;
  const ctx = offscreen.getContext("2d");
  const image = ctx.createImageData(g.nk, g.nq);
  const cells = new Uint8Array(g.nq * g.nk);
  for (let i = 0; i < TQ; i++) {
    const base = rowOf(state.layer, f, i) * K;
    const r = Math.floor((i * g.nq) / TQ);
    for (let s = 0; s < K; s++) {
      const w = WEIGHT[base + s];
      if (w === 0) break;
      const c = Math.floor((INDEX[base + s] * g.nk) / TK);
      if (w > cells[r * g.nk + c]) cells[r * g.nk + c] = w;
    }
  }
  for (let p = 0; p < cells.length; p++) paint(image, p, cells[p]);
  ctx.putImageData(image, 0, 0);
  hv.image = offscreen;
  drawMatrixMarker();
}

function drawMatrixMarker() {
  const g = matrixGeometry();
  const ctx = sizeCanvas(hv.matrix, g.width, g.height);
  ctx.clearRect(0, 0, g.width, g.height);
  if (!hv.image) return;
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(hv.image, 0, 0, g.width, g.height);
  ctx.strokeStyle = "rgba(120,120,120,0.6)";
  ctx.lineWidth = 1;
  ctx.strokeRect(0.5, 0.5, g.width - 1, g.height - 1);
  const act = active();
  if (!act) return;
  // Outline the active query's row (or key's column) without hiding its cells.
  ctx.strokeStyle = "rgba(230,80,40,0.95)";
  ctx.lineWidth = 1.5;
  if (act.side === "q") {
    const y0 = (act.i * g.height) / TQ;
    const y1 = ((act.i + 1) * g.height) / TQ;
    ctx.strokeRect(0.75, y0 - 0.75, g.width - 1.5, Math.max(1.5, y1 - y0) + 1.5);
  } else {
    const x0 = (act.i * g.width) / TK;
    const x1 = ((act.i + 1) * g.width) / TK;
    ctx.strokeRect(x0 - 0.75, 0.75, Math.max(1.5, x1 - x0) + 1.5, g.height - 1.5);
  }
}

function matrixCell(event) {
  const box = hv.matrix.getBoundingClientRect();
  const q = Math.floor(((event.clientY - box.top) / box.height) * TQ);
  const k = Math.floor(((event.clientX - box.left) / box.width) * TK);
  return { q: Math.max(0, Math.min(TQ - 1, q)), k: Math.max(0, Math.min(TK - 1, k)) };
}

function keptWeight(layer, head, q, k) {
  const base = rowOf(layer, head, q) * K;
  for (let s = 0; s < K; s++) {
    if (INDEX[base + s] === k && WEIGHT[base + s]) return WEIGHT[base + s];
  }
  return null;
}

function matrixReadout(event) {
  if (state.focus === null) return;
  const { q, k } = matrixCell(event);
  const w = keptWeight(state.layer, state.focus, q, k);
  const value = w === null ? (K < TK ? "not in the top " + K : "0") : (w / 255).toFixed(3);
  hv.readout.textContent =
    "query #" + q + " " + Q_LABELS[q] + "  →  key #" + k + " " + K_LABELS[k] + ":  " + value;
}

function matrixPin(event) {
  const { q } = matrixCell(event);
  state.pinned = { side: "q", i: q };
  const node = hv.left.children[q];
  hv.scroll.scrollTop = Math.max(0, node.offsetTop - hv.scroll.clientHeight / 2);
  refreshActive();
}

function topEntries(act, h) {
  const entries = [];
  let total = 0;
  const first = act.side === "q" ? act.i : 0;
  const last = act.side === "q" ? act.i + 1 : TQ;
  for (let i = first; i < last; i++) {
    const base = rowOf(state.layer, h, i) * K;
    for (let s = 0; s < K; s++) {
      const w = WEIGHT[base + s];
      if (w === 0) break;
      const j = INDEX[base + s];
      if (act.side === "k" && j !== act.i) continue;
      entries.push([w, act.side === "q" ? j : i]);
      total += w;
    }
  }
  entries.sort((a, b) => b[0] - a[0]);
  return { entries: entries.slice(0, DETAIL_TOP), total: total / 255 };
}

function showDetail() {
  hv.detail.replaceChildren();
  const act = active();
  if (!act) {
    hv.detail.append(el("p", { class: "muted", text: "Hover or click a token for details." }));
    return;
  }
  const isQuery = act.side === "q";
  const label = isQuery ? Q_LABELS[act.i] : K_LABELS[act.i];
  const heading = (isQuery ? "Query #" : "Key #") + act.i + "  " + label;
  const note = isQuery ? "attends to (largest weights)" : "is attended to by";
  hv.detail.append(el("h3", { text: heading }), el("p", { class: "muted", text: note }));
  const table = el("table", { class: "toptable" });
  for (const h of [...state.selected].sort((a, b) => a - b)) {
    const { entries, total } = topEntries(act, h);
    const cells = [
      el("td", { class: "hd" }, [
        el("span", { class: "dot", style: "background:" + rgba(headRGB(h), 1) }),
        "H" + LAYERS[state.layer].ids[h],
      ]),
    ];
    const list = el("td");
    for (const [w, t] of entries) {
      const name = isQuery ? K_LABELS[t] : Q_LABELS[t];
      list.append(el("span", { class: "entry" }, [
        el("span", { class: "tk", text: name }),
        el("span", { class: "pos", text: "#" + t }),
        " " + (w / 255).toFixed(2),
      ]));
    }
    if (isQuery && K < TK) {
      const rest = REST[rowOf(state.layer, h, act.i)] / 255;
      list.append(el("span", { class: "entry muted", text: "other keys " + rest.toFixed(2) }));
    } else if (!isQuery) {
      list.append(el("span", { class: "entry muted", text: "total " + total.toFixed(2) }));
    }
    cells.push(list);
    table.append(el("tr", {}, cells));
  }
  hv.detail.append(table);
}
