"""The CellProfiler modules, run one at a time through CellProfiler's own Workspace."""

import numpy as np
import pytest

from cellcount_cellprofiler.workspace import single_image_workspace

pytestmark = pytest.mark.cellprofiler


def instantiate(name, **settings):
    from cellcount_cellprofiler.pipeline_builder import new_module

    module = new_module(name, **settings)
    module.set_module_num(1)
    return module


def use_custom_model(module, weights_path):
    module.model_source.value = "Custom model file"
    module.model_directory.value = f"Elsewhere...|{weights_path.parent}"
    module.model_file.value = weights_path.name


def test_plugins_register_under_their_names(cellprofiler):
    from cellprofiler_core.utilities.core.modules import get_module_names

    assert {"DeepSegment", "DeepThreshold", "DeepCount"} <= set(get_module_names())


def test_deepsegment_writes_probability_image_and_model_threshold(cellprofiler, tiny_segmenter):
    module = instantiate("DeepSegment", x_name="DNA", y_name="Probability")
    use_custom_model(module, tiny_segmenter)
    module.validate_module(None)
    pixels = np.random.default_rng(0).random((70, 90)).astype(np.float32)
    workspace = single_image_workspace(module, {"DNA": pixels})
    module.run(workspace)
    probability = workspace.image_set.get_image("Probability").pixel_data
    assert probability.shape == (70, 90) and probability.dtype == np.float32
    assert 0.0 <= probability.min() <= probability.max() <= 1.0
    assert workspace.measurements.get_current_image_measurement("DeepSegment_ModelThreshold_Probability") == 0.42
    assert ("Image", "DeepSegment_ModelThreshold_Probability", "float") in module.get_measurement_columns(None)


def test_custom_model_of_wrong_kind_fails_validation(cellprofiler, tiny_counter):
    from cellprofiler_core.setting import ValidationError

    module = instantiate("DeepSegment", x_name="DNA")
    use_custom_model(module, tiny_counter)
    with pytest.raises(ValidationError, match="counter model"):
        module.validate_module(None)


def test_missing_custom_model_fails_validation_naming_the_file(cellprofiler, tmp_path):
    from cellprofiler_core.setting import ValidationError

    module = instantiate("DeepSegment", x_name="DNA")
    use_custom_model(module, tmp_path / "absent.safetensors")
    with pytest.raises(ValidationError, match="absent"):
        module.validate_module(None)


def test_batch_files_remap_the_custom_model_folder(cellprofiler, tiny_segmenter):
    module = instantiate("DeepSegment", x_name="DNA")
    use_custom_model(module, tiny_segmenter)
    local = str(tiny_segmenter.parent)
    module.prepare_to_create_batch(None, lambda path, **_: path.replace(local, "/cluster/models"))
    assert module.model_directory.value == "Elsewhere...|/cluster/models"


def test_deepthreshold_makes_objects_and_threshold_measurement(cellprofiler):
    from cellcount_core.images.synthetic import synthetic_cells

    cells = synthetic_cells((200, 200), 12, (14, 20), touching=0.0, clustering=0.0, seed=3)
    probability = (cells.labels > 0).astype(np.float32) * 0.9 + 0.05
    module = instantiate("DeepThreshold", x_name="Probability", y_name="Cells", threshold_method="Simple (0.5)",
                         wants_binary_image=True)
    workspace = single_image_workspace(module, {"Probability": probability})
    module.run(workspace)
    measurements = workspace.measurements
    assert measurements.get_current_image_measurement("Count_Cells") == cells.count
    assert measurements.get_current_image_measurement("Threshold_FinalThreshold_Cells") == 0.5
    assert len(measurements.get_current_measurement("Cells", "Location_Center_X")) == cells.count
    assert workspace.image_set.get_image("DeepMask").pixel_data.sum() > 0
    assert measurements.get_current_image_measurement("Threshold_OrigThreshold_Cells") == 0.5
    assert measurements.get_current_image_measurement("Threshold_WeightedVariance_Cells") < 0.01  # two levels
    features = {column[1] for column in module.get_measurement_columns(None)}
    assert {"Count_Cells", "Location_Center_X", "Threshold_FinalThreshold_Cells", "Threshold_OrigThreshold_Cells",
            "Threshold_WeightedVariance_Cells", "Threshold_SumOfEntropies_Cells"} <= features


def test_deepthreshold_model_default_uses_deepsegment_measurement(cellprofiler):
    probability = np.full((64, 64), 0.3, np.float32)
    probability[20:40, 20:40] = 0.35
    module = instantiate("DeepThreshold", x_name="Probability", y_name="Cells")
    workspace = single_image_workspace(module, {"Probability": probability})
    with pytest.raises(ValueError, match="DeepSegment"):
        module.run(workspace)
    workspace.measurements.add_image_measurement("DeepSegment_ModelThreshold_Probability", 0.32)
    module.run(workspace)
    assert workspace.measurements.get_current_image_measurement("Count_Cells") == 1


