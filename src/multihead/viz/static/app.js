// The page: tabs for the three views, and openHead(), which every view uses to show one
// head in the head view.

const tabs = {};

function showTab(name) {
  for (const [key, tab] of Object.entries(tabs)) {
    const on = key === name;
    tab.button.setAttribute("aria-selected", on ? "true" : "false");
    tab.section.hidden = !on;
  }
  document.body.dataset.tab = name;
  if (name === "head") drawLines(); // the canvas has no size while hidden
}

function openHead(layer, id) {
  const h = findHead(layer, id);
  if (h < 0) return;
  state.pinned = null;
  state.hover = null;
  showTab("head");
  setLayer(layer, [h]);
  hv.scroll.scrollTop = 0;
  drawLines();
}

function buildApp() {
  const app = document.getElementById("mh-app");
  const nav = el("nav", { class: "tabs", role: "tablist" });
  const views = [
    ["head", "Head view", buildHeadView],
    ["model", "Model view", buildModelView],
  ];
  if (META.report) views.push(["report", "Head report", buildReport]);
  for (const [name, label, build] of views) {
    const button = el("button", { role: "tab", id: "mh-tab-" + name, text: label });
    const section = el("section", { id: "mh-" + name + "-view", class: "view", role: "tabpanel" });
    button.addEventListener("click", () => showTab(name));
    nav.append(button);
    build(section);
    tabs[name] = { button: button, section: section };
  }
  app.append(nav, ...Object.values(tabs).map((t) => t.section));
  showTab("head");
  setLayer(0, null);
}

buildApp();
performance.mark("mh-interactive");
document.body.dataset.ready = "true";
