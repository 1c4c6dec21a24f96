"""OpenCV's regional maxima, h-maxima and peak positions equal scikit-image's and scipy's on random surfaces,
plateaus included."""

import cv2
import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.morphology import local_maxima, reconstruction

from cellcount_core.objects.maxima import h_maxima, peak_positions, reconstruct_by_dilation, regional_maxima


def surfaces(count, seed):
    """Random float32 surfaces: integer ones (wide plateaus) and smooth ones of several scales."""
    rng = np.random.default_rng(seed)
    for trial in range(count):
        shape = tuple(rng.integers(1, 30, 2))
        if trial % 4 == 0:
            yield rng.integers(0, 4, shape).astype(np.float32), rng
        else:
            smooth = ndi.gaussian_filter(rng.random(shape).astype(np.float32), rng.uniform(0.5, 5.0))
            yield (10 * smooth).astype(np.float32), rng


@pytest.mark.parametrize("depth", [0.01, 0.5, 3.0])
def test_h_maxima_equal_skimage(depth):
    for surface, _ in surfaces(150, seed=int(depth * 100)):
        floor = reconstruction(surface - np.float32(depth), surface, method="dilation").astype(np.float32)
        assert np.array_equal(reconstruct_by_dilation(surface - np.float32(depth), surface), floor)
        assert np.array_equal(h_maxima(surface, depth), local_maxima(floor, connectivity=2, allow_borders=True))


def test_regional_maxima_equal_skimage_and_a_constant_surface_has_none():
    for surface, _ in surfaces(200, seed=1):
        assert np.array_equal(regional_maxima(surface), local_maxima(surface, connectivity=2, allow_borders=True))
    assert not regional_maxima(np.full((5, 7), 2.0, np.float32)).any()
    assert not h_maxima(np.full((5, 7), 2.0, np.float32), 0.5).any()


def test_peak_positions_equal_scipy_maximum_position():
    for surface, rng in surfaces(100, seed=2):
        surface = surface + np.float32(1e-3) * rng.random(surface.shape).astype(np.float32)  # no ties
        count, plateaus = cv2.connectedComponents(regional_maxima(surface).view(np.uint8), connectivity=8,
                                                  ltype=cv2.CV_32S)
        if count > 1:
            expected = np.array(ndi.maximum_position(surface, plateaus, np.arange(1, count))).T
            assert np.array_equal(np.stack(peak_positions(surface, plateaus, count)), expected)


def test_ties_go_to_the_first_pixel_in_raster_order():
    surface = np.zeros((4, 5), np.float32)
    surface[1, 3] = surface[2, 1] = 1.0
    plateaus = np.ones((4, 5), np.int32)
    assert [int(v) for v in np.concatenate(peak_positions(surface, plateaus, 2))] == [1, 3]