def test_deepthreshold_discards_objects_outside_the_diameter_range(cellprofiler):
    probability = np.zeros((120, 120), np.float32)
    yy, xx = np.mgrid[:120, :120]
    probability[(yy - 30) ** 2 + (xx - 30) ** 2 < 8 ** 2] = 1.0   # diameter ~16: kept
    probability[(yy - 80) ** 2 + (xx - 80) ** 2 < 25 ** 2] = 1.0  # diameter ~50: discarded
    module = instantiate("DeepThreshold", x_name="Probability", y_name="Cells", threshold_method="Simple (0.5)",
                         exclude_size=True, size_range=(10, 40), split_touching=False,
                         diameter_mode="Manual", diameter=16)
    workspace = single_image_workspace(module, {"Probability": probability})
    module.run(workspace)
    assert workspace.measurements.get_current_image_measurement("Count_Cells") == 1


def test_deepthreshold_post_processes_on_the_device_it_is_given(cellprofiler, monkeypatch):
    import torch

    import cellcount_core.objects.segmentation as segmentation

    devices = []
    post_process = segmentation.labels_from_probability
    monkeypatch.setattr(segmentation, "labels_from_probability",
                        lambda *args, **options: devices.append(options["device"]) or post_process(*args, **options))
    probability = np.zeros((64, 64), np.float32)
    probability[10:30, 10:30] = 1.0
    module = instantiate("DeepThreshold", x_name="Probability", y_name="Cells", threshold_method="Simple (0.5)")
    assert module.device.value == "Auto" and module.device in module.visible_settings()
    for choice in ("Auto", "CPU"):
        module.device.value = choice
        workspace = single_image_workspace(module, {"Probability": probability})
        module.run(workspace)
        assert workspace.measurements.get_current_image_measurement("Count_Cells") == 1
    expected_auto = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert devices == [expected_auto, None]


