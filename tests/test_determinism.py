"""The same image gives the same count and the same objects across runs, batch sizes, torch thread counts, tile
sizes and post-processing block sizes: property-based tests over random images and settings (budget: fuzz.py).

Measured while writing these (docs/RELIABILITY.md): runs and batch sizes agree bit for bit; thread counts change
the probabilities by up to 2e-7 (float rounding in the convolutions), never a count. Tile sizes agree because the
default tile overlap covers each network's receptive field (128 pixels for the bundled segmenter, 192 for the
counter, up to half the tile); the former fixed overlap of 64 pixels made the stitched maps differ near seams.
"""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from cellcount_core.running.inference import get_model, predict_count, predict_probability
from cellcount_core.objects.large_images import labels_in_blocks
from cellcount_core.models.receptive_field import context_overlap, receptive_radius
from cellcount_core.objects.segmentation import labels_from_probability
from cellcount_core.images.synthetic import ideal_probability, synthetic_cells
from fuzz import fuzz_settings

THRESHOLD = 0.5


def same_objects(a, b):
    """True if two label images hold the same objects (the same pixel sets), whatever their ids."""
    if not np.array_equal(a > 0, b > 0):
        return False
    pairs = np.unique(np.stack([a[a > 0], b[b > 0]]), axis=1)
    return len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == pairs.shape[1]


@st.composite
def cell_images(draw, min_side=64, max_side=256):
    """A synthetic fluorescence image: random size, cell count, diameter, noise and dtype."""
    height = draw(st.integers(min_side, max_side))
    width = draw(st.integers(min_side, max_side))
    n_cells = draw(st.integers(0, height * width // 1500))
    low = draw(st.floats(8, 24))
    cells = synthetic_cells((height, width), n_cells, (low, low * 1.5), noise=draw(st.floats(0.0, 0.1)),
                            dtype=draw(st.sampled_from(["uint8", "uint16", "float32"])),
                            seed=draw(st.integers(0, 2**16)))
    return cells.image


def segment(image, **tiling):
    probability = predict_probability(image, device="CPU", **tiling)
    return probability, labels_from_probability(probability, threshold_method="simple")


@fuzz_settings(3)
@given(image=cell_images(), batch_size=st.integers(1, 6), threads=st.sampled_from([1, 2]))
def test_runs_batch_sizes_and_thread_counts_give_the_same_objects(image, batch_size, threads):
    reference_probability, reference = segment(image)
    reference_count = predict_count(image, device="CPU")
    again_probability, again = segment(image)
    assert np.array_equal(again_probability, reference_probability) and np.array_equal(again.labels, reference.labels)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        probability, found = segment(image, batch_size=batch_size)
        count = predict_count(image, device="CPU", batch_size=batch_size)
    finally:
        torch.set_num_threads(previous)
    assert np.abs(probability - reference_probability).max() <= 1e-6
    near_threshold = np.abs(reference_probability - THRESHOLD) <= 1e-6
    assert np.array_equal((found.labels > 0) & ~near_threshold, (reference.labels > 0) & ~near_threshold)
    if not near_threshold.any():
        assert found.count == reference.count and same_objects(found.labels, reference.labels)
    assert count == pytest.approx(reference_count, rel=1e-5, abs=1e-4)


@pytest.mark.parametrize("name, radius, overlap", [("nuclei-segmenter", 126, 256), ("nuclei-counter", 94, 192)])
def test_the_default_overlap_covers_the_bundled_networks_receptive_fields(name, radius, overlap):
    network, _ = get_model(name, "CPU")
    assert receptive_radius(network) == radius
    assert context_overlap(network) == context_overlap(network, tile_size=512) == overlap
    assert context_overlap(network, tile_size=128) == 64  # half a small tile, so that it still steps


@fuzz_settings(3)
@given(image=cell_images(min_side=520, max_side=900))
def test_tile_sizes_give_the_whole_image_objects(image):
    # 512-pixel tiles are the smallest whose overlap (at most half a tile) covers the segmenter's receptive field,
    # 2 x 126 pixels (v4, depth 4). With 256-pixel tiles (128 of overlap) random images differed from a whole-image
    # run by up to 0.011 in probability, and in their objects on at least 5 of 30 (CELLCOUNT_FUZZ_EXAMPLES=30).
    whole_probability, whole = segment(image, tile_size=1024)
    probability, found = segment(image, tile_size=512)
    assert np.abs(probability - whole_probability).max() <= 1e-5
    assert found.count == whole.count and same_objects(found.labels, whole.labels)
    whole_count = predict_count(image, device="CPU", tile_size=1024)
    assert predict_count(image, device="CPU", tile_size=512) == pytest.approx(whole_count, rel=1e-4, abs=1e-3)


def test_an_overlap_narrower_than_the_receptive_field_makes_seams():
    """Why the default overlap is the receptive field's: 64 pixels (32 of context per tile side, the former
    default) let a 256-pixel tiling differ from a whole-image run near its seams."""
    image = synthetic_cells((520, 520), 100, (12, 18), seed=1).image
    whole_probability, _ = segment(image, tile_size=1024)
    probability, _ = segment(image, tile_size=256, overlap=64)
    assert np.abs(probability - whole_probability).max() > 1e-3
    whole_count = predict_count(image, device="CPU", tile_size=1024)
    assert abs(predict_count(image, device="CPU", tile_size=256, overlap=64) / whole_count - 1) > 1e-3


@st.composite
def probability_maps(draw):
    """The probability map a perfect network gives for random cells, some touching or clustered."""
    height, width = draw(st.integers(100, 400)), draw(st.integers(100, 400))
    cells = synthetic_cells((height, width), draw(st.integers(0, height * width // 600)),
                            (draw(st.floats(8, 16)), 24), touching=draw(st.floats(0, 0.5)),
                            clustering=draw(st.floats(0, 0.5)), seed=draw(st.integers(0, 2**16)))
    return ideal_probability(cells.labels, sigma=draw(st.floats(0, 2)))


@fuzz_settings(20)
@given(probability=probability_maps(), block_side=st.integers(48, 300),
       method=st.sampled_from(["simple", "otsu", "adaptive"]), diameter=st.sampled_from([None, 14.0]))
def test_block_sizes_give_the_whole_image_objects(probability, block_side, method, diameter):
    whole = labels_from_probability(probability, threshold_method=method, diameter=diameter)
    blocks = labels_in_blocks(probability, threshold_method=method, diameter=diameter, block_side=block_side)
    assert blocks.labels.max() == whole.count
    assert same_objects(blocks.labels, whole.labels)
    assert blocks.diameter == pytest.approx(whole.diameter)
