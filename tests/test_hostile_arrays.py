"""Hostile image arrays: every dtype, sizes from 1 x 1 to 1 x 5000, stacks, colour, NaN/inf, empty and saturated
fields, probability maps outside 0..1, too little memory. Each gives a correct result or a ValueError that names
the image and says what to do; never another exception, a hang or a silent skip (docs/RELIABILITY.md)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cellcount_core.images import image_checks
from cellcount_core.images.image_checks import InsufficientMemoryError, check_image, check_memory
from cellcount_core.running.inference import predict_count
from cellcount_core.objects.segmentation import labels_from_probability, segment_image
from cellcount_core.images.synthetic import synthetic_cells
from fuzz import fuzz_settings

DTYPES = ["uint8", "uint16", "uint32", "int8", "int16", "int32", "int64", "float16", "float32", "float64"]


@pytest.fixture(scope="module")
def cells():
    """160 x 160 synthetic nuclei (16 cells) as a float image in 0..1."""
    found = synthetic_cells((160, 160), 16, (12, 18), dtype="float32", seed=4)
    return found.image, found.count


@pytest.fixture(scope="module")
def reference(cells):
    """The objects and regression count of the float image."""
    image, _ = cells
    return segment_image(image, device="CPU"), predict_count(image, device="CPU")


def in_dtype(image, dtype):
    """``image`` (0..1) spread over the range of an integer dtype, or as is for a float one."""
    if np.issubdtype(np.dtype(dtype), np.floating):
        return image.astype(dtype)
    info = np.iinfo(dtype)
    return (info.min + image * (float(info.max) - info.min)).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_numeric_dtype_gives_the_same_count(cells, reference, dtype):
    image, true_count = cells
    objects, regression = reference
    assert abs(objects.count - true_count) <= 2
    converted = in_dtype(image, dtype)
    check_image(converted)
    assert segment_image(converted, device="CPU").count == pytest.approx(objects.count, abs=1)
    assert predict_count(converted, device="CPU") == pytest.approx(regression, rel=0.02)


@pytest.mark.parametrize("convert", [lambda mask: mask, lambda mask: mask.astype(np.uint8) * 255])
def test_a_binary_mask_is_refused_unless_the_model_reads_masks(cells, convert):
    """A mask is refused: the networks read intensities, and what they make of a mask is no count of its cells
    (segmenter v3 found none of them; v4 finds 15 objects)."""
    image, _ = cells
    mask = convert(image > np.percentile(image, 80))
    with pytest.raises(ValueError, match="^cells.tif is a binary mask \\(two values only\\); the networks read"):
        check_image(mask, source="cells.tif")
    check_image(mask, masks_allowed=True)


def test_rgb_and_rgba_give_the_gray_count(cells, reference):
    image, _ = cells
    gray, _ = reference
    for colour in (np.stack([image] * 3, axis=-1), np.dstack([image] * 3 + [np.ones_like(image)])):
        check_image(colour)
        assert np.array_equal(segment_image(colour, device="CPU").labels, gray.labels)


@pytest.mark.parametrize("pixels", [np.zeros((128, 128), np.uint16), np.full((128, 128), 65535, np.uint16),
                                    np.full((128, 128), 1.0, np.float32)])
def test_empty_and_saturated_fields_have_no_cells(pixels):
    assert segment_image(pixels, device="CPU").count == 0
    assert predict_count(pixels, device="CPU") < 0.5


@pytest.mark.parametrize("shape, message", [
    ((1, 1), "is 1 x 1 pixels; the smallest image cellcount segments or counts is 8 x 8 pixels"),
    ((1, 5000), "is 1 x 5000 pixels; the smallest image cellcount segments or counts is 8 x 8 pixels"),
    ((7, 300), "is 7 x 300 pixels; the smallest"),
    ((), r"has shape \(\); a 2-D gray image"),
    ((5, 64, 64), r"has shape \(5, 64, 64\); a 2-D gray image .* Split multi-channel stacks"),
    ((64, 64, 2), r"has shape \(64, 64, 2\)"),
    ((0, 64), r"has shape \(0, 64\) with no pixels"),
])
def test_shapes_the_networks_cannot_take_are_named(shape, message):
    with pytest.raises(ValueError, match=f"^cells.tif {message}"):
        check_image(np.zeros(shape, np.uint8), source="cells.tif")


def test_the_smallest_accepted_image_is_counted():
    side = image_checks.MIN_IMAGE_SIDE
    check_image(np.zeros((side, side), np.uint8))
    assert segment_image(np.zeros((side, side), np.uint8), device="CPU").count == 0


@pytest.mark.parametrize("value, message", [
    (np.nan, "contains NaN or infinite values; replace them"),
    (np.inf, "contains NaN or infinite values"),
    (-np.inf, "contains NaN or infinite values"),
    (1e300, r"holds values up to 1e\+300, beyond float32's range"),
])
def test_values_the_networks_cannot_compute_with_are_named(value, message):
    image = np.ones((64, 64))
    image[10, 10] = value
    with pytest.raises(ValueError, match=f"^cells.tif {message}"):
        check_image(image, source="cells.tif")
    if not np.isfinite(value):  # the library functions refuse them too
        with pytest.raises(ValueError, match="NaN or infinite"):
            segment_image(image, device="CPU")


@pytest.mark.parametrize("dtype", [complex, object, "U3"])
def test_non_numeric_dtypes_are_named(dtype):
    with pytest.raises(ValueError, match=f"has dtype {np.dtype(dtype)}; a real numeric"):
        check_image(np.zeros((16, 16), dtype))


@pytest.mark.parametrize("probability", [np.full((64, 64), 3.0), np.full((64, 64), -0.1), np.full((64, 64), np.nan)])
def test_a_probability_map_outside_0_to_1_is_refused(probability):
    with pytest.raises(ValueError, match="probability must hold finite values within 0..1; pass the network's sigmoid"):
        labels_from_probability(probability, threshold_method="simple")


def test_too_little_memory_is_said_before_starting(monkeypatch):
    monkeypatch.setattr(image_checks, "available_bytes", lambda: 2 * 2**30)
    check_memory((1000, 1000), np.uint16, source="small.tif")
    with pytest.raises(InsufficientMemoryError, match=r"^big.tif is 20000 x 20000 pixels: counting it needs about "
                                                      r"8.7 GB of memory, but 2.0 GB is available"):
        check_memory((20000, 20000), np.uint16, source="big.tif", loaded=False)


def test_available_memory_is_known_here():
    assert 0 < image_checks.available_bytes() < 2**50


@st.composite
def hostile_arrays(draw):
    """Arrays of any dtype and of shapes around the accepted ones, with any values (NaN and inf included)."""
    dtype = draw(st.sampled_from(DTYPES + ["bool"]))
    shape = draw(st.one_of(
        st.tuples(st.integers(1, 48), st.integers(1, 48)),
        st.tuples(st.integers(1, 24), st.integers(1, 24), st.sampled_from([1, 2, 3, 4, 5])),
        st.tuples(st.integers(1, 3), st.integers(1, 16), st.integers(1, 16), st.integers(1, 3)),
    ))
    return draw(hnp.arrays(np.dtype(dtype), shape))


@fuzz_settings(25)
@given(image=hostile_arrays())
def test_any_array_gives_a_result_or_a_clear_error(image):
    try:
        check_image(image, source="fuzzed")
    except ValueError as error:
        assert str(error).startswith("fuzzed") and ("; " in str(error) or ". " in str(error))
        return
    result = segment_image(image, device="CPU", tile_size=64)
    assert result.labels.shape == image.shape[:2] and result.count == result.labels.max() >= 0
    count = predict_count(image, device="CPU", tile_size=64)
    assert np.isfinite(count) and count >= 0
