"""Presets of shipped models carry their sha256, licence, training data and source; loading one
checks the file's sha256 and refuses a changed file with a one-line CheckpointError."""

from __future__ import annotations

import shutil

import pytest

from emoadapt.errors import CheckpointError
from emoadapt.models import registry
from emoadapt.models.registry import create_model, get_preset, list_models, resolve_model, weights_path
from emoadapt.models.weights import sha256


def _shipped():
    return [name for name in list_models() if get_preset(name).weights]


@pytest.mark.parametrize("name", _shipped())
def test_shipped_presets_record_hash_licence_data_and_source(name):
    preset = get_preset(name)
    assert preset.sha256 == sha256(weights_path(preset.weights))
    assert preset.licence and preset.training_data and preset.source


def test_a_flipped_byte_in_the_shipped_file_is_refused(tmp_path, monkeypatch):
    preset = get_preset("fer-cpu")
    copy = tmp_path / preset.weights
    shutil.copyfile(weights_path(preset.weights), copy)
    monkeypatch.setattr(registry, "weights_path", lambda filename: tmp_path / filename)
    model, _ = resolve_model("fer-cpu")  # the intact copy loads
    assert model.config.num_classes == 7
    data = bytearray(copy.read_bytes())
    data[-100] ^= 0x01  # one bit of one weight
    copy.write_bytes(bytes(data))
    for load in (lambda: resolve_model("fer-cpu"), lambda: create_model("fer-cpu", pretrained=True)):
        with pytest.raises(CheckpointError, match="sha256") as caught:
            load()
        assert "\n" not in str(caught.value)
