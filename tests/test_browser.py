"""The web page in a real browser: Debian's chromium driven by playwright, against uvicorn on loopback.

Each page state of benchmarks/screenshots.py (start page, good image, bad file after a good one,
uncertain image, layer view, faces) is driven here with a tiny model and checked for what it shows:
nothing stale or phantom, the confidence in plain words wherever a prediction is shown, the layer
view one layer at a time without a second explanation. Screenshots of every state go to the
test's temporary folder; ``python benchmarks/screenshots.py`` writes the documented ones (the
shipped model) to docs/screenshots.

Skipped when /usr/bin/chromium or playwright is missing (``apt-get install chromium``; never
``playwright install``, which downloads browsers).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} not found (apt-get install chromium)", allow_module_level=True)
pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")
pytest.importorskip("uvicorn", reason="the web extra is not installed (pip install -e '.[web]')")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import screenshots as states  # noqa: E402
from emoadapt.api import Predictor  # noqa: E402
from emoadapt.serve import create_app  # noqa: E402
from conftest import save_tiny_model  # noqa: E402

GOOD = states.SAMPLES / "chelsea.jpg"
GUESS = "The model has not seen images like this: treat the label as a guess."


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Base URL of the app with a tiny model (depth 2: quick explanations)."""
    weights = save_tiny_model(tmp_path_factory.mktemp("model") / "tiny.safetensors")
    with states.serve(create_app(Predictor(str(weights)), depth=2)) as url:
        yield url


@pytest.fixture(scope="module")
def chromium():
    with states.browser() as browser:
        yield browser


@pytest.fixture()
def page(chromium, server):
    """A fresh page; ``page.requests`` lists every URL it asked for."""
    page = chromium.new_page(viewport={"width": 1000, "height": 900})
    page.requests = []
    page.on("request", lambda request: page.requests.append((request.method, request.url)))
    yield page
    assert all(url.startswith((server, "data:", "blob:")) for _, url in page.requests), page.requests  # nothing external
    page.close()


def flat_image(path: Path) -> Path:
    """A flat grey PNG: blank, so uncertain for any model."""
    from PIL import Image

    Image.new("RGB", (64, 48), (128, 128, 128)).save(path)
    return path


def test_start_page_shows_only_the_chooser(page, server, tmp_path):
    seen = states.start_page(page, server)
    states.shoot(page, tmp_path / "start.png")
    assert seen["error"] == "" and not seen["result"]
    assert not seen["affect"] and not seen["va_point"]  # no phantom circumplex dot
    assert not seen["explanation"] and not seen["layers"]


def test_good_image_shows_answer_confidence_and_overlay(page, server, tmp_path):
    seen = states.good_image(page, server, GOOD)
    states.shoot(page, tmp_path / "good.png")
    assert sorted(seen["probs"]) == ["anger", "happy", "hate", "sad"] and seen["error"] == ""
    assert seen["answer"].split(" ")[0] == seen["probs"][0]  # the top bar is the answer
    assert seen["uncertain"] in ("true", "false")
    expected = "Uncertain." if seen["uncertain"] == "true" else "Not flagged as uncertain."
    assert seen["confidence"].startswith(expected)
    assert seen["overlay_caveat"] == (seen["uncertain"] == "true")
    assert "red raises it" in seen["legend"]
    assert not seen["affect"]  # the tiny model has no affect heads: nothing of them shows
    assert [m for m, u in page.requests if u.endswith("/api/explain")] == ["POST"]


def test_bad_file_after_a_good_one_clears_the_previous_result(page, server, tmp_path):
    seen = states.bad_after_good(page, server, GOOD, states.write_bad_file(tmp_path))
    states.shoot(page, tmp_path / "bad-after-good.png")
    assert "notes.jpg" in seen["error"] and "422" in seen["error"]
    assert not seen["result"] and seen["probs"] == [] and seen["answer"] == "" and seen["confidence"] == ""
    assert not seen["explanation"] and not seen["layers"] and not seen["affect"]
    assert page.get_attribute("#overlay", "src") is None and page.get_attribute("#preview", "src") is None


