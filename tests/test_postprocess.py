import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.draw import disk

from cellcount_core.objects.diameter import estimate_diameter
from cellcount_core.objects.postprocess import default_min_size, labels_from_mask
from cellcount_core.images.synthetic import synthetic_cells


def _discs(shape, centres, radius):
    mask = np.zeros(shape, bool)
    for centre in centres:
        mask[disk(centre, radius, shape=shape)] = True
    return mask


def test_two_overlapping_discs_are_split_in_two():
    mask = _discs((60, 80), [(30, 25), (30, 49)], 15)
    assert ndi.label(mask)[1] == 1
    labels = labels_from_mask(mask, diameter=30)
    assert labels.dtype == np.int32 and labels.max() == 2
    assert labels[30, 20] != labels[30, 55]
    assert np.array_equal(labels > 0, mask)
    assert labels_from_mask(mask, diameter=30, split_touching=False).max() == 1


def test_diameter_is_estimated_when_not_given():
    mask = _discs((60, 80), [(30, 25), (30, 49)], 15)
    assert labels_from_mask(mask).max() == 2


def test_hole_inside_a_cell_is_filled():
    mask = _discs((50, 50), [(25, 25)], 15)
    mask[disk((25, 25), 3)] = False  # a hollow nucleus
    labels = labels_from_mask(mask, diameter=30)
    assert labels.max() == 1 and labels[25, 25] == 1
    assert labels_from_mask(mask, diameter=30, fill_holes=False, split_touching=False)[25, 25] == 0


def test_large_hole_of_a_ring_object_is_filled_after_splitting():
    mask = _discs((60, 60), [(30, 30)], 16)
    mask[disk((30, 30), 8)] = False  # hole of 200 px, larger than the speck filled before splitting
    labels = labels_from_mask(mask, diameter=32, split_touching=False)
    assert labels.max() == 1 and labels[30, 30] == 1


def test_gap_enclosed_by_several_cells_stays_background():
    centres = [(20, 20), (20, 44), (44, 20), (44, 44)]
    mask = _discs((64, 64), centres, 13)
    assert not mask[32, 32]
    labels = labels_from_mask(mask, diameter=26)
    assert labels.max() == 4 and labels[32, 32] == 0


def test_small_specks_are_removed_with_the_documented_default():
    mask = _discs((60, 60), [(30, 30)], 10)
    mask[2:4, 2:4] = True  # 4 px speck
    mask[50:56, 50:56] = True  # 36 px, below pi * 20**2 / 16 = 79
    assert default_min_size(20) == 79
    labels = labels_from_mask(mask, diameter=20)
    assert labels.max() == 1 and labels[30, 30] == 1
    assert labels_from_mask(mask, diameter=20, min_size=30).max() == 2


def test_border_objects_are_removed_only_on_request():
    mask = _discs((60, 60), [(30, 30), (5, 5)], 8)
    assert labels_from_mask(mask, diameter=16).max() == 2
    labels = labels_from_mask(mask, diameter=16, exclude_border=True)
    assert labels.max() == 1 and labels[30, 30] == 1


def test_probability_deepens_the_split_between_cells():
    mask = _discs((60, 80), [(30, 25), (30, 35)], 15)  # so much overlap that the distance alone sees one cell
    assert labels_from_mask(mask, diameter=30).max() == 1
    probability = np.where(mask, 1.0, 0.0).astype(np.float32)
    probability[:, 29:32] *= 0.3  # the network is unsure on the border
    labels = labels_from_mask(mask, probability, diameter=30)
    assert labels.max() == 2
    assert labels[30, 20] != labels[30, 40]


