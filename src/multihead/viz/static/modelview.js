// Model view: every head of every layer as a thumbnail of its attention map (pooled to at
// most 64 x 64 cells in Python from the exact weights). Click a cell to open that head.

const THUMB_PX = 72;

function buildModelView(root) {
  const [sq, sk] = ENC.thumb;
  const widest = Math.max(1, ...LAYERS.map((layer) => layer.ids.length));
  const grid = el("div", { id: "mh-grid", class: "grid" });
  grid.style.gridTemplateColumns = "auto repeat(" + widest + ", " + (THUMB_PX + 10) + "px)";
  const longest = Math.max(sq, sk);
  const width = Math.round((THUMB_PX * sk) / longest);
  const height = Math.round((THUMB_PX * sq) / longest);
  LAYERS.forEach((layer, l) => {
    grid.append(el("div", { class: "rowlabel", text: "Layer " + l }));
    layer.ids.forEach((id, h) => {
      const canvas = el("canvas", { width: String(sk), height: String(sq) });
      canvas.style.width = width + "px";
      canvas.style.height = height + "px";
      const ctx = canvas.getContext("2d");
      const image = ctx.createImageData(sk, sq);
      const start = thumbOf(l, h);
      for (let p = 0; p < sq * sk; p++) paint(image, p, THUMBS[start + p]);
      ctx.putImageData(image, 0, 0);
      const cell = el("button", {
        class: "cell",
        "data-layer": String(l),
        "data-head": String(id),
        "aria-label": "open layer " + l + " head " + id,
      });
      cell.title = headTitle(l, id) + "\n(click to open in the head view)";
      const name = el("span", { class: "cellname" }, [
        el("span", { class: "dot", style: "background:" + rgba(headRGB(h), 1) }),
        "H" + id,
      ]);
      cell.append(canvas, name, roleTags(REPORT_BY_HEAD.get(l + ":" + id)));
      cell.addEventListener("click", () => openHead(l, id));
      grid.append(cell);
    });
    for (let pad = layer.ids.length; pad < widest; pad++) grid.append(el("div"));
  });
  root.append(
    el("p", {
      class: "hint",
      text:
        "Each cell is one head: rows are queries, columns keys, darker = more attention " +
        "(colour follows the square root of the weight). Click a cell to open it.",
    }),
    grid,
  );
}
