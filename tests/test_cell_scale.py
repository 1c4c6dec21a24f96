"""Bringing cells to a network's size: the estimate, the factor, the resize and the way back (a stand-in network)."""

import math

import numpy as np
import pytest
from scipy import ndimage as ndi

from cellcount_core.running.cell_scale import (DENSITY_ENLARGEMENT, MAX_ENLARGED_PIXELS, MIN_SIDE, PROBE_FACTORS,
                                               CellScale, aimed_at_band, breaks_up_when_enlarged, counter_enlargement,
                                               density_diameter, diameter_in_probability, is_below_band,
                                               is_fragmented, is_specks, predict_at_cell_scale, resize_image,
                                               scale_factor)
from cellcount_core.images.normalization import (featureless_level, floor_range_on_noise, is_featureless, noise_sigma,
                                                  percentile_range)

BAND = (8.0, 24.0)
CENTRE = math.sqrt(8.0 * 24.0)


def disks(diameter, shape=(512, 512), spacing=2.0):
    """A float32 image of bright disks of one diameter on a grid, and how many there are."""
    image = np.zeros(shape, np.float32)
    step = int(diameter * spacing)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    count = 0
    for cy in range(step // 2, shape[0] - step // 2 + 1, step):
        for cx in range(step // 2, shape[1] - step // 2 + 1, step):
            image[(yy - cy) ** 2 + (xx - cx) ** 2 <= (diameter / 2) ** 2] = 1.0
            count += 1
    return image, count


class BandNetwork:
    """Sees cells as filled disks inside BAND and above it as broken rims and specks of texture, like the real
    segmenter on DSB2018."""

    def __init__(self, largest=BAND[1]):
        self.sizes = []
        self.largest = largest

    def __call__(self, image):
        self.sizes.append(image.shape)
        mask = image > 0.5
        labels, n = ndi.label(mask)
        areas = ndi.sum_labels(np.ones_like(labels), labels, np.arange(1, n + 1))
        too_large = np.concatenate([[False], np.sqrt(4 * areas / np.pi) > self.largest])[labels]
        yy, xx = np.indices(mask.shape)
        rims = mask & ~ndi.binary_erosion(mask, iterations=2) & ((yy // 6 + xx // 6) % 2 == 0)
        specks = mask & (yy % 6 < 2) & (xx % 6 < 2)
        return np.where(too_large, rims | specks, mask).astype(np.float32)


def test_another_band_reduces_no_further_than_it_needs():
    wider = (8.0, 48.0)
    assert aimed_at_band(CellScale(CENTRE / 40.0, 40.0), wider) == CellScale(1.0, 40.0)  # inside the wider band
    assert aimed_at_band(CellScale(CENTRE / 80.0, 80.0), wider).factor == pytest.approx(math.sqrt(8 * 48) / 80.0)
    assert aimed_at_band(CellScale(1.0, 40.0), wider) == CellScale(1.0, 40.0)  # kept at its size: stays so
    assert aimed_at_band(CellScale(2.0, 3.0), wider) == CellScale(2.0, 3.0)  # enlarged: left alone
    assert aimed_at_band(CellScale(CENTRE / 80.0, 80.0), BAND) == CellScale(CENTRE / 80.0, 80.0)


def test_scale_factor_leaves_the_band_alone_and_aims_at_its_centre():
    assert scale_factor(16.0, BAND) == 1.0
    assert scale_factor(0.0, BAND) == 1.0
    assert scale_factor(80.0, BAND) == pytest.approx(CENTRE / 80.0)
    assert scale_factor(4.0, BAND) == pytest.approx(CENTRE / 4.0)
    assert scale_factor(10_000.0, BAND) == pytest.approx(1 / 16)


@pytest.mark.parametrize("dtype", [bool, np.uint8, np.uint16, np.int32, np.int64, np.float16, np.float32])
def test_resize_image_takes_every_dtype(dtype):
    image = np.zeros((40, 60), dtype)
    resized = resize_image(image, 0.5)
    assert resized.shape == (20, 30)
    assert resize_image(np.zeros((40, 60, 3), dtype), 2.0).shape == (80, 120, 3)


def test_cells_inside_the_band_run_once_at_full_size():
    image, _ = disks(16, shape=(384, 384))
    network = BandNetwork()
    values, scale = predict_at_cell_scale(image, network, BAND, 0.5)
    assert scale.factor == 1.0
    assert scale.diameter == pytest.approx(16, rel=0.1)
    assert np.array_equal(values, network(image))
    # the probes ran on copies of 1/64 and 1/16 of the pixels (1/256 would be under MIN_SIDE), then one full-size pass
    probes = [factor for factor in PROBE_FACTORS if min(image.shape) * factor >= MIN_SIDE]
    assert len(probes) == 2
    assert network.sizes[-2] == image.shape and len(network.sizes) == len(probes) + 2


@pytest.mark.parametrize("diameter", [40, 80, 120])
def test_large_cells_are_reduced_into_the_band_and_mapped_back(diameter):
    image, count = disks(diameter, shape=(768, 768))
    values, scale = predict_at_cell_scale(image, BandNetwork(), BAND, 0.5)
    assert BAND[0] <= diameter * scale.factor <= BAND[1]
    assert scale.diameter == pytest.approx(diameter, rel=0.15)
    assert values.shape == image.shape
    labels, found = ndi.label(values > 0.5)
    assert found == count
    assert (values > 0.5).sum() == pytest.approx(image.sum(), rel=0.05)  # filled disks, not outlines


def test_large_cells_seen_whole_at_full_size_still_run_reduced():
    # as many full-size pieces as reduced cells is above FRAGMENT_RATIO: the watershed would over-split large
    # textured nuclei at full size; only cells that merge at full size (BBBC005 w2) keep it (test_unseen_images)
    image, count = disks(60, shape=(768, 768))
    network = BandNetwork(largest=100.0)  # trained on large cells too
    values, scale = predict_at_cell_scale(image, network, BAND, 0.5)
    assert BAND[0] <= 60 * scale.factor <= BAND[1]
    assert ndi.label(values > 0.5)[1] == count


def test_fragmented_needs_enough_reduced_cells_for_a_verdict():
    whole, _ = disks(60, shape=(480, 480))
    rims = BandNetwork()(whole)
    assert is_fragmented(rims, whole, 0.5, 60.0)
    # crowded cells that a coarse view merged into a few giant ones: too few cells for a verdict
    small, _ = disks(20, shape=(480, 480), spacing=1.2)
    clumps = ndi.binary_closing(small > 0.5, iterations=6).astype(np.float32)
    assert not is_fragmented(small, clumps, 0.5, 190.0)
    assert is_fragmented(small, clumps, 0.5, 60.0)  # as many cells as 54 of 60 px: a verdict


def test_a_few_large_cells_broken_up_at_full_size_run_reduced():
    # four cells of 100 px: too few reduced cells for a verdict by count, but the full-size rims and specks come
    # apart into more pieces when the image is enlarged (the StarDist example's nuclei enlarged x5: 110 to 770 pieces)
    image, count = disks(100, shape=(400, 400))
    values, scale = predict_at_cell_scale(image, BandNetwork(), BAND, 0.5)
    assert count == 4 and scale.factor < 1.0
    assert ndi.label(values > 0.5)[1] == count
    # in a field without cells the pieces are noise, whatever they do when enlarged
    assert predict_at_cell_scale(image, BandNetwork(), BAND, 0.5, is_empty=lambda field: True)[1].factor == 1.0


def test_small_cells_that_a_coarse_view_merges_keep_their_size():
    # crowded cells of 6 px, which the reduced pass sees as two clumps: enlarged, they stay as many, twice as wide
    image, clumps = np.zeros((240, 240), np.float32), np.zeros((240, 240), np.float32)
    for top in (30, 140):
        image[top:top + 70, 30:210] = disks(6, shape=(70, 180), spacing=1.6)[0]
        clumps[top:top + 70, 30:210] = 1.0
    network = BandNetwork()
    assert ndi.label(clumps)[1] == 2 and ndi.label(image)[1] > 100
    assert not is_fragmented(image, clumps, 0.5, 100.0)  # too few reduced cells for a verdict by count
    assert not breaks_up_when_enlarged(image, network, network(image), clumps, 0.5, BAND, 100.0)
    large, _ = disks(100, shape=(400, 400))  # broken rims and specks: more pieces when enlarged
    assert breaks_up_when_enlarged(large, network, network(large), large, 0.5, BAND, 100.0)


def test_without_scaling_large_cells_are_outlines():
    image, _ = disks(80, shape=(768, 768))
    assert (BandNetwork()(image) > 0.5).sum() < 0.3 * image.sum()


def test_a_given_diameter_sets_the_factor_without_probes():
    image, _ = disks(6, shape=(256, 256), spacing=3)
    network = BandNetwork()
    values, scale = predict_at_cell_scale(image, network, BAND, 0.5, diameter=6.0)
    assert scale.factor == pytest.approx(CENTRE / 6.0)
    assert len(network.sizes) == 1 and network.sizes[0][0] == round(256 * CENTRE / 6.0)
    assert values.shape == image.shape


def test_specks_never_enlarge_the_image():
    rng = np.random.default_rng(0)
    noise = (rng.random((256, 256)) > 0.97).astype(np.float32)  # one-pixel specks
    assert 0 < diameter_in_probability(noise, 0.5) < BAND[0]
    _, scale = predict_at_cell_scale(noise, BandNetwork(), BAND, 0.5)
    assert scale.factor == 1.0


def test_an_empty_image_runs_once_at_full_size():
    values, scale = predict_at_cell_scale(np.zeros((300, 200), np.float32), BandNetwork(), BAND, 0.5)
    assert scale.factor == 1.0 and scale.diameter == 0.0 and not values.any()


def test_noise_sigma_of_white_noise_with_and_without_cells():
    rng = np.random.default_rng(1)
    noise = rng.normal(100.0, 10.0, (512, 512)).astype(np.float32)
    assert noise_sigma(noise) == pytest.approx(10.0, rel=0.05)
    cells, _ = disks(20)
    assert noise_sigma(noise + 200.0 * cells) == pytest.approx(10.0, rel=0.1)


def test_noise_sigma_of_a_flat_quantized_image_is_half_a_step():
    image = np.full((64, 64), 12, np.uint8)
    image[10:20, 10:20] = 13
    assert noise_sigma(image) == 0.5
    assert noise_sigma(image / 255.0) == pytest.approx(0.5 / 255.0)


def test_the_noise_floor_keeps_an_empty_field_dim_and_leaves_real_images_alone():
    rng = np.random.default_rng(2)
    noise = rng.normal(100.0, 10.0, (256, 256))
    lo, hi = percentile_range(noise)
    floored = floor_range_on_noise(lo, hi, noise_sigma(noise), 40.0)
    assert (hi - lo) / (floored[1] - lo) < 0.15  # the noise spans under 15 % of the range
    cells = noise + 1000.0 * disks(20, shape=(256, 256))[0]
    lo, hi = percentile_range(cells)
    assert floor_range_on_noise(lo, hi, noise_sigma(cells), 40.0) == (lo, hi)


def test_specks_are_a_foreground_far_below_the_band():
    assert is_specks(CellScale(1.0, 3.3), BAND)
    assert not is_specks(CellScale(1.0, 0.5 * BAND[0]), BAND)
    assert is_specks(CellScale(1.0, 0.0), BAND)  # nothing found
    assert not is_specks(CellScale(0.5, 3.3), BAND)  # a reduced pass: cells, seen small


def test_below_the_band_is_a_full_size_foreground_narrower_than_its_smallest_cells():
    assert is_below_band(CellScale(1.0, 0.9 * BAND[0]), BAND)
    assert not is_below_band(CellScale(1.0, BAND[0]), BAND)
    assert is_below_band(CellScale(1.0, 0.0), BAND)  # nothing found
    assert not is_below_band(CellScale(0.5, 0.9 * BAND[0]), BAND)  # a reduced pass


def test_featureless_fields_have_no_structure_wider_than_a_pixel():
    rng = np.random.default_rng(1)
    dark = rng.poisson(0.05, (200, 200)).astype(np.uint8) * 13  # scattered single photons, 13 grey levels each
    level = featureless_level(0.0, 0.5, 40)  # 12 grey levels: 0.6 of a noise floor of 40 sigma
    assert is_featureless(dark, level)
    dark[:2, :2] = [[13, 13], [0, 13]]  # three photons in a corner: still specks (no border pixel is repeated)
    assert is_featureless(dark, level)
    dim_cells, _ = disks(3, shape=(200, 200))  # cells of 3 px survive the median
    assert not is_featureless((dim_cells * 13).astype(np.uint8), level)
    assert is_featureless((dim_cells * 11).astype(np.uint8), level)


@pytest.mark.parametrize("diameter", [4.0, 12.0, 30.0])
def test_density_diameter_of_unit_masses_spread_over_disks(diameter):
    image, count = disks(diameter, spacing=2.5)
    labels, found = ndi.label(image > 0)
    areas = np.bincount(labels.ravel())[1:]
    density = (image > 0) / areas[np.maximum(labels - 1, 0)] * (labels > 0)  # unit mass per disk
    assert found == count and density.sum() == pytest.approx(count)
    measured = density_diameter(float(density.sum()), float(np.square(density).sum()))
    assert measured == pytest.approx(diameter, rel=0.1)  # pixelated disks: area within a few per cent of pi d^2/4


def test_an_empty_density_map_has_no_diameter():
    assert density_diameter(0.0, 0.0) == 0.0
    assert density_diameter(-0.1, 0.0) == 0.0


def test_the_counter_enlarges_only_small_cells_within_the_size_limit():
    threshold = 32.0
    small = 0.9 * threshold
    assert counter_enlargement(small, (520, 696), threshold) == DENSITY_ENLARGEMENT
    assert counter_enlargement(threshold, (520, 696), threshold) == 1.0
    assert counter_enlargement(0.0, (520, 696), threshold) == 1.0  # an empty map
    side = int(math.sqrt(MAX_ENLARGED_PIXELS) / DENSITY_ENLARGEMENT)
    assert counter_enlargement(small, (side, side), threshold) == DENSITY_ENLARGEMENT
    assert counter_enlargement(small, (side + 1, side + 1), threshold) == 1.0


def test_a_counter_without_a_small_density_diameter_never_enlarges():
    assert counter_enlargement(5.0, (520, 696), None) == 1.0


def test_cells_the_probes_measured_are_not_enlarged_past_the_counters_band():
    assert counter_enlargement(30.0, (520, 696), 38.0, cell_diameter=60.0, largest=48.0) == 1.0  # BBBC005 bodies
    assert counter_enlargement(30.0, (520, 696), 38.0, cell_diameter=20.0, largest=48.0) == DENSITY_ENLARGEMENT
    assert counter_enlargement(30.0, (520, 696), 38.0, cell_diameter=0.0, largest=48.0) == DENSITY_ENLARGEMENT