def test_uncertain_image_says_so_in_plain_words_on_the_answer_and_the_map(page, server, tmp_path):
    seen = states.good_image(page, server, flat_image(tmp_path / "grey.png"))
    states.shoot(page, tmp_path / "uncertain.png")
    assert seen["uncertain"] == "true"
    assert seen["answer"].endswith(": a guess")
    assert "treat the label as a guess" in seen["confidence"] and "technical reason" in seen["confidence"]
    assert seen["overlay_caveat"] and "uncertain" in seen["caveat_text"]
    assert "uncertain" in page.text_content("#status")
    unlike = page.evaluate("plainReason('unlike the images the model was trained on (OOD score -1.49 > threshold -1.76)')")
    assert unlike == GUESS  # the shipped model's reason for a photo unlike its training photos


def test_layer_view_one_layer_at_a_time_without_a_new_explanation(page, server, tmp_path):
    seen = states.layer_view(page, server, GOOD)
    states.shoot(page, tmp_path / "layers.png")
    tabs = seen["tabs"]
    assert tabs == ["b1", "b2", "b3", "b4", "b5", "merged"] and seen["shown"] == tabs[0]
    assert seen["title"].startswith("b1: block B1") and "cells" in seen["title"]
    assert "Each layer's own explanation" in seen["help"]
    width = page.eval_on_selector("#layer-canvas", "c => c.width")
    assert width >= 300  # legible: the panel is drawn at the image's size (up to 720 px), not squeezed
    own = float(page.get_attribute("#layer-canvas", "data-scale"))
    page.check("#shared-scale")
    shared = float(page.get_attribute("#layer-canvas", "data-scale"))
    assert shared >= own
    page.click("#layer-tabs button[data-tap='merged']")
    assert page.get_attribute("#layer-canvas", "data-tap") == "merged"
    assert float(page.get_attribute("#layer-canvas", "data-scale")) == shared  # one scale for every layer
    page.uncheck("#layers-toggle")
    assert not page.is_visible("#layers-box")
    page.check("#layers-toggle")  # shown again from what the page already has
    page.wait_for_selector("#layers:not([hidden]) #layer-tabs button")
    posts = [u.rsplit("/api/", 1)[1] for m, u in page.requests if m == "POST"]
    assert posts == ["predict", "explain", "explain/layers"]  # the pixel explanation ran once, the grid once


def test_api_reference_works_offline(page, server):
    page.goto(server + "/docs")  # rendered from /openapi.json, no CDN
    page.wait_for_selector(".op code", timeout=30_000)
    documented = page.eval_on_selector_all(".op code", "codes => codes.map(c => c.textContent)")
    assert {"/api/predict", "/api/explain", "/api/explain/layers", "/api/jobs/{job_id}"} <= set(documented)


def test_a_model_with_affect_heads_shows_the_distribution_and_the_circumplex(chromium, tmp_path):
    from conftest import save_tiny_affect_model

    weights = save_tiny_affect_model(tmp_path / "tiny-affect.safetensors")
    with states.serve(create_app(Predictor(str(weights), runtime="torch"), depth=2)) as url:
        page = chromium.new_page()
        try:
            page.goto(url + "/")
            page.set_input_files("#file", str(GOOD))
            page.wait_for_selector("#dist .bar", timeout=60_000)
            seen = states.observe(page)
            point = page.eval_on_selector("#va-point", "c => [c.getAttribute('cx'), c.getAttribute('cy')]")
            text = page.text_content("#va-text")
        finally:
            page.close()
    assert sorted(seen["dist"]) == sorted(["anger", "disgust", "fear", "joy", "sadness", "surprise", "neutral"])
    assert seen["affect"] and seen["va_point"] and "valence" in text
    assert "four classes" in seen["relation"] and "joy: happy" in seen["relation"]  # how the two relate
    valence = float(text.split("valence ")[1].split(",")[0])
    assert float(point[0]) == pytest.approx(20 + (min(9, max(1, valence)) - 1) / 8 * 180, abs=0.1)


def test_faces_ticked_outlines_and_lists_every_face_or_says_none(page, server, tmp_path):
    seen = states.face_view(page, server, states.write_group(tmp_path))
    states.shoot(page, tmp_path / "faces.png")
    assert seen["error"] == "" and seen["faces"] == "3" and len(seen["listed"]) == 3
    assert seen["note"].startswith("3 faces found") and seen["explanation"]
    seen = states.face_view(page, server, flat_image(tmp_path / "flat.png"))
    assert seen["faces"] == "0" and seen["listed"] == [] and seen["note"].startswith("No faces found")