def test_empty_mask_gives_empty_labels():
    labels = labels_from_mask(np.zeros((10, 10), bool))
    assert labels.shape == (10, 10) and labels.max() == 0
    assert estimate_diameter(np.zeros((10, 10), bool)) == 0.0


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        ((np.zeros((2, 3, 3)),), {}, "2-D"),
        ((np.zeros((4, 4)), np.zeros((4, 5))), {}, "does not match"),
        ((np.zeros((4, 4)), np.full((4, 4), 2.0)), {}, "within 0..1"),
        ((np.zeros((4, 4)),), {"diameter": -3}, "diameter"),
        ((np.zeros((4, 4)),), {"min_size": 0}, "min_size"),
    ],
)
def test_bad_inputs_raise_clear_errors(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        labels_from_mask(*args, **kwargs)


@pytest.mark.parametrize(
    "n_cells, diameter, touching",
    [(40, (14, 24), 0.1), (300, (14, 24), 0.5), (600, (8, 12), 0.5), (40, (30, 40), 0.3)],
)
def test_diameter_estimate_within_20_percent_sparse_and_crowded(n_cells, diameter, touching):
    cells = synthetic_cells((512, 512), n_cells, diameter, touching=touching, clustering=0.4, seed=11)
    mask = cells.labels > 0
    assert estimate_diameter(mask) == pytest.approx(cells.diameter, rel=0.2)
    probability = ndi.gaussian_filter(mask.astype(np.float32), 1.0)
    assert estimate_diameter(probability > 0.5, probability) == pytest.approx(cells.diameter, rel=0.2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_true_mask_of_a_synthetic_image_gives_the_true_count(seed):
    cells = synthetic_cells(seed=seed)
    labels = labels_from_mask(cells.labels > 0)
    assert labels.max() == pytest.approx(cells.count, rel=0.05)


@pytest.mark.data
def test_real_nuclei_mask_is_split_into_its_nuclei(shared_data):
    tifffile = pytest.importorskip("tifffile")
    from cellcount_core.counts.metrics import match_detections

    truth = tifffile.imread(shared_data / "stardist_example" / "mask2d.tif")  # 125 nuclei, many touching
    assert estimate_diameter(truth > 0) == pytest.approx(23.7, rel=0.2)  # median equivalent diameter
    labels = labels_from_mask(truth > 0)
    assert labels.max() == pytest.approx(125, rel=0.15)
    assert match_detections(truth, labels, radius=23.7).f1 > 0.9


def test_remove_objects_outside_diameter_keeps_only_the_range():
    from cellcount_core.objects.postprocess import remove_objects_outside_diameter

    labels = np.zeros((100, 100), np.int32)
    labels[5:9, 5:9] = 1        # 16 px: diameter 4.5
    labels[20:40, 20:40] = 2    # 400 px: diameter 22.6
    labels[50:95, 50:95] = 3    # 2025 px: diameter 50.8
    kept = remove_objects_outside_diameter(labels, 10, 40)
    assert kept.max() == 1 and (kept == 1).sum() == 400
    with pytest.raises(ValueError, match="diameter range"):
        remove_objects_outside_diameter(labels, 40, 10)


def test_diameter_estimate_ignores_specks_that_outnumber_the_cells():
    mask = np.zeros((300, 300), bool)
    for row in range(3):
        for column in range(4):
            mask[disk((40 + 90 * row, 40 + 70 * column), 10)] = True
    specks = np.random.default_rng(0).integers(0, 150, size=(200, 2)) * 2  # isolated one-pixel specks
    mask[specks[:, 0], specks[:, 1]] = True
    assert (ndi.label(mask)[1]) > 150
    assert estimate_diameter(mask) == pytest.approx(20.0, rel=0.1)


# -- splitting follows the shape ------------------------------------------------------------------------------


def _ellipse_mask(length, aspect, angle):
    from skimage.draw import ellipse

    side = length + 40
    mask = np.zeros((side, side), bool)
    mask[ellipse(side // 2, side // 2, length / 2 / aspect, length / 2, shape=mask.shape, rotation=angle)] = True
    return mask


def _smooth_probability(mask):
    return np.clip(ndi.gaussian_filter(mask.astype(np.float32), 1.0), 0.0, 1.0)


@pytest.mark.parametrize("length", [20, 45, 80, 150])
@pytest.mark.parametrize("aspect, angle", [(1.0, 0.0), (2.0, 0.5), (3.0, 1.0)])
def test_a_convex_cell_of_any_size_is_one_object_even_with_a_diameter_3x_too_small(length, aspect, angle):
    mask = _ellipse_mask(length, aspect, angle)
    diameter = 2.0 * np.sqrt(mask.sum() / np.pi)
    for given in (diameter, diameter / 3.0):
        assert labels_from_mask(mask, diameter=given).max() == 1
        assert labels_from_mask(mask, _smooth_probability(mask), diameter=given).max() == 1


CLUMPS = {
    "pair": [(0.0, 0.0), (0.0, 1.0)],
    "row of three": [(0.0, 0.0), (0.0, 1.0), (0.0, 2.0)],
    "triangle": [(0.0, 0.0), (0.0, 1.0), (0.866, 0.5)],
}


@pytest.mark.parametrize("radius", [10, 25, 60])
@pytest.mark.parametrize("clump, spacing", [("pair", 1.6), ("pair", 1.95), ("row of three", 1.6),
                                            ("row of three", 1.95), ("triangle", 2.0)])
def test_touching_disks_are_split_into_their_cells(radius, clump, spacing):
    """Centres `spacing` radii apart. (Three disks overlapping in a triangle have a fourth distance peak between
    them and come out as four, as they did with the earlier peak_local_max seeds.)"""
    step = spacing * radius
    side = int(4 * radius + 2 * step + 20)
    mask = _discs((side, side), [(2 * radius + 10 + y * step, 2 * radius + 10 + x * step) for y, x in CLUMPS[clump]],
                  radius)
    assert ndi.label(mask)[1] == 1
    for probability in (None, _smooth_probability(mask)):
        assert labels_from_mask(mask, probability, diameter=2 * radius).max() == len(CLUMPS[clump])


def test_opencv_components_and_hole_filling_equal_scipy():
    from cellcount_core.objects.components import fill_mask_holes, label_components

    mask = ndi.binary_dilation(np.random.default_rng(4).random((120, 90)) > 0.97, iterations=2)
    mask[30:60, 20:50] = True
    mask[40:45, 30:35] = False  # a hole
    components, stats = label_components(mask)
    expected, n = ndi.label(mask)
    assert np.array_equal(components, expected) and len(stats) == n + 1
    assert np.array_equal(stats[1:, -1], np.bincount(expected.ravel())[1:])
    assert np.array_equal(fill_mask_holes(mask).astype(bool), ndi.binary_fill_holes(mask))
