"""Model files (safetensors + JSON card) and bundled-model resolution."""

import json
import os
import pickle
import subprocess
import sys

import pytest
import torch

from cellcount_core.models.bundled import DEFAULT_SEGMENTER, bundled_models, resolve_model
from cellcount_core.models.model_files import (FORMAT_VERSION, ModelCard, ModelFileError, load_model, read_card,
                                              save_model, update_card)
from cellcount_core.models.networks import create_model

CASES = [
    ("segmenter", "c_resunet", {"base_filters": 4, "in_channels": 3}, (2, 3, 32, 32)),
    ("counter", "dcc_counter", {"input_size": [16, 16], "filters": [4, 8], "dense_units": 16}, (2, 1, 16, 16)),
    ("counter", "density_counter", {"base_filters": 4}, (2, 1, 32, 32)),
]


def trained(architecture, params, shape):
    """A network whose BatchNorm statistics have moved off their initial values, in eval mode."""
    torch.manual_seed(0)
    model = create_model(architecture, **params)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(shape) * 3 + 1)
    return model.eval()


def make_card(kind="segmenter", architecture="c_resunet", params=None, **fields):
    return ModelCard(name="test", kind=kind, architecture=architecture,
                     params={"base_filters": 4} if params is None else params, **fields)


@pytest.fixture
def saved(tmp_path):
    """A small saved segmenter: returns the stem."""
    model = trained("c_resunet", {"base_filters": 4}, (2, 1, 32, 32))
    save_model(model, make_card(), tmp_path / "seg")
    return tmp_path / "seg"


@pytest.mark.parametrize("kind, architecture, params, shape", CASES)
def test_round_trip_gives_same_outputs(tmp_path, kind, architecture, params, shape):
    model = trained(architecture, params, shape)
    card = make_card(kind, architecture, params, input_size=params.get("input_size"), diameter_range=[8, 20])
    weights, card_path = save_model(model, card, tmp_path / "model.safetensors")
    assert (weights.name, card_path.name) == ("model.safetensors", "model.json")

    loaded, loaded_card = load_model(tmp_path / "model")
    assert not loaded.training
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    assert loaded_card == ModelCard.from_dict(json.loads(card_path.read_text()))
    x = torch.rand(shape)
    with torch.no_grad():
        expected, got = model(x), loaded(x)
    assert torch.allclose(got, expected, rtol=1e-2, atol=1e-2)
    # Buffers (BatchNorm running statistics, num_batches_tracked) are stored exactly.
    for name, buffer in model.named_buffers():
        assert torch.equal(dict(loaded.named_buffers())[name], buffer), name


def test_fp16_halves_the_file_and_float32_is_exact(tmp_path):
    model = trained("c_resunet", {"base_filters": 4}, (2, 1, 32, 32))
    half, _ = save_model(model, make_card(), tmp_path / "half")
    full, _ = save_model(model, make_card(), tmp_path / "full", dtype="float32")
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded, _ = load_model(full)
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


@pytest.mark.parametrize("suffix", ["", ".json", ".safetensors"])
def test_load_accepts_stem_card_or_weights(saved, suffix):
    _, card = load_model(f"{saved}{suffix}")
    assert card.architecture == "c_resunet"


def test_read_card_does_not_need_weights(saved):
    (saved.parent / "seg.safetensors").unlink()
    assert read_card(saved).name == "test"


