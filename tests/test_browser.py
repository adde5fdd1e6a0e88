"""The web page in a real browser: Debian's chromium driven by playwright, against uvicorn on loopback.

Skipped when /usr/bin/chromium or playwright is missing (``apt-get install chromium``; never
``playwright install``, which downloads browsers). Set ``EMOADAPT_UPDATE_SCREENSHOT=1`` to also
copy the screenshot to docs/screenshots/webapp.png.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from importlib import resources
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} not found (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")
uvicorn = pytest.importorskip("uvicorn", reason="the web extra is not installed (pip install -e '.[web]')")

from emoadapt.api import Predictor  # noqa: E402
from emoadapt.serve import create_app  # noqa: E402
from conftest import save_tiny_model  # noqa: E402

SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "screenshots" / "webapp.png"


@pytest.fixture()
def server(tmp_path):
    """Base URL of uvicorn serving the app with a tiny model on a free loopback port."""
    weights = save_tiny_model(tmp_path / "tiny.safetensors")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(Predictor(str(weights)), depth=6), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(10)
    sock.close()


def test_upload_shows_probabilities_overlay_and_layers(server, tmp_path):
    image = Path(str(resources.files("emoadapt") / "samples" / "chelsea.jpg"))
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu",
                                            "--disable-background-networking"])
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 900})
            requests: list[str] = []
            page.on("request", lambda request: requests.append(request.url))
            page.goto(server + "/")
            page.set_input_files("#file", str(image))
            page.wait_for_selector("#probs .bar", timeout=30_000)
            page.wait_for_function("() => { const img = document.getElementById('overlay');"
                                   " return img.complete && img.naturalWidth > 0; }", timeout=60_000)
            page.check("#layers-toggle")  # the layer-wise grid, on demand
            page.wait_for_function("() => { const img = document.getElementById('layers');"
                                   " return img.complete && img.naturalWidth > 0; }", timeout=60_000)
            labels = page.eval_on_selector_all("#probs .bar", "rows => rows.map(r => r.dataset.label)")
            error = page.text_content("#error")
            legend = page.text_content("#legend")
            shot = tmp_path / "webapp.png"
            page.screenshot(path=str(shot), full_page=True)
            page.goto(server + "/docs")  # the API reference, offline: rendered from /openapi.json, no CDN
            page.wait_for_selector(".op code", timeout=30_000)
            documented = page.eval_on_selector_all(".op code", "codes => codes.map(c => c.textContent)")
        finally:
            browser.close()
    assert sorted(labels) == ["anger", "happy", "hate", "sad"] and error == ""
    assert "red raises it" in " ".join(legend.split())
    assert {"/api/predict", "/api/explain", "/api/explain/layers", "/api/jobs/{job_id}"} <= set(documented)
    assert all(url.startswith((server, "data:", "blob:")) for url in requests), requests  # nothing external
    assert shot.stat().st_size > 0
    if os.environ.get("EMOADAPT_UPDATE_SCREENSHOT"):
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)


def test_a_model_with_affect_heads_shows_the_distribution_and_the_circumplex(tmp_path):
    from conftest import save_tiny_affect_model

    weights = save_tiny_affect_model(tmp_path / "tiny-affect.safetensors")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(Predictor(str(weights), runtime="torch"), depth=2),
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    image = Path(str(resources.files("emoadapt") / "samples" / "chelsea.jpg"))
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox",
                                                                                 "--disable-gpu"])
            try:
                page = browser.new_page()
                page.goto(f"http://127.0.0.1:{sock.getsockname()[1]}/")
                page.set_input_files("#file", str(image))
                page.wait_for_selector("#dist .bar", timeout=60_000)
                labels = page.eval_on_selector_all("#dist .bar", "rows => rows.map(r => r.dataset.label)")
                hidden = page.eval_on_selector("#affect-box", "box => box.hidden")
                point = page.eval_on_selector("#va-point", "c => [c.getAttribute('cx'), c.getAttribute('cy')]")
                text = page.text_content("#va-text")
            finally:
                browser.close()
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
    assert sorted(labels) == sorted(["anger", "disgust", "fear", "joy", "sadness", "surprise", "neutral"])
    assert hidden is False and "valence" in text
    valence = float(text.split("valence ")[1].split(",")[0])
    assert float(point[0]) == pytest.approx(20 + (min(9, max(1, valence)) - 1) / 8 * 180, abs=0.1)
