"""The typical-diameter estimate on the masks a network gives for unusual images."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from cellcount_core.objects.diameter import estimate_diameter


def disk_grid(diameter, shape, spacing=2.0):
    """A mask of disks of one diameter on a grid."""
    step = int(diameter * spacing)
    centres = np.ones(shape, bool)
    centres[step // 2:shape[0] - step // 2 + 1:step, step // 2:shape[1] - step // 2 + 1:step] = False
    return ndi.distance_transform_edt(centres) <= diameter / 2


@pytest.mark.parametrize("diameter", [12, 40, 90])
def test_textured_cells_with_holes_and_ragged_insides(diameter):
    mask = disk_grid(diameter, (600, 600))
    rng = np.random.default_rng(diameter)
    holey = mask & ~ndi.binary_dilation(rng.random(mask.shape) > 0.97, iterations=1)  # chromatin-like holes
    holey = ndi.binary_opening(holey) | (mask & ~ndi.binary_erosion(mask, iterations=2))  # the rim stays
    assert estimate_diameter(holey) == pytest.approx(diameter, rel=0.1)


def test_specks_far_outnumbering_the_cells_do_not_pull_the_estimate_down():
    mask = disk_grid(30, (400, 400), spacing=3)
    rng = np.random.default_rng(0)
    specks = rng.random(mask.shape) > 0.995
    assert specks.sum() > 10 * ndi.label(mask)[1]
    assert estimate_diameter(mask | specks) == pytest.approx(30, rel=0.1)


@pytest.mark.parametrize("shape, spacing", [((120, 120), 4.0), ((2000, 2000), 1.5)])
def test_a_few_cells_or_thousands(shape, spacing):
    mask = disk_grid(16, shape, spacing)
    assert 1 <= ndi.label(mask)[1] and estimate_diameter(mask) == pytest.approx(16, rel=0.1)


def test_clumps_of_touching_cells_give_the_size_of_one_cell():
    yy, xx = np.indices((300, 300))
    mask = np.zeros((300, 300), bool)
    for cy in (60, 150, 240):  # rows of three touching disks of 30 px
        for cx in (100, 128, 156):
            mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= 15 ** 2
    assert ndi.label(mask)[1] == 3
    assert estimate_diameter(mask) == pytest.approx(30, rel=0.15)