def test_read_card_does_not_import_torch(saved):
    code = ("import sys; from cellcount_core.models.model_files import read_card; "
            "import cellcount_core.models.bundled; "
            f"read_card({str(saved)!r}); assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_card_json_round_trip():
    card = make_card(input_size=(128, 128), diameter_range=(5.0, 30.0), metrics={"f1": 0.8})
    again = ModelCard.from_dict(json.loads(card.to_json()))
    assert again.input_size == [128, 128] and again.metrics == {"f1": 0.8}
    assert again.normalization == {"method": "percentile", "low": 1.0, "high": 99.8}
    assert again.default_threshold == {"value": 0.5, "method": "simple"}
    assert again.format_version == FORMAT_VERSION and again.count_scale == 1.0
    assert again.small_density_diameter is None  # a counter never enlarges until its threshold is measured


def test_a_format_1_card_is_read_and_rewritten_in_the_current_format(saved):
    card_path = saved.parent / "seg.json"
    data = json.loads(card_path.read_text())
    del data["count_scale"]
    data["format_version"] = 1
    card_path.write_text(json.dumps(data))
    assert read_card(saved).count_scale == 1.0  # cards from before count_scale
    update_card(saved, metrics={"note": "kept"})
    again = json.loads(card_path.read_text())
    assert again["format_version"] == FORMAT_VERSION and again["metrics"]["note"] == "kept"


def test_update_card_validates_before_writing(saved):
    card_path = saved.parent / "seg.json"
    before = card_path.read_text()
    with pytest.raises(ModelFileError, match="'count_scale' must be a positive number"):
        update_card(saved, {"count_scale": 0.0})
    with pytest.raises(ModelFileError, match="'small_density_diameter' must be null or a positive number"):
        update_card(saved, {"small_density_diameter": -28.0})
    assert card_path.read_text() == before
    update_card(saved, {"small_density_diameter": 32.0})
    assert read_card(saved).small_density_diameter == 32.0


def test_save_rejects_card_that_does_not_rebuild_the_model(tmp_path):
    model = create_model("c_resunet", base_filters=4)
    with pytest.raises(ModelFileError, match="shape mismatches"):
        save_model(model, make_card(params={"base_filters": 8}), tmp_path / "bad")
    assert not (tmp_path / "bad.safetensors").exists()


def test_save_rejects_unknown_dtype(tmp_path):
    with pytest.raises(ValueError, match="int8"):
        save_model(create_model("c_resunet", base_filters=4), make_card(), tmp_path / "m", dtype="int8")


def test_missing_card(saved):
    (saved.parent / "seg.json").unlink()
    with pytest.raises(ModelFileError, match=r"seg\.json not found.*NAME\.json beside"):
        load_model(saved)


def test_missing_weights(saved):
    (saved.parent / "seg.safetensors").unlink()
    with pytest.raises(ModelFileError, match=r"seg\.safetensors not found"):
        load_model(saved)


def test_truncated_safetensors(saved):
    weights = saved.parent / "seg.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(ModelFileError, match="corrupt or truncated"):
        load_model(saved)


def test_garbage_safetensors(saved):
    (saved.parent / "seg.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelFileError, match="corrupt or truncated"):
        load_model(saved)


def test_corrupt_card_json(saved):
    card = saved.parent / "seg.json"
    card.write_text(card.read_text()[:40])
    with pytest.raises(ModelFileError, match="not valid JSON"):
        load_model(saved)


def test_newer_format_version(saved):
    card = saved.parent / "seg.json"
    data = json.loads(card.read_text())
    data["format_version"] = FORMAT_VERSION + 1
    card.write_text(json.dumps(data))
    with pytest.raises(ModelFileError, match=f"format_version {FORMAT_VERSION + 1} is newer.*update cellcount"):
        load_model(saved)


@pytest.mark.parametrize("field, value, message", [
    ("kind", "classifier", "'kind' must be 'segmenter' or 'counter'"),
    ("input", "rgb", "'input' must be 'image' or 'mask'"),
    ("params", [1], "'params' must be a JSON object"),
    ("input_size", [128], "'input_size' must be null or"),
    ("diameter_range", [30, 5], "'diameter_range' must be null or"),
    ("default_threshold", {"value": 2}, "'default_threshold' must be"),
    ("count_scale", -1.0, "'count_scale' must be a positive number"),
    ("count_scale", "1.1", "'count_scale' must be a positive number"),
    ("name", "", "'name' must be a non-empty string"),
    ("colour", "red", "unknown field\\(s\\) colour"),
])
def test_invalid_card_field_is_named(field, value, message):
    data = make_card().to_dict()
    data[field] = value
    with pytest.raises(ModelFileError, match=message):
        ModelCard.from_dict(data, source="my.json")


def test_missing_required_field_is_named():
    data = make_card().to_dict()
    del data["architecture"]
    with pytest.raises(ModelFileError, match="my.json: missing required field\\(s\\) architecture"):
        ModelCard.from_dict(data, source="my.json")


def test_unknown_architecture_lists_available(saved):
    card = saved.parent / "seg.json"
    data = json.loads(card.read_text())
    data["architecture"] = "transformer"
    card.write_text(json.dumps(data))
    with pytest.raises(ModelFileError, match="Unknown architecture 'transformer'; available: c_resunet"):
        load_model(saved)


def test_weights_that_do_not_fit(saved):
    card = saved.parent / "seg.json"
    data = json.loads(card.read_text())
    data["architecture"], data["params"] = "resunet", {"base_filters": 4}
    card.write_text(json.dumps(data))
    with pytest.raises(ModelFileError, match="do not fit architecture 'resunet'.*missing keys.*unexpected keys"):
        load_model(saved)


def test_legacy_state_dict_with_card(tmp_path):
    model = trained("density_counter", {"base_filters": 4}, (2, 1, 32, 32))
    torch.save(model.state_dict(), tmp_path / "old.pt")
    (tmp_path / "old.json").write_text(make_card("counter", "density_counter").to_json())
    loaded, _ = load_model(tmp_path / "old.pt")
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    load_model(tmp_path / "old")  # the stem finds old.pt when there is no old.safetensors


def test_legacy_file_holding_a_whole_model_is_refused(tmp_path):
    torch.save({"weights": [1, 2]}, tmp_path / "odd.pth")
    (tmp_path / "odd.json").write_text(make_card().to_json())
    with pytest.raises(ModelFileError, match="must hold a state dict"):
        load_model(tmp_path / "odd.pth")


class _Exploit:
    """Unpickling this object would create the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.makedirs, (str(self.marker),)


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_malicious_pickle_is_refused_without_running(tmp_path, writer):
    marker = tmp_path / "pwned"
    payload = {"head.weight": _Exploit(marker)}
    weights = tmp_path / "evil.pt"
    if writer == "torch.save":
        torch.save(payload, weights)
    else:
        weights.write_bytes(pickle.dumps(payload, protocol=2))
    (tmp_path / "evil.json").write_text(make_card().to_json())
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(_Exploit(control)))  # the payload is live: plain unpickling runs it
    assert control.exists() and not marker.exists()
    with pytest.raises(ModelFileError, match="Refused to load .*evil.pt.*not unpickled"):
        load_model(weights)
    assert not marker.exists()


# bundled.py


@pytest.fixture
def weights_dir(tmp_path):
    folder = tmp_path / "weights"
    folder.mkdir()
    for name in (DEFAULT_SEGMENTER, "other"):
        (folder / f"{name}.json").write_text("{}")
        (folder / f"{name}.safetensors").write_bytes(b"")
    return folder


def test_bundled_models_lists_cards_by_stem(weights_dir):
    assert bundled_models(weights_dir) == {name: weights_dir / f"{name}.json"
                                           for name in sorted([DEFAULT_SEGMENTER, "other"])}


@pytest.mark.parametrize("setting", ["default", "Default", "", None])
def test_resolve_default(weights_dir, setting):
    assert resolve_model(setting, weights_dir=weights_dir) == weights_dir / f"{DEFAULT_SEGMENTER}.json"


def test_resolve_bundled_name_and_custom_default(weights_dir):
    assert resolve_model("other", weights_dir=weights_dir) == weights_dir / "other.json"
    assert resolve_model("default", default="other", weights_dir=weights_dir) == weights_dir / "other.json"


def test_resolve_existing_path(saved, weights_dir):
    weights = saved.parent / "seg.safetensors"
    assert resolve_model(str(weights), weights_dir=weights_dir) == weights
    assert resolve_model(saved, weights_dir=weights_dir) == saved.parent / "seg.json"


def test_resolve_unknown_lists_bundled(weights_dir):
    with pytest.raises(ModelFileError, match="'nope'.*Bundled models: nuclei-segmenter, other.*path to a "
                                             "\\.safetensors or \\.json"):
        resolve_model("nope", weights_dir=weights_dir)


def test_resolve_default_when_nothing_is_bundled(tmp_path):
    with pytest.raises(ModelFileError, match="default model 'nuclei-segmenter'.*none installed"):
        resolve_model("default", weights_dir=tmp_path)


# ---------------------------------------------------------------- hostile files (docs/RELIABILITY.md)

def test_a_huge_card_is_refused_before_it_is_parsed(saved):
    card = saved.parent / "seg.json"
    card.write_text(card.read_text()[:-2] + ', "description": "' + "x" * 2_000_000 + '"}')
    with pytest.raises(ModelFileError, match=r"seg\.json is \d+ bytes, more than a model card can be"):
        read_card(saved)


def test_a_card_nested_too_deeply_is_not_valid_json(saved):
    (saved.parent / "seg.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ModelFileError, match="not valid JSON \\(nested too deeply\\)"):
        read_card(saved)


@pytest.mark.parametrize("params", [{"base_filters": 100_000}, {"base_filters": 10**30}, {"depth": 50}])
def test_a_card_asking_for_a_huge_network_fails_without_allocating_it(saved, params):
    """100 000 base filters would be 34 trillion parameters: the shapes are compared on torch's meta device."""
    card = saved.parent / "seg.json"
    data = json.loads(card.read_text())
    data["params"] = params
    card.write_text(json.dumps(data))
    with pytest.raises(ModelFileError, match="do not fit architecture 'c_resunet'|cannot build the network"):
        load_model(saved)
