// Head view: queries on the left, keys on the right, one line per kept (query, key) weight,
// coloured by head, opacity = weight. Hover a token to see where it attends (left) or what
// attends to it (right); click to pin. Beside it: the focused head's map and the details.

const ROW = 20; // token row height, px
const OVERVIEW_MIN = 5; // weights below 5/255 are not drawn until a token is hovered

const state = { layer: 0, selected: new Set(), focus: null, hover: null, pinned: null };
const hv = {};

function active() {
  return state.hover || state.pinned;
}

function buildHeadView(root) {
  const layerSelect = el("select", { id: "mh-layer", "aria-label": "layer" });
  LAYERS.forEach((layer, l) => {
    const label = "Layer " + l + " (" + layer.ids.length + " heads)";
    layerSelect.append(el("option", { value: String(l), text: label }));
  });
  layerSelect.addEventListener("change", () => setLayer(Number(layerSelect.value), null));
  const all = el("button", { class: "small", id: "mh-all", text: "all" });
  const none = el("button", { class: "small", id: "mh-none", text: "none" });
  all.addEventListener("click", () => selectHeads(LAYERS[state.layer].ids.map((_, h) => h)));
  none.addEventListener("click", () => selectHeads([]));
  hv.chips = el("div", { id: "mh-chips", class: "chips" });
  hv.left = el("div", { id: "mh-left", class: "tokcol left" });
  hv.right = el("div", { id: "mh-right", class: "tokcol right" });
  hv.canvas = el("canvas", { id: "mh-lines" });
  const mid = el("div", { class: "mid" }, [hv.canvas]);
  hv.scroll = el("div", { id: "mh-scroll", class: "scroll" }, [
    el("div", { class: "cols" }, [hv.left, mid, hv.right]),
  ]);
  hv.matrix = el("canvas", { id: "mh-matrix" });
  hv.focusLabel = el("div", { id: "mh-focus", class: "focus" });
  hv.readout = el("div", { id: "mh-readout", class: "readout", text: " " });
  hv.detail = el("div", { id: "mh-detail", class: "detail" });
  hv.layerSelect = layerSelect;
  root.append(
    el("div", { class: "controls" }, [
      el("label", {}, [layerSelect]),
      el("span", { class: "label", text: "Heads" }),
      hv.chips,
      all,
      none,
    ]),
    el("p", {
      class: "hint",
      text:
        "Hover a token on the left to see where it attends, on the right to see what " +
        "attends to it; click to pin. Click a head to show or hide it; double-click to " +
        "show it alone. Line opacity = attention weight.",
    }),
    el("div", { class: "headview" }, [
      el("div", { class: "lines-wrap" }, [
        el("div", { class: "colheads" }, [
          el("span", { text: "query (attends from)" }),
          el("span", { text: "key (attended to)" }),
        ]),
        hv.scroll,
      ]),
      el("div", { class: "side" }, [
        hv.focusLabel,
        hv.matrix,
        el("p", {
          class: "caption",
          text: "rows: queries, columns: keys; darker = more (√weight). Click a row to pin it.",
        }),
        hv.readout,
        hv.detail,
      ]),
    ]),
  );
  fillTokens(hv.left, Q_LABELS, Q_TITLES, "q");
  fillTokens(hv.right, K_LABELS, K_TITLES, "k");
  hv.scroll.style.height = Math.min(Math.max(TQ, TK) * ROW, 560) + "px";
  hv.scroll.addEventListener("scroll", () => requestAnimationFrame(drawLines), { passive: true });
  hv.matrix.addEventListener("mousemove", matrixReadout);
  hv.matrix.addEventListener("mouseleave", () => (hv.readout.textContent = " "));
  hv.matrix.addEventListener("click", matrixPin);
  window.addEventListener("resize", () => drawLines());
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && state.pinned) {
      state.pinned = null;
      refreshActive();
    }
  });
}

function fillTokens(column, labels, titles, side) {
  const nodes = [];
  labels.forEach((label, i) => {
    const node = el("div", { class: "tok", "data-side": side, "data-index": String(i) });
    node.title = "#" + i + "  " + titles[i];
    node.append(el("span", { class: "pos", text: String(i) }), el("span", { text: label }));
    nodes.push(node);
  });
  column.append(...nodes);
  column.addEventListener("mouseover", (event) => {
    const tok = event.target.closest(".tok");
    if (tok) setHover({ side: side, i: Number(tok.dataset.index) });
  });
  column.addEventListener("mouseleave", () => setHover(null));
  column.addEventListener("click", (event) => {
    const tok = event.target.closest(".tok");
    if (!tok) return;
    const i = Number(tok.dataset.index);
    const same = state.pinned && state.pinned.side === side && state.pinned.i === i;
    state.pinned = same ? null : { side: side, i: i };
    refreshActive();
  });
}

function setLayer(layer, heads) {
  state.layer = layer;
  hv.layerSelect.value = String(layer);
  const count = LAYERS[layer].ids.length;
  const chosen = heads === null ? [...Array(count).keys()] : heads;
  hv.chips.replaceChildren();
  for (let h = 0; h < count; h++) {
    const id = LAYERS[layer].ids[h];
    const chip = el("button", { class: "chip", "data-head": String(h), text: "H" + id });
    chip.title = headTitle(layer, id);
    chip.style.setProperty("--head", rgba(headRGB(h), 1));
    chip.addEventListener("click", () => toggleHead(h));
    chip.addEventListener("dblclick", () => selectHeads([h]));
    hv.chips.append(chip);
  }
  selectHeads(chosen);
}

