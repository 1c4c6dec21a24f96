"""Mask primitives of `cellcount_core.objects.components` and the exact inscribed radii equal scipy's and
scikit-image's on random masks, components on the image border included."""

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.morphology import remove_small_holes

from cellcount_core.objects.components import ComponentPixels, fill_small_holes, pack_boxes
from cellcount_core.objects.diameter import inscribed_radii


def random_mask(seed, shape=(90, 110), density=0.55):
    """Blobs of many sizes with holes, touching each other and the border."""
    rng = np.random.default_rng(seed)
    return ndi.gaussian_filter(rng.random(shape), 2.0) > np.quantile(ndi.gaussian_filter(rng.random(shape), 2.0),
                                                                      1 - density)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("max_area", [1, 5, 40])
def test_fill_small_holes_equals_skimage_remove_small_holes(seed, max_area):
    mask = random_mask(seed, density=0.7)
    filled, holes_left = fill_small_holes(mask, max_area)
    expected = remove_small_holes(mask, area_threshold=max_area)
    assert np.array_equal(filled, expected)
    enclosed = ndi.binary_fill_holes(filled) & ~filled
    assert holes_left == bool(enclosed.any())


def test_component_pixels_boxes_and_first_pixels_equal_find_objects():
    labels, n = ndi.label(random_mask(5))
    boxes, first = ComponentPixels.of(labels).boxes()
    for index, (rows, columns) in enumerate(ndi.find_objects(labels), start=1):
        assert tuple(boxes[index]) == (rows.start, rows.stop, columns.start, columns.stop)
        assert first[index] == np.flatnonzero(labels == index)[0]
    assert first[0] == -1 and len(first) == n + 1


@pytest.mark.parametrize("seed", range(3))
def test_inscribed_radii_equal_the_exact_distance_transform_of_the_whole_mask(seed):
    labels, n = ndi.label(random_mask(seed, density=0.4))
    assert (labels[0] > 0).any() and (labels[:, -1] > 0).any()  # components on the border are part of the test
    expected = ndi.maximum(ndi.distance_transform_edt(labels > 0), labels, np.arange(1, n + 1))
    np.testing.assert_allclose(inscribed_radii(ComponentPixels.of(labels.astype(np.int32)))[1:], expected,
                               rtol=1e-6)


def test_packed_boxes_do_not_overlap_and_keep_their_gap():
    rng = np.random.default_rng(0)
    heights, widths = rng.integers(1, 40, 50), rng.integers(1, 40, 50)
    heights[0], widths[0] = 300, 7  # one tall clump
    origins, shape = pack_boxes(heights, widths, gap=3)
    sheet = np.zeros(shape, int)
    for (row, column), height, width in zip(origins, heights, widths):
        assert row >= 3 and column >= 3
        sheet[row - 3:row + height + 3, column - 3:column + width + 3] += 1  # box and its gap
        assert sheet[row:row + height, column:column + width].max() == 1
    assert np.count_nonzero(sheet) < 3 * np.sum((heights + 6) * (widths + 6))  # not mostly blank
