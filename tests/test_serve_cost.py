"""One count of model evaluations: the explainers spend exactly what the web app's cost guard
counts (emoadapt.attribution.settings.explanation_evaluations / layer_evaluations), on a tiny model."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("fastapi", reason="the web extra is not installed: pip install -e '.[web]'")
from fastapi.testclient import TestClient  # noqa: E402

from conftest import png_bytes  # noqa: E402
from emoadapt.attribution import DnCShap  # noqa: E402
from emoadapt.attribution import settings  # noqa: E402
from emoadapt.serve import create_app  # noqa: E402
from emoadapt.serve.handlers import request_cost  # noqa: E402


@pytest.fixture(scope="module")
def predictor(tiny_predictor):
    return tiny_predictor


def png(seed: int = 0) -> bytes:
    return png_bytes(seed=seed)


@pytest.mark.parametrize("depth", range(0, 6))
@pytest.mark.parametrize("max_evals", [None, 2, 9, 30, 100])
def test_the_explainer_spends_the_count(depth, max_evals):
    """The whole tree exactly; under a budget at most the budget, short of it by less than one split (4)."""
    torch.manual_seed(depth)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(4, 3))
    explanation = DnCShap(model, depth=depth, max_evals=max_evals, batch_size=16).attribute(torch.rand(3, 32, 32))
    count = settings.explanation_evaluations(depth, max_evals)
    if max_evals is None or max_evals >= settings.tree_evaluations(depth):
        assert explanation.depth == depth and explanation.evaluations == count
    else:
        assert 0 <= count - explanation.evaluations < 4


@pytest.mark.parametrize("options", [{"depth": "0"}, {"depth": "3"}, {"depth": "6"}, {"depth": "6", "max_evals": "40"},
                                     {"depth": "2", "layers": "true"}, {"depth": "4", "layers": "true"}])
def test_the_cost_guard_counts_what_the_server_spends(predictor, options):
    with TestClient(create_app(predictor)) as client:
        service = client.app.state.service
        result = client.post("/api/explain", files={"file": ("a.png", png(), "image/png")}, data=options)
        assert result.status_code == 200, result.text
        result = result.json()
        spent = 1 + result["explanation"]["evaluations"] + sum(s["evaluations"] for s in result.get("layers", {}).values())
        max_evals = settings.check_max_evals(options.get("max_evals"))
        cost = request_cost(service, int(options["depth"]), max_evals, layers="layers" in options)
        assert cost == spent if max_evals is None else 0 <= cost - spent < 4


def test_an_explanation_above_the_cap_is_refused_with_its_count(predictor):
    with TestClient(create_app(predictor, max_request_evals=4000)) as client:
        answer = client.post("/api/explain?depth=10", files={"file": ("a.png", png(), "image/png")})
        # 2**12 - 4 evaluations + 1 prediction (once counted 2**11 + 1 = 2,049)
        assert answer.status_code == 422 and "4,093 model evaluations" in answer.json()["detail"]
        assert client.post("/api/explain?depth=10&max_evals=64", files={"file": ("a.png", png(), "image/png")}
                           ).status_code == 200
    with TestClient(create_app(predictor, max_request_evals=60)) as client:
        answer = client.post("/api/explain/layers?depth=4", files={"file": ("a.png", png(), "image/png")})
        assert answer.status_code == 422 and "model evaluations" in answer.json()["detail"]