def test_deepthreshold_on_gpu_without_cuda_fails_naming_the_module(cellprofiler, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    module = instantiate("DeepThreshold", x_name="Probability", y_name="Cells", threshold_method="Simple (0.5)",
                         device="GPU")
    workspace = single_image_workspace(module, {"Probability": np.zeros((32, 32), np.float32)})
    with pytest.raises(Exception, match="(?s)DeepThreshold.*CUDA"):
        module.run(workspace)


def test_deepcount_writes_count_measurement(cellprofiler, tiny_counter):
    module = instantiate("DeepCount", x_name="DNA", count_name="Cells")
    use_custom_model(module, tiny_counter)
    pixels = np.random.default_rng(1).random((64, 80)).astype(np.float32)
    workspace = single_image_workspace(module, {"DNA": pixels})
    module.run(workspace)
    count = workspace.measurements.get_current_image_measurement("DeepCount_Cells")
    assert np.isfinite(count) and count >= 0
    assert module.get_measurement_columns(None) == [("Image", "DeepCount_Cells", "float")]


def test_settings_survive_a_save_and_load(cellprofiler, tmp_path):
    from cellcount_cellprofiler.pipeline_builder import build_pipeline
    from cellprofiler_core.pipeline import Pipeline

    module = instantiate("DeepThreshold", x_name="P", y_name="Cells", threshold_method="Manual",
                         manual_threshold=0.7, exclude_border=True, size_range=(8, 30))
    path = tmp_path / "p.cppipe"
    with open(path, "w") as handle:
        build_pipeline([module]).dump(handle)
    loaded = Pipeline()
    loaded.load(str(path))
    [copy] = loaded.modules()
    assert [s.value_text for s in copy.settings()] == [s.value_text for s in module.settings()]


#: Settings each revision of DeepSegment and DeepCount added, by the label they are saved under.
ADDED_IN_REVISION = {
    2: ("Bring the cells to the model's size:", "Typical cell diameter (pixels):"),
    3: ("Tile size and tiles per batch:",),
}


def _as_revision(pipeline_text, revision, tile_size="512"):
    """A shipped pipeline as it was saved by DeepSegment/DeepCount revision `revision`, with this tile size."""
    dropped = tuple(label for added, labels in ADDED_IN_REVISION.items() if added > revision for label in labels)
    lines = []
    for line in pipeline_text.splitlines():
        if line.startswith(("DeepSegment:[", "DeepCount:[")):
            line = line.replace("variable_revision_number:3", f"variable_revision_number:{revision}")
        if line.strip().startswith(dropped):
            continue
        lines.append(line.replace("Tile size (pixels):512", f"Tile size (pixels):{tile_size}"))
    return "\n".join(lines) + "\n"


def _load_deep_modules(text):
    """DeepSegment and DeepCount of a pipeline text, loaded (and upgraded) by CellProfiler."""
    import io

    from cellprofiler_core.pipeline import Pipeline

    pipeline = Pipeline()
    pipeline.load(io.StringIO(text))
    return {m.module_name: m for m in pipeline.modules() if m.module_name in ("DeepSegment", "DeepCount")}


def _shipped_pipeline_text():
    from pathlib import Path

    from cellcount_cellprofiler.pipeline_loading import read_pipeline_text

    return read_pipeline_text(Path(__file__).resolve().parents[1] / "pipelines" / "compare_counts.cppipe")


def test_shipped_pipelines_tile_automatically(cellprofiler):
    text = _shipped_pipeline_text()
    assert text.count("variable_revision_number:3") >= 2  # DeepSegment and DeepCount at the current revision
    for module in _load_deep_modules(text).values():
        assert module.tiling() == {"tile_size": "auto", "batch_size": None}
        assert module.tile_size not in module.visible_settings()


def test_revision_1_pipelines_load_with_automatic_cell_size_and_their_tile_size(cellprofiler):
    text = _as_revision(_shipped_pipeline_text(), 1)
    assert "variable_revision_number:1" in text and "Bring the cells" not in text and "tiles per batch:" not in text
    modules = _load_deep_modules(text)
    assert len(modules) == 2
    for module in modules.values():
        assert module.cell_size_mode.value == "Automatic" and module.cell_size() == "auto"
        assert module.tiling()["tile_size"] == 512


def test_revision_2_pipelines_keep_their_tile_and_batch_size(cellprofiler):
    text = _as_revision(_shipped_pipeline_text(), 2, tile_size="768")
    assert "variable_revision_number:2" in text and "Tile size and tiles per batch" not in text
    modules = _load_deep_modules(text)
    assert modules["DeepSegment"].tiling() == {"tile_size": 768, "batch_size": 4}
    assert modules["DeepCount"].tiling() == {"tile_size": 768, "batch_size": None}  # DeepCount has no batch setting
    for module in modules.values():
        assert module.tiling_mode.value == "Manual" and module.tile_size in module.visible_settings()
        assert module.cell_size_mode.value == "Automatic"


def test_revision_1_deepthreshold_keeps_the_cpu(cellprofiler):
    import io

    from cellprofiler_core.pipeline import Pipeline

    text = _shipped_pipeline_text()
    assert "DeepThreshold:[" in text and "    Device:Auto" in text
    lines, in_threshold = [], False
    for line in text.splitlines():
        if line.startswith("DeepThreshold:["):
            in_threshold = True
            line = line.replace("variable_revision_number:2", "variable_revision_number:1")
        elif not line.startswith(" "):
            in_threshold = False
        if not (in_threshold and line.strip().startswith("Device:")):
            lines.append(line)
    pipeline = Pipeline()
    pipeline.load(io.StringIO("\n".join(lines) + "\n"))
    [module] = [m for m in pipeline.modules() if m.module_name == "DeepThreshold"]
    assert module.device.value == "CPU" and module.torch_device() is None


def test_deepsegment_runs_with_the_tiling_it_is_given(cellprofiler, tiny_segmenter, monkeypatch):
    import cellcount_core.running.inference as inference

    calls = []
    run_network = inference.predict_probability
    monkeypatch.setattr(inference, "predict_probability",
                        lambda *args, **options: calls.append(options) or run_network(*args, **options))
    module = instantiate("DeepSegment", x_name="DNA", y_name="Probability", cell_size_mode="Off")
    use_custom_model(module, tiny_segmenter)
    pixels = np.random.default_rng(0).random((70, 90)).astype(np.float32)
    module.run(single_image_workspace(module, {"DNA": pixels}))
    module.tiling_mode.value = "Manual"
    module.tile_size.value, module.batch_size.value = 96, 2
    assert module.batch_size in module.visible_settings()
    module.run(single_image_workspace(module, {"DNA": pixels}))
    assert [(c["tile_size"], c["batch_size"]) for c in calls] == [("auto", None), (96, 2)]


def test_deepsegment_manual_cell_size_resizes_and_records_the_factor(cellprofiler):
    import math

    from cellcount_core.models.model_files import read_card
    from cellcount_core.models.bundled import resolve_model

    module = instantiate("DeepSegment", x_name="DNA", y_name="Probability")
    module.cell_size_mode.value = "Manual"
    module.cell_diameter.value = 60.0
    assert module.cell_diameter in module.visible_settings()
    low, high = read_card(resolve_model("default")).diameter_band
    pixels = np.random.default_rng(0).random((120, 100)).astype(np.float32)
    workspace = single_image_workspace(module, {"DNA": pixels})
    module.run(workspace)
    assert workspace.image_set.get_image("Probability").pixel_data.shape == (120, 100)
    factor = workspace.measurements.get_current_image_measurement("DeepSegment_ScaleFactor_Probability")
    assert factor == pytest.approx(math.sqrt(low * high) / 60.0)
    module.cell_size_mode.value = "Off"
    assert module.cell_diameter not in module.visible_settings() and module.cell_size() == "off"