function toggleHead(h) {
  const chosen = new Set(state.selected);
  if (chosen.has(h)) chosen.delete(h);
  else chosen.add(h);
  selectHeads([...chosen].sort((a, b) => a - b), chosen.has(h) ? h : null);
}

function selectHeads(heads, focus) {
  state.selected = new Set(heads);
  if (focus !== undefined && focus !== null) state.focus = focus;
  else if (!state.selected.has(state.focus)) state.focus = heads.length ? heads[0] : null;
  for (const chip of hv.chips.children) {
    const on = state.selected.has(Number(chip.dataset.head));
    chip.classList.toggle("on", on);
    chip.classList.toggle("focus", Number(chip.dataset.head) === state.focus);
    chip.setAttribute("aria-pressed", on ? "true" : "false");
  }
  drawMatrix();
  refreshActive();
}

function setHover(target) {
  const a = state.hover;
  if (a === target || (a && target && a.side === target.side && a.i === target.i)) return;
  state.hover = target;
  refreshActive();
}

function refreshActive() {
  highlightTokens();
  drawLines();
  drawMatrixMarker();
  showDetail();
  document.body.dataset.active = active() ? active().side + active().i : "";
}

function sizeCanvas(canvas, width, height) {
  const ratio = window.devicePixelRatio || 1;
  canvas.style.width = width + "px";
  canvas.style.height = height + "px";
  if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  return ctx;
}

// Lines are drawn for the visible part of the scrolled columns only (the canvas stays in
// view, sticky), batched into 16 opacity levels per head so a frame is a few strokes.
function drawLines() {
  const width = hv.canvas.parentElement.clientWidth;
  const height = hv.scroll.clientHeight;
  const ctx = sizeCanvas(hv.canvas, width, height);
  ctx.clearRect(0, 0, width, height);
  const top = hv.scroll.scrollTop;
  const act = active();
  const layer = state.layer;
  const minimum = act ? 1 : OVERVIEW_MIN;
  ctx.lineWidth = act ? 2 : 1.2;
  for (const h of state.selected) {
    const levels = Array.from({ length: 16 }, () => []);
    const first = act && act.side === "q" ? act.i : 0;
    const last = act && act.side === "q" ? act.i + 1 : TQ;
    for (let i = first; i < last; i++) {
      const base = rowOf(layer, h, i) * K;
      const yq = i * ROW + ROW / 2 - top;
      for (let s = 0; s < K; s++) {
        const w = WEIGHT[base + s];
        if (w < minimum) break; // sorted, largest first
        const j = INDEX[base + s];
        if (act && act.side === "k" && j !== act.i) continue;
        const yk = j * ROW + ROW / 2 - top;
        if (Math.max(yq, yk) < -ROW || Math.min(yq, yk) > height + ROW) continue;
        levels[w >> 4].push(yq, yk);
      }
    }
    const rgb = headRGB(h);
    levels.forEach((segments, level) => {
      if (!segments.length) return;
      ctx.strokeStyle = rgba(rgb, (level + 1) / 16);
      ctx.beginPath();
      for (let n = 0; n < segments.length; n += 2) {
        ctx.moveTo(0, segments[n]);
        ctx.lineTo(width, segments[n + 1]);
      }
      ctx.stroke();
    });
  }
}

// Largest weight (over the shown heads) between the active token and every token opposite.
function oppositeWeights(act) {
  const size = act.side === "q" ? TK : TQ;
  const best = new Float32Array(size);
  const head = new Int16Array(size).fill(-1);
  for (const h of state.selected) {
    const first = act.side === "q" ? act.i : 0;
    const last = act.side === "q" ? act.i + 1 : TQ;
    for (let i = first; i < last; i++) {
      const base = rowOf(state.layer, h, i) * K;
      for (let s = 0; s < K; s++) {
        const w = WEIGHT[base + s];
        if (w === 0) break;
        const j = INDEX[base + s];
        if (act.side === "k" && j !== act.i) continue;
        const target = act.side === "q" ? j : i;
        if (w > best[target]) {
          best[target] = w;
          head[target] = h;
        }
      }
    }
  }
  return { best: best, head: head };
}

function highlightTokens() {
  for (const node of hv.left.children) node.style.background = "";
  for (const node of hv.right.children) node.style.background = "";
  hv.left.querySelectorAll(".tok.active").forEach((n) => n.classList.remove("active"));
  hv.right.querySelectorAll(".tok.active").forEach((n) => n.classList.remove("active"));
  const act = active();
  if (!act) return;
  (act.side === "q" ? hv.left : hv.right).children[act.i].classList.add("active");
  const opposite = act.side === "q" ? hv.right : hv.left;
  const { best, head } = oppositeWeights(act);
  for (let t = 0; t < best.length; t++) {
    if (head[t] >= 0 && best[t] >= 3) {
      opposite.children[t].style.background = rgba(headRGB(head[t]), 0.1 + (0.6 * best[t]) / 255);
    }
  }
}
