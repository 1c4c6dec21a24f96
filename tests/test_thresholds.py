import numpy as np
import pytest

from cellcount_core.objects.thresholds import THRESHOLD_METHODS, apply_threshold

ROW = np.array([[0.2, 0.5, 0.7, 1.0]], np.float32)


def test_methods_are_listed_in_the_contract_order():
    assert THRESHOLD_METHODS == ("model default", "simple", "manual", "otsu", "adaptive")


def test_simple_is_strictly_above_one_half():
    mask, threshold = apply_threshold(ROW, "simple")
    assert threshold == 0.5
    assert mask.dtype == bool and mask.tolist() == [[False, False, True, True]]


@pytest.mark.parametrize("method", ["model default", "manual"])
def test_value_methods_use_the_given_value(method):
    mask, threshold = apply_threshold(ROW, method, value=0.3)
    assert threshold == pytest.approx(0.3)
    assert mask.tolist() == [[False, True, True, True]]


@pytest.mark.parametrize("method", ["model default", "manual"])
def test_value_methods_need_a_value_within_0_1(method):
    with pytest.raises(ValueError, match="needs a threshold value"):
        apply_threshold(ROW, method)
    with pytest.raises(ValueError, match="within 0..1"):
        apply_threshold(ROW, method, value=1.5)


def test_otsu_separates_two_populations():
    probability = np.full((20, 20), 0.1, np.float32)
    probability[5:10, 5:15] = 0.9
    mask, threshold = apply_threshold(probability, "otsu")
    assert 0.1 <= threshold < 0.9
    assert np.array_equal(mask, probability == np.float32(0.9))


def test_adaptive_finds_faint_objects_that_a_global_threshold_misses():
    probability = np.zeros((100, 100), np.float32)
    probability[20:30, 20:30] = 0.9
    probability[60:70, 60:70] = 0.2  # faint: below 0.5
    mask, _ = apply_threshold(probability, "adaptive", block_size=31)
    expected = probability > 0
    assert np.array_equal(mask, expected)
    assert not apply_threshold(probability, "simple")[0][60:70, 60:70].any()


def test_adaptive_small_block_keeps_only_the_rim_of_a_large_uniform_object():
    probability = np.zeros((60, 60), np.float32)
    probability[10:50, 10:50] = 0.8
    mask, _ = apply_threshold(probability, "adaptive", block_size=5)
    assert mask[10, 30] and mask[30, 10]  # rim
    assert not mask[30, 30]  # interior equals its local mean


def test_adaptive_offset_is_in_probability_units_and_reports_mean_local_threshold():
    probability = np.full((40, 40), 0.4, np.float32)
    mask, threshold = apply_threshold(probability, "adaptive", block_size=11, offset=0.1)
    assert mask.all()  # 0.4 > 0.4 - 0.1 everywhere
    assert threshold == pytest.approx(np.rint(0.4 * 255) / 255 - 0.1, abs=1e-6)
    mask, _ = apply_threshold(probability, "adaptive", block_size=11, offset=-0.1)
    assert not mask.any()


@pytest.mark.parametrize("block_size", [4, 1, 2.0])
def test_adaptive_block_size_must_be_odd_integer(block_size):
    with pytest.raises(ValueError, match="block_size"):
        apply_threshold(ROW, "adaptive", block_size=block_size)


@pytest.mark.parametrize("probability", [ROW * 2, ROW - 0.5, np.array([[np.nan, 0.5]])])
def test_probability_outside_0_1_is_rejected(probability):
    with pytest.raises(ValueError, match="within 0..1"):
        apply_threshold(probability, "simple")


def test_probability_must_be_2d():
    with pytest.raises(ValueError, match="2-D"):
        apply_threshold(np.zeros((2, 3, 3)), "simple")


def test_unknown_method_lists_the_methods():
    with pytest.raises(ValueError, match="otsu, adaptive"):
        apply_threshold(ROW, "triangle")
