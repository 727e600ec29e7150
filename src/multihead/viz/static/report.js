// The head report: one row per head (roles, scores, importance). Click a column header to
// sort (again to reverse; empty values stay last); click a row to open that head.

const report = { column: null, descending: false, rows: [] };

function reportColumns() {
  const columns = [
    { key: "layer", label: "layer", get: (r) => r.layer },
    { key: "head", label: "head", get: (r) => r.head },
    { key: "kv_head", label: "kv head", get: (r) => (r.kv_head === undefined ? null : r.kv_head) },
    { key: "roles", label: "roles", get: (r) => (r.roles || []).join(", ") },
  ];
  for (const name of META.report.scores) {
    columns.push({
      key: "score:" + name,
      label: name.replace(/_/g, " "),
      get: (r) => (r.scores && r.scores[name] !== undefined ? r.scores[name] : null),
      numeric: true,
    });
  }
  columns.push({
    key: "importance",
    label: "importance",
    get: (r) => (r.importance === undefined ? null : r.importance),
    numeric: true,
  });
  return columns;
}

function findHead(layer, id) {
  if (layer < 0 || layer >= LAYERS.length) return -1;
  return LAYERS[layer].ids.indexOf(id);
}

function buildReport(root) {
  const columns = reportColumns();
  const ranges = columns.map((c) => {
    const values = META.report.heads.map(c.get).filter((v) => typeof v === "number");
    return values.length ? [Math.min(...values), Math.max(...values)] : [0, 0];
  });
  const head = el("tr");
  columns.forEach((c, n) => {
    const th = el("th", { "data-key": c.key, tabindex: "0", "aria-sort": "none" });
    if (c.numeric) th.className = "num";
    th.append(el("span", { text: c.label }), el("span", { class: "arrow" }));
    th.addEventListener("click", () => sortReport(n));
    th.addEventListener("keydown", (e) => e.key === "Enter" && sortReport(n));
    head.append(th);
  });
  const body = el("tbody");
  report.rows = META.report.heads.map((r) => {
    const present = findHead(r.layer, r.head) >= 0;
    const tr = el("tr", { class: present ? "" : "absent", tabindex: "0" });
    tr.dataset.layer = String(r.layer);
    tr.dataset.head = String(r.head);
    tr.title = present ? "open layer " + r.layer + " head " + r.head : "no weights for this head";
    columns.forEach((c, n) => {
      const value = c.get(r);
      const td = el("td");
      if (c.key === "roles") td.append(roleTags(r));
      else if (c.numeric) td.textContent = value === null ? "–" : value.toFixed(3);
      else td.textContent = fmt(value);
      if (c.numeric && typeof value === "number") {
        const [lo, hi] = ranges[n];
        const t = hi > lo ? (value - lo) / (hi - lo) : 0;
        td.style.background = "rgba(45,110,178," + (0.05 + 0.45 * t).toFixed(3) + ")";
        td.className = "num";
      }
      tr.append(td);
    });
    const open = () => present && openHead(r.layer, r.head);
    tr.addEventListener("click", open);
    tr.addEventListener("keydown", (e) => e.key === "Enter" && open());
    return { tr: tr, values: columns.map((c) => c.get(r)) };
  });
  body.append(...report.rows.map((r) => r.tr));
  report.head = head;
  report.body = body;
  const table = el("table", { id: "mh-report", class: "report" }, [el("thead", {}, [head]), body]);
  root.append(
    el("p", {
      class: "hint",
      text: "Click a column to sort it (again to reverse); click a row to open that head.",
    }),
    el("div", { class: "tablewrap" }, [table]),
  );
}

function sortReport(n) {
  report.descending = report.column === n ? !report.descending : false;
  report.column = n;
  const sign = report.descending ? -1 : 1;
  const rows = [...report.rows];
  rows.sort((a, b) => {
    const x = a.values[n];
    const y = b.values[n];
    if (x === null || y === null) return x === y ? 0 : x === null ? 1 : -1;
    if (typeof x === "number" && typeof y === "number") return sign * (x - y);
    return sign * String(x).localeCompare(String(y));
  });
  report.body.append(...rows.map((r) => r.tr));
  [...report.head.children].forEach((th, m) => {
    const sorted = m === n;
    const order = report.descending ? "descending" : "ascending";
    th.setAttribute("aria-sort", sorted ? order : "none");
    th.querySelector(".arrow").textContent = sorted ? (report.descending ? " ▼" : " ▲") : "";
  });
}
