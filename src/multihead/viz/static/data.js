// Data decoding and small helpers shared by the views. The page embeds one JSON block
// (#mh-meta) and four base64 arrays; encoding.py documents their layout:
// rows are ordered layer, head, query; each row holds K (key index uint16, weight uint8)
// pairs, largest weight first, and one uint8 residual (the mass of the keys not kept).

const META = JSON.parse(document.getElementById("mh-meta").textContent);
const ENC = META.enc;
const K = ENC.top_k;
const TQ = ENC.tq;
const TK = ENC.tk;

function decodeBase64(id) {
  const text = document.getElementById(id).textContent.trim();
  const binary = atob(text);
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}

const INDEX = new Uint16Array(decodeBase64("mh-index").buffer); // little-endian, as written
const WEIGHT = decodeBase64("mh-weight");
const REST = decodeBase64("mh-rest");
const THUMBS = decodeBase64("mh-thumbs");

const LAYERS = META.layers; // [{ids: [original head ids]}], one per layer
const LAYER_ROW = [];
(function () {
  let r = 0;
  for (const layer of LAYERS) {
    LAYER_ROW.push(r);
    r += layer.ids.length * TQ;
  }
})();

// First row of (layer, head position, query).
function rowOf(layer, head, query) {
  return LAYER_ROW[layer] + head * TQ + query;
}

// Index of the first thumbnail byte of (layer, head position).
function thumbOf(layer, head) {
  return (LAYER_ROW[layer] / TQ + head) * ENC.thumb[0] * ENC.thumb[1];
}

const Q_LABELS = META.tokens.q;
const Q_TITLES = META.tokens.qt;
const K_LABELS = META.tokens.k || Q_LABELS;
const K_TITLES = META.tokens.kt || Q_TITLES;

// Report rows by "layer:head" (original head ids).
const REPORT_BY_HEAD = new Map();
if (META.report) {
  for (const row of META.report.heads) REPORT_BY_HEAD.set(row.layer + ":" + row.head, row);
}

function el(tag, attrs, children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "style") node.style.cssText = value;
    else node.setAttribute(key, value);
  }
  for (const child of children || []) node.append(child);
  return node;
}

function fmt(value, digits) {
  if (value === null || value === undefined) return "–";
  if (typeof value !== "number") return String(value);
  if (Number.isInteger(value)) return String(value);
  return value.toFixed(digits === undefined ? 3 : digits);
}

// Head colours: hues a golden angle apart, so neighbouring heads never look alike.
function headRGB(position) {
  const hue = (position * 137.508 + 210) % 360;
  return hslToRgb(hue / 360, 0.68, 0.45);
}

function hslToRgb(h, s, l) {
  const q = l < 0.5 ? l * (1 + s) : l + s - l * s;
  const p = 2 * l - q;
  const channel = (t) => {
    t = (t + 1) % 1;
    if (t < 1 / 6) return p + (q - p) * 6 * t;
    if (t < 1 / 2) return q;
    if (t < 2 / 3) return p + (q - p) * (2 / 3 - t) * 6;
    return p;
  };
  return [channel(h + 1 / 3), channel(h), channel(h - 1 / 3)].map((v) => Math.round(v * 255));
}

function rgba(rgb, alpha) {
  return "rgba(" + rgb[0] + "," + rgb[1] + "," + rgb[2] + "," + alpha.toFixed(3) + ")";
}

// Byte value (weight * 255) -> colour; colour follows sqrt(weight) so that broad heads
// (weights near 1/T) stay visible next to sharp ones.
const LUT = (function () {
  const stops = [
    [255, 255, 255],
    [205, 224, 242],
    [120, 172, 214],
    [45, 110, 178],
    [12, 44, 102],
  ];
  const lut = new Uint8ClampedArray(256 * 3);
  for (let v = 0; v < 256; v++) {
    const t = Math.sqrt(v / 255) * (stops.length - 1);
    const a = Math.min(stops.length - 2, Math.floor(t));
    const f = t - a;
    for (let c = 0; c < 3; c++) lut[v * 3 + c] = stops[a][c] * (1 - f) + stops[a + 1][c] * f;
  }
  return lut;
})();

function paint(image, pixel, value) {
  image.data[pixel * 4] = LUT[value * 3];
  image.data[pixel * 4 + 1] = LUT[value * 3 + 1];
  image.data[pixel * 4 + 2] = LUT[value * 3 + 2];
  image.data[pixel * 4 + 3] = 255;
}

function roleTags(row) {
  const tags = el("span", { class: "roles" });
  for (const role of (row && row.roles) || []) {
    tags.append(el("span", { class: "role role-" + role, text: role.replace(/_/g, " ") }));
  }
  return tags;
}

function headTitle(layer, id) {
  const row = REPORT_BY_HEAD.get(layer + ":" + id);
  let text = "layer " + layer + ", head " + id;
  if (!row) return text;
  if (row.roles && row.roles.length) text += "\nroles: " + row.roles.join(", ");
  for (const [name, value] of Object.entries(row.scores || {})) {
    text += "\n" + name + ": " + fmt(value);
  }
  if (row.importance !== null && row.importance !== undefined) {
    text += "\nimportance: " + fmt(row.importance);
  }
  return text;
}
