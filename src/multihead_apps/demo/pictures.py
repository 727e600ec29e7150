"""The README's pictures, regenerated from a demo run (``make pictures``): the demo's figures
as small PNGs, and a screenshot of the viewer taken in Chromium through Playwright (the same
offline setup the browser tests use; never a browser download)."""

from __future__ import annotations

import shutil
from pathlib import Path

from multihead_apps.demo.pipeline import Demo

FIGURES = ("loss_curve", "previous_token", "induction", "attention_grid", "pruning_curve")
WIDTH = 760  # pixels; the README shows them at most this wide
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--host-resolver-rules=MAP * ~NOTFOUND",
]


def shrink(source: Path, target: Path, width: int = WIDTH) -> Path:
    """``source`` scaled down to at most ``width`` pixels wide, as an optimized PNG."""
    from PIL import Image

    with Image.open(source) as image:
        if image.width > width:
            height = round(image.height * width / image.width)
            image = image.resize((width, height), Image.LANCZOS)
        image.convert("RGB").save(target, optimize=True)
    return target


def screenshot(viewer: Path, target: Path, *, layer: int, head: int, query: int) -> Path:
    """The viewer's head view with ``layer``'s ``head`` alone and ``query`` hovered."""
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        raise FileNotFoundError("chromium is not installed (make setup installs it)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 760})
            page.goto(viewer.resolve().as_uri())
            page.wait_for_selector("body[data-ready=true]", timeout=20_000)
            page.select_option("#mh-layer", str(layer))
            page.locator("#mh-chips .chip").nth(head).dblclick()
            page.hover(f"#mh-left .tok[data-index='{query}']")
            page.screenshot(path=str(target))
        finally:
            browser.close()
    return target


def write(demo: Demo, directory: str | Path) -> list[Path]:
    """Write ``demo_*.png`` and ``viewer.png`` into ``directory``; returns the paths."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = [shrink(demo.files[name], out / f"demo_{name}.png") for name in FIGURES]
    layer, head = demo.named["induction"]
    tokens = demo.batches[0][1][0]  # the viewer's example: hover its first scored query
    query = int((tokens != -100).nonzero()[0]) + 2
    shot = screenshot(
        demo.files["viewer"], out / "viewer_full.png", layer=layer, head=head, query=query
    )
    written.append(shrink(shot, out / "viewer.png", width=900))
    shot.unlink()
    return written
