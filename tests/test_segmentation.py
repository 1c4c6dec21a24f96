import subprocess
import sys

import numpy as np
import pytest
from scipy import ndimage as ndi

from cellcount_core.objects.segmentation import labels_from_probability, model_default_threshold, segment_image
from cellcount_core.images.synthetic import synthetic_cells


def _probability(cells, sigma=1.0):
    """A network-like probability map: the true mask, smoothed."""
    return np.clip(ndi.gaussian_filter((cells.labels > 0).astype(np.float32), sigma), 0.0, 1.0)


@pytest.mark.parametrize("method, kwargs", [("simple", {}), ("manual", {"threshold_value": 0.4}),
                                            ("model default", {"threshold_value": 0.6}), ("otsu", {}),
                                            ("adaptive", {"block_size": 101})])
def test_synthetic_probability_gives_the_true_count(method, kwargs):
    cells = synthetic_cells(seed=4)
    result = labels_from_probability(_probability(cells), threshold_method=method, **kwargs)
    assert result.count == result.labels.max() == pytest.approx(cells.count, rel=0.05)
    assert result.diameter == pytest.approx(cells.diameter, rel=0.2)
    assert result.mask.dtype == bool and result.labels.dtype == np.int32
    assert result.probability is None


def test_threshold_and_diameter_are_reported_as_used():
    cells = synthetic_cells(seed=5)
    result = labels_from_probability(_probability(cells), threshold_method="manual", threshold_value=0.3,
                                     diameter=18.0)
    assert result.threshold == pytest.approx(0.3) and result.diameter == 18.0
    assert np.array_equal(result.mask, _probability(cells) > 0.3)


def test_postprocess_options_reach_the_labels():
    # two touching cells, one on the top border, one alone
    centers = [[64, 30], [64, 48], [0, 100], [100, 100]]
    cells = synthetic_cells((128, 128), diameter=(20, 20), irregularity=0.0, centers=centers, seed=0)
    probability = _probability(cells)
    assert labels_from_probability(probability, threshold_method="simple").count == 4
    assert labels_from_probability(probability, threshold_method="simple", split_touching=False).count == 3
    inner = labels_from_probability(probability, threshold_method="simple", exclude_border=True)
    assert inner.count == 3 and not inner.labels[0].any()
    few = labels_from_probability(probability, threshold_method="simple", min_size=250)
    assert few.count == 3  # the half cell on the border is smaller than 250 px


def test_empty_probability_gives_no_cells():
    result = labels_from_probability(np.zeros((32, 32), np.float32), threshold_method="simple")
    assert result.count == 0 and result.diameter == 0.0


def test_model_default_needs_a_value_without_a_model():
    with pytest.raises(ValueError, match="needs a threshold value"):
        labels_from_probability(np.zeros((8, 8), np.float32))


def test_importing_segmentation_does_not_import_torch():
    code = "import sys, cellcount_core.objects.segmentation; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_segment_image_uses_the_model_card_threshold(tiny_segmenter):
    cells = synthetic_cells((96, 96), 6, seed=0)
    assert model_default_threshold(tiny_segmenter) == pytest.approx(0.42)
    result = segment_image(cells.image, model=tiny_segmenter, device="CPU", tile_size=64, overlap=16)
    assert result.threshold == pytest.approx(0.42)
    assert result.probability.shape == cells.image.shape and result.probability.dtype == np.float32
    expected = labels_from_probability(result.probability, threshold_value=0.42)
    assert np.array_equal(result.labels, expected.labels) and result.count == expected.count


def test_segment_image_passes_other_threshold_methods(tiny_segmenter):
    cells = synthetic_cells((64, 64), 3, seed=0)
    result = segment_image(cells.image, model=tiny_segmenter, device="CPU", threshold_method="simple")
    assert result.threshold == 0.5
    assert np.array_equal(result.mask, result.probability > 0.5)
