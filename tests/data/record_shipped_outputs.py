"""Record the shipped models' outputs on the bundled samples into shipped_outputs.json (run when a
shipped model or the default explanation changes ON PURPOSE; refactorings must leave them alone):

    python tests/data/record_shipped_outputs.py
"""

import json
from importlib import resources
from pathlib import Path

import torch

from emoadapt.api import Predictor
from emoadapt.models.registry import DEFAULT_MODEL

SAMPLES = sorted(Path(str(resources.files("emoadapt") / "samples")).glob("*.jpg"))
OUT = Path(__file__).with_name("shipped_outputs.json")


def main() -> None:
    record = {"note": "outputs of the shipped models on src/emoadapt/samples/*.jpg (sorted), recorded by "
                      "tests/data/record_shipped_outputs.py; tests/test_shipped.py checks them to 1e-6"}
    for name in (DEFAULT_MODEL, "fer-cpu"):
        record[name] = Predictor(name, runtime="torch").predict(SAMPLES).tolist()
    record["default_explanation_sample0"] = Predictor(runtime="torch").explain(SAMPLES[0]).values.tolist()
    affect = Predictor(runtime="torch")  # valence, arousal and the distribution of the default's sidecar heads
    if affect.affect is not None:
        batch = torch.stack([affect.preprocess(p) for p in SAMPLES])
        out = affect.predict_outputs(batch)
        record["default_affect"] = {k: out[k].tolist() for k in ("valence", "arousal", "dist")}
    OUT.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
