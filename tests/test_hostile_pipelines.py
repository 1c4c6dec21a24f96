"""Hostile inputs inside CellProfiler: images the deep modules cannot take, a probability image outside 0..1 given
to DeepThreshold, impossible settings. Errors name the module, the image set and what to do (docs/RELIABILITY.md;
missing plugins and model files are in test_check_pipeline.py, a failing image set in a headless run in
test_reliability_cellprofiler.py)."""

import numpy as np
import pytest

from cellcount_cellprofiler.workspace import single_image_workspace
from test_check_pipeline import check, deep_pipeline_text

pytestmark = pytest.mark.cellprofiler


def instantiate(name, **settings):
    from cellcount_cellprofiler.pipeline_builder import new_module

    module = new_module(name, **settings)
    module.set_module_num(3)
    return module


def test_a_probability_image_outside_0_to_1_is_refused_by_deepthreshold(cellprofiler):
    module = instantiate("DeepThreshold", x_name="Probability", y_name="Cells", threshold_method="Simple (0.5)")
    workspace = single_image_workspace(module, {"Probability": np.full((64, 64), 3.0, np.float32)})
    with pytest.raises(ValueError, match=r"^DeepThreshold \(module 3\) failed on image set 1: probability must hold "
                                         r"finite values within 0\.\.1; pass the network's sigmoid output"):
        module.run(workspace)


@pytest.mark.parametrize("name, pixels, message", [
    ("DeepSegment", np.ones((4, 4), np.float32), "image 'DNA' is 4 x 4 pixels; the smallest image cellcount"),
    ("DeepSegment", np.full((64, 64), np.nan, np.float32), "image 'DNA' contains NaN or infinite values"),
    ("DeepCount", np.eye(64, dtype=np.float32), "image 'DNA' is a binary mask"),
])
def test_images_the_networks_cannot_take_are_named_with_the_module(cellprofiler, name, pixels, message):
    module = instantiate(name, x_name="DNA")
    workspace = single_image_workspace(module, {"DNA": pixels})
    with pytest.raises(ValueError, match=rf"^{name} \(module 3\) failed on image set 1: {message}"):
        module.run(workspace)


def test_impossible_settings_are_named_by_the_check(cellprofiler, tmp_path, tiny_segmenter, tiny_counter):
    text = deep_pipeline_text(tiny_segmenter, tiny_counter, threshold_method="Manual", manual_threshold=1.5)
    text = text.replace("Tile size (pixels):512", "Tile size (pixels):8", 1)
    text = text.replace("Tile size and tiles per batch:Automatic", "Tile size and tiles per batch:Manual", 1)
    problems = {(finding.module_name, finding.message) for finding in check(text, tmp_path).setting_problems}
    assert problems == {("DeepSegment", 'setting "Tile size (pixels)": Must be at least 64, was 8'),
                        ("DeepThreshold", 'setting "Manual threshold": Must be at most 1.0, was 1.5')}
