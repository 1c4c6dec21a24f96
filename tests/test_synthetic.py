import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.measure import label, regionprops

from cellcount_core.images.synthetic import synthetic_cells, synthetic_dataset


def test_default_image_has_the_requested_cells_and_consistent_ground_truth():
    cells = synthetic_cells(seed=1)
    assert cells.image.shape == (512, 512) and cells.image.dtype == np.uint16
    assert cells.labels.dtype == np.int32
    assert cells.count == 60 == cells.labels.max()
    assert np.array_equal(np.unique(cells.labels), np.arange(61))  # sequential, all present
    expected = ndi.center_of_mass(np.ones_like(cells.labels), cells.labels, np.arange(1, 61))
    np.testing.assert_allclose(cells.centroids, expected, atol=1e-9)
    assert 14 * 0.9 <= cells.diameter <= 24 * 1.1


def test_same_seed_same_image_and_different_seed_different_image():
    a, b, c = synthetic_cells(seed=3), synthetic_cells(seed=3), synthetic_cells(seed=4)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.image, c.image)


def test_cells_are_brighter_than_background():
    cells = synthetic_cells(seed=2, dtype="float32")
    inside = cells.image[cells.labels > 0].mean()
    outside = cells.image[ndi.binary_dilation(cells.labels > 0, iterations=4) == 0].mean()
    assert inside > 4 * outside


def test_touching_cells_each_keep_one_visible_connected_region():
    cells = synthetic_cells((384, 384), 250, touching=0.6, clustering=0.3, seed=7)
    assert cells.count == 250
    # touching cells really touch: fewer foreground components than cells
    assert label(cells.labels > 0).max() < 0.8 * cells.count
    for region in regionprops(cells.labels):
        assert label(region.image).max() == 1
        assert region.area >= 0.5 * np.pi * (14 / 2) ** 2


def test_centers_place_cells_exactly():
    centers = np.array([[100, 255.6], [300, 256], [40, 40]])
    cells = synthetic_cells((400, 512), diameter=(20, 20), irregularity=0.0, centers=centers, seed=0)
    assert cells.count == 3
    np.testing.assert_allclose(cells.centroids, np.rint(centers), atol=0.6)
    assert abs(cells.diameter - 20) < 1.5


def test_dtypes_scale_to_full_range():
    u8 = synthetic_cells((128, 128), 10, dtype="uint8", seed=0)
    f32 = synthetic_cells((128, 128), 10, dtype="float32", seed=0)
    assert u8.image.dtype == np.uint8 and f32.image.dtype == np.float32
    assert 0.0 <= f32.image.min() and f32.image.max() <= 1.0
    np.testing.assert_allclose(u8.image / 255.0, f32.image, atol=1 / 255)


def test_noiseless_unblurred_image_is_background_outside_cells():
    cells = synthetic_cells((128, 128), 8, noise=0.0, blur_sigma=0.0, background=0.0, dtype="float32", seed=0)
    assert np.all(cells.image[cells.labels == 0] == 0.0)
    assert np.all(cells.image[cells.labels > 0] > 0.0)


def test_large_image_with_thousands_of_cells():
    cells = synthetic_cells((4000, 4000), 5000, seed=0)
    assert cells.count == 5000
    assert len(np.unique(cells.labels)) - 1 == 5000


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"shape": (10,)}, "shape"),
        ({"diameter": (30, 10)}, "diameter"),
        ({"touching": 1.5}, "touching"),
        ({"clustering": 0.7, "touching": 0.5}, "clustering \\+ touching"),
        ({"dtype": "int64"}, "dtype"),
        ({"centers": [1, 2, 3]}, "centers"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        synthetic_cells(**kwargs)


def test_dataset_varies_counts_and_diameters_and_is_reproducible():
    first = list(synthetic_dataset(4, seed=5, shape=(256, 256), count_range=(5, 60), diameter_range=(8, 30)))
    again = list(synthetic_dataset(4, seed=5, shape=(256, 256), count_range=(5, 60), diameter_range=(8, 30)))
    assert [c.count for c in first] == [c.count for c in again]
    assert len({c.count for c in first}) > 1 and len({round(c.diameter) for c in first}) > 1
    assert all(5 <= c.count <= 60 and c.image.shape == (256, 256) for c in first)
