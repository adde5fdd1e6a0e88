"""The web page's states in headless Chromium, and their screenshots in docs/screenshots.

    python benchmarks/screenshots.py                 # the shipped model -> docs/screenshots/*.png
    python benchmarks/screenshots.py --model run/best.safetensors --out /tmp/shots

Starts the app (uvicorn, a free loopback port), drives Debian's chromium through playwright
(``apt-get install chromium``; never ``playwright install``) and writes one PNG per page state:

    start.png           the start page: only the file chooser
    good.png            a photo the model is not unsure about (samples/astronaut.jpg)
    bad-after-good.png  a file that is not an image, chosen after a good one
    uncertain.png       a photo the model flags as uncertain (samples/chelsea.jpg with the shipped model)
    layers.png          the layer view (one layer at a time) of the good photo
    faces.png           "faces" ticked on a group picture: a box, number and class per face, and a list
                        (default picture: made at run time from samples/astronaut.jpg, public domain —
                        the photo with two smaller copies of it pasted in; never saved)

tests/test_browser.py drives the same states (the functions below) with a tiny model and checks
what each shows.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any, Iterator

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ROOT = Path(__file__).resolve().parents[1]
SAMPLES = Path(str(resources.files("emoadapt") / "samples"))
STATES = ("start", "good", "bad-after-good", "uncertain", "layers", "faces")
LONG = 180_000  #: ms to wait for a model answer (a loaded 2-core machine, the model's first load); twice for the layers


@contextlib.contextmanager
def serve(app) -> Iterator[str]:
    """Base URL of uvicorn serving ``app`` on a free loopback port, for the ``with`` block."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not server.started:
        raise RuntimeError("uvicorn did not start")
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@contextlib.contextmanager
def browser() -> Iterator[Any]:
    """A headless Chromium (Debian's) driven by playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def visible(page, selector: str) -> bool:
    return page.is_visible(selector)


def observe(page) -> dict[str, Any]:
    """What the page shows now: the texts and which boxes are visible."""
    return {
        "error": page.text_content("#error") or "",
        "result": visible(page, "#result"),
        "answer": page.text_content("#answer") or "",
        "probs": page.eval_on_selector_all("#probs .bar", "rows => rows.map(r => r.dataset.label)"),
        "probs_visible": visible(page, "#probs"),
        "confidence": " ".join((page.text_content("#confidence") or "").split()),
        "uncertain": page.get_attribute("#confidence", "data-uncertain"),
        "affect": visible(page, "#affect-box"),
        "va_point": visible(page, "#va-point"),
        "dist": page.eval_on_selector_all("#dist .bar", "rows => rows.map(r => r.dataset.label)"),
        "relation": " ".join((page.text_content("#relation") or "").split()),
        "explanation": visible(page, "#explanation-box"),
        "overlay_caveat": visible(page, "#overlay-caveat"),
        "caveat_text": page.text_content("#overlay-caveat") or "",
        "legend": " ".join((page.text_content("#legend") or "").split()),
        "layers": visible(page, "#layers-box"),
    }


def wait_for_overlay(page) -> None:
    """Until the heat map is shown, or an error is."""
    page.wait_for_function("() => { const img = document.getElementById('overlay');"
                           " return (!document.getElementById('explanation-box').hidden && img.complete"
                           " && img.naturalWidth > 0) || document.getElementById('error').textContent !== ''; }",
                           timeout=LONG)


def start_page(page, url: str) -> dict[str, Any]:
    page.goto(url + "/")
    page.wait_for_selector("#drop")
    return observe(page)


def good_image(page, url: str, image: Path) -> dict[str, Any]:
    """Choose ``image`` and wait for its explanation."""
    page.goto(url + "/")
    page.set_input_files("#file", str(image))
    wait_for_overlay(page)
    return observe(page)


def bad_after_good(page, url: str, good: Path, bad: Path) -> dict[str, Any]:
    """A good image, then a file that cannot be decoded."""
    good_image(page, url, good)
    page.set_input_files("#file", str(bad))
    page.wait_for_function("() => document.getElementById('error').textContent !== ''", timeout=LONG)
    return observe(page)


def layer_view(page, url: str, image: Path) -> dict[str, Any]:
    """A good image, then the layer view ticked; waits for the first layer drawn."""
    good_image(page, url, image)
    page.check("#layers-toggle")
    page.wait_for_function("() => !document.getElementById('layers').hidden"
                           " || document.getElementById('error').textContent !== ''", timeout=2 * LONG)
    return dict(observe(page), tabs=page.eval_on_selector_all("#layer-tabs button", "b => b.map(x => x.dataset.tap)"),
                shown=page.get_attribute("#layer-canvas", "data-tap"),
                title=page.text_content("#layer-title") or "", help=page.text_content("#layers-help") or "")


def face_view(page, url: str, image: Path) -> dict[str, Any]:
    """``faces`` ticked, then ``image`` chosen; waits for the faces and the heat map."""
    page.goto(url + "/")
    page.check("#faces-toggle")
    page.set_input_files("#file", str(image))
    wait_for_overlay(page)
    page.wait_for_function("() => !document.getElementById('faces-box').hidden"
                           " || document.getElementById('error').textContent !== ''", timeout=LONG)
    return dict(observe(page), faces=page.get_attribute("#faces-box", "data-count"),
                note=page.text_content("#faces-note") or "",
                listed=page.eval_on_selector_all("#faces-list li", "items => items.map(i => i.dataset.emotion)"))


def write_group(folder: Path) -> Path:
    """``group.png``: samples/astronaut.jpg (public domain) with two smaller copies of the whole photo
    pasted in its lower corners, so the picture holds three faces of different sizes."""
    from PIL import Image

    photo = Image.open(SAMPLES / "astronaut.jpg").convert("RGB")
    group = photo.copy()
    for side, place in ((200, (0, 312)), (150, (362, 362))):
        group.paste(photo.resize((side, side)), place)
    path = Path(folder) / "group.png"
    group.save(path)
    return path


def write_bad_file(folder: Path) -> Path:
    """``notes.jpg``: text, not an image."""
    path = Path(folder) / "notes.jpg"
    path.write_text("shopping list: eggs, flour, milk\n")
    return path


def shoot(page, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="a .safetensors file or shipped model name (default: the shipped one)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"), help="folder of the PNGs")
    parser.add_argument("--good", default=str(SAMPLES / "astronaut.jpg"), help="a photo the model is sure about")
    parser.add_argument("--uncertain", default=str(SAMPLES / "chelsea.jpg"), help="a photo the model flags")
    parser.add_argument("--group", default=None,
                        help="a picture with several faces (default: made at run time from samples/astronaut.jpg)")
    parser.add_argument("--states", nargs="+", default=list(STATES), choices=STATES,
                        help="which screenshots to (re)write (default: all)")
    parser.add_argument("--timeout", type=float, default=120,
                        help="the server's request timeout in s (default 120: a busy machine still gets its pictures)")
    args = parser.parse_args(argv)

    import tempfile

    from emoadapt.api import Predictor
    from emoadapt.serve import create_app

    out = Path(args.out)
    predictor = Predictor() if args.model is None else Predictor(args.model)
    with tempfile.TemporaryDirectory() as folder, serve(create_app(predictor, timeout_s=args.timeout)) as url, browser() as chromium:
        page = chromium.new_page(viewport={"width": 1000, "height": 900})
        bad = write_bad_file(Path(folder))
        states = [("start", lambda: start_page(page, url)),
                  ("good", lambda: good_image(page, url, Path(args.good))),
                  ("bad-after-good", lambda: bad_after_good(page, url, Path(args.good), bad)),
                  ("uncertain", lambda: good_image(page, url, Path(args.uncertain))),
                  ("layers", lambda: layer_view(page, url, Path(args.good))),
                  ("faces", lambda: face_view(page, url, Path(args.group) if args.group else write_group(Path(folder))))]
        seen = {}
        for name, state in states:
            if name not in args.states:
                continue
            started = time.perf_counter()
            seen[name] = state()
            if name != "bad-after-good" and seen[name]["error"]:
                raise SystemExit(f"{name}: the page shows an error: {seen[name]['error']}")
            print(f"{shoot(page, out / f'{name}.png')}  ({time.perf_counter() - started:.1f} s; "
                  f"uncertain={seen[name]['uncertain']}, error={seen[name]['error']!r})")
    if seen.get("good", {}).get("uncertain", "false") != "false" or \
            seen.get("uncertain", {}).get("uncertain", "true") != "true":
        print("note: with this model --good is not a confident photo or --uncertain is not flagged; "
              "choose other images for the screenshots")


if __name__ == "__main__":
    main()
