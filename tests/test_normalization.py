import numpy as np
import pytest

from cellcount_core.images import normalization
from cellcount_core.images.normalization import normalize_percentile, to_grayscale, to_rgb


def test_to_grayscale_passes_2d_and_averages_colour_channels():
    gray = np.arange(6, dtype=np.uint16).reshape(2, 3)
    assert to_grayscale(gray) is gray
    rgb = np.stack([np.full((2, 3), 3), np.full((2, 3), 6), np.full((2, 3), 12)], axis=-1).astype(np.uint8)
    result = to_grayscale(rgb)
    assert result.dtype == np.float32
    np.testing.assert_array_equal(result, np.full((2, 3), 7.0))
    rgba = np.concatenate([rgb, np.full((2, 3, 1), 255, np.uint8)], axis=-1)
    np.testing.assert_array_equal(to_grayscale(rgba), np.full((2, 3), 7.0))


@pytest.mark.parametrize("shape", [(5,), (4, 4, 2), (4, 4, 5), (2, 4, 4, 3), (0, 4), (4, 0, 3)])
def test_bad_shapes_are_rejected_with_the_shape_named(shape):
    for function in (to_grayscale, to_rgb):
        with pytest.raises(ValueError, match=r"\(" + ", ".join(map(str, shape))):
            function(np.zeros(shape))


def test_to_rgb_repeats_gray_and_drops_alpha():
    gray = np.arange(6).reshape(2, 3)
    rgb = to_rgb(gray)
    assert rgb.shape == (2, 3, 3)
    for channel in range(3):
        np.testing.assert_array_equal(rgb[..., channel], gray)
    rgba = np.random.default_rng(0).integers(0, 255, (2, 3, 4))
    np.testing.assert_array_equal(to_rgb(rgba), rgba[..., :3])


def test_percentiles_map_to_zero_and_one():
    image = np.arange(101, dtype=np.uint16).reshape(1, 101)
    result = normalize_percentile(image, low=1.0, high=99.0)
    assert result.dtype == np.float32 and result.shape == image.shape
    np.testing.assert_allclose(result[0, [1, 50, 99]], [0.0, 0.5, 1.0], atol=1e-6)
    np.testing.assert_allclose(result[0, [0, 100]], [-1 / 98, 1 + 1 / 98], atol=1e-6)
    assert image[0, 100] == 100  # input untouched


def test_outliers_are_clipped_to_the_documented_range():
    image = np.zeros((10, 100))
    image[:, 50:] = 1.0
    image[0, 0] = 1000.0
    image[0, 1] = -1000.0
    result = normalize_percentile(image, low=2.0, high=98.0)
    assert result[0, 0] == pytest.approx(normalization.CLIP_RANGE[1])
    assert result[0, 1] == pytest.approx(normalization.CLIP_RANGE[0])
    assert np.abs(normalize_percentile(image, low=2.0, high=98.0, clip=None)[0, 0]) > 100


@pytest.mark.parametrize("value", [0, 7, -3.5])
def test_constant_image_gives_zeros(value):
    result = normalize_percentile(np.full((8, 9), value))
    assert result.dtype == np.float32
    np.testing.assert_array_equal(result, np.zeros((8, 9)))


def test_sparse_image_uses_the_maximum_when_percentiles_coincide():
    image = np.zeros((100, 100), np.uint8)
    image[5, 5] = 200
    image[6, 6] = 100  # 2 bright pixels of 10000: the 99.8th percentile is still 0
    result = normalize_percentile(image)
    assert result[5, 5] == pytest.approx(1.0)
    assert result[6, 6] == pytest.approx(0.5)
    assert result[0, 0] == 0.0


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_raise(bad):
    image = np.ones((4, 4), np.float32)
    image[1, 2] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        normalize_percentile(image)


@pytest.mark.parametrize("low, high", [(50, 50), (60, 40), (-1, 99), (1, 101)])
def test_invalid_percentiles_raise(low, high):
    with pytest.raises(ValueError, match="percentiles"):
        normalize_percentile(np.arange(10.0), low=low, high=high)


def test_empty_and_non_numeric_images_raise():
    with pytest.raises(ValueError, match="no pixels"):
        normalize_percentile(np.zeros((0, 5)))
    with pytest.raises(ValueError, match="dtype"):
        normalize_percentile(np.array([["a", "b"]]))


def test_boolean_image_is_accepted():
    image = np.zeros((10, 10), bool)
    image[:, 5:] = True
    np.testing.assert_array_equal(normalize_percentile(image), image.astype(np.float32))


def test_large_images_use_a_subsample_close_to_exact_percentiles(monkeypatch):
    rng = np.random.default_rng(1)
    image = rng.uniform(100.0, 5000.0, size=(600, 500)).astype(np.float32)
    exact = normalize_percentile(image, clip=None)
    monkeypatch.setattr(normalization, "PERCENTILE_SAMPLE_PIXELS", 30_000)  # stride 4 over 300 000 pixels
    seen = []
    original = np.percentile
    monkeypatch.setattr(normalization.np, "percentile", lambda a, q: seen.append(a.size) or original(a, q))
    sampled = normalize_percentile(image, clip=None)
    assert seen == [150 * 125]
    np.testing.assert_allclose(sampled, exact, atol=0.01)


def _noise_sigma_the_long_way(image):
    """Immerkaer's median estimate or half the smallest step between sorted distinct values, whichever is larger."""
    import cv2

    window = np.asarray(image, np.float32)
    steps = np.diff(np.unique(window))
    floor = 0.5 * float(steps.min()) if steps.size else 0.0
    kernel = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
    response = cv2.filter2D(window, -1, kernel)[1:-1, 1:-1]
    return max(float(np.median(np.abs(response))) / (0.6745 * 6.0), floor)


@pytest.mark.parametrize("case", ["noisy 16-bit", "noisy float", "sparse 8-bit noise", "coarse steps", "constant"])
def test_noise_sigma_skips_sorting_only_where_the_floor_cannot_win(case):
    from cellcount_core.images.normalization import noise_sigma

    rng = np.random.default_rng(3)
    image = {
        "noisy 16-bit": rng.poisson(300, (200, 240)).astype(np.uint16),
        "noisy float": rng.poisson(300, (200, 240)) / 65535.0,
        "sparse 8-bit noise": np.where(rng.random((200, 240)) < 0.02, 41, 40).astype(np.uint8),  # median response 0
        "coarse steps": np.kron(rng.integers(0, 50, (20, 24)), np.ones((10, 10))).astype(np.uint8) * 5,
        "constant": np.full((50, 60), 9.0, np.float32),
    }[case]
    assert noise_sigma(image) == _noise_sigma_the_long_way(image)
