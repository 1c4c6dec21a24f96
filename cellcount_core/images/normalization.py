"""Image preparation before a network: channel reduction, percentile normalization and its noise floor."""

import math

import cv2
import numpy as np

#: Normalized values are clipped to this range: bright outliers (saturated pixels, debris) keep some contrast
#: above 1 but cannot reach the extreme values that would dominate a network's activations.
CLIP_RANGE = (-0.5, 1.5)

#: Percentiles of larger images are computed on a regular strided subsample of about this many pixels.
PERCENTILE_SAMPLE_PIXELS = 4_000_000

# Difference of two 3 x 3 Laplacians: zero on linear ramps, 6 times the standard deviation on white noise.
_NOISE_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)


def _check_image_shape(image):
    """Raise ValueError unless `image` is H x W, H x W x 3 or H x W x 4 and not empty."""
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[-1] in (3, 4))):
        raise ValueError(
            f"image has shape {image.shape}; a 2-D gray image (H x W) or an RGB(A) image (H x W x 3 or "
            "H x W x 4) is expected. Split multi-channel stacks and pass one channel."
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image has shape {image.shape} with no pixels; pass a non-empty image.")


def to_grayscale(image):
    """Reduce an image to one channel.

    Parameters
    ----------
    image : array_like
        H x W (returned as is), or H x W x 3 / H x W x 4 (the alpha channel is ignored).

    Returns
    -------
    numpy.ndarray
        H x W; the mean of the colour channels as float32 for colour input.

    Raises
    ------
    ValueError
        If the image is empty or has any other shape.
    """
    image = np.asarray(image)
    _check_image_shape(image)
    if image.ndim == 2:
        return image
    return image[..., :3].mean(axis=-1, dtype=np.float32)


def to_rgb(image):
    """Give an image three colour channels, for networks that take colour input.

    Parameters
    ----------
    image : array_like
        H x W (repeated into three channels, as a read-only view), H x W x 3, or H x W x 4 (alpha dropped).

    Returns
    -------
    numpy.ndarray
        H x W x 3, same dtype as the input.

    Raises
    ------
    ValueError
        If the image is empty or has any other shape.
    """
    image = np.asarray(image)
    _check_image_shape(image)
    if image.ndim == 2:
        return np.broadcast_to(image[..., None], image.shape + (3,))
    return image[..., :3]


def _percentile_sample(image):
    """Return `image` or, above PERCENTILE_SAMPLE_PIXELS pixels, a strided view over its first two axes."""
    pixels = image.shape[0] * image.shape[1]
    if pixels <= PERCENTILE_SAMPLE_PIXELS:
        return image
    stride = math.ceil(math.sqrt(pixels / PERCENTILE_SAMPLE_PIXELS))
    return image[::stride, ::stride]


def percentile_range(image, low=1.0, high=99.8):
    """Intensities that `normalize_percentile` maps to 0 and 1, so that tiles can be scaled one at a time.

    Parameters and errors are those of `normalize_percentile`.

    Returns
    -------
    lo, hi : float
        The `low` and `high` percentiles (of a strided subsample above ``PERCENTILE_SAMPLE_PIXELS``); ``hi`` is
        the image maximum where the two coincide, and ``hi <= lo`` only for a constant image.
    """
    image = np.asarray(image)
    if not 0.0 <= low < high <= 100.0:
        raise ValueError(f"percentiles low={low}, high={high} are invalid; use 0 <= low < high <= 100.")
    if image.size == 0:
        raise ValueError(f"image has shape {image.shape} with no pixels; pass a non-empty image.")
    if image.dtype == bool:
        image = image.view(np.uint8)
    if not np.issubdtype(image.dtype, np.number) or np.iscomplexobj(image):
        raise ValueError(f"image has dtype {image.dtype}; a real numeric image is expected.")
    if np.issubdtype(image.dtype, np.floating) and not (np.isfinite(image.min()) and np.isfinite(image.max())):
        raise ValueError(
            "image contains NaN or infinite values; replace them (for example with numpy.nan_to_num) "
            "before normalizing."
        )
    sample = _percentile_sample(image) if image.ndim >= 2 else image
    lo, hi = np.percentile(sample, [low, high])
    if hi <= lo:
        hi = float(image.max())
    return float(lo), float(hi)


def noise_sigma(image):
    """Standard deviation of the pixel noise of a gray image, robust to the edges of cells.

    Immerkaer's estimator (Computer Vision and Image Understanding 64, 1996) with a median instead of a mean:
    the image is filtered with the difference of two Laplacians, which cancels smooth structure and multiplies
    white noise by 6, and the median absolute response is turned into a standard deviation. Images above
    ``PERCENTILE_SAMPLE_PIXELS`` are measured on their central window of that size. The result is at least half
    the image's quantization step (the smallest difference between two of its values), so that a noiseless
    8-bit background, whose median response is 0, is not taken for a perfect signal.

    Parameters
    ----------
    image : (H, W) array_like
        Any real dtype.

    Returns
    -------
    float
    """
    image = np.asarray(image)
    side = int(math.sqrt(PERCENTILE_SAMPLE_PIXELS))
    top, left = max(0, (image.shape[0] - side) // 2), max(0, (image.shape[1] - side) // 2)
    window = image[top:top + side, left:left + side].astype(np.float32)
    if min(window.shape) < 3:
        return _quantization_floor(window)
    response = cv2.filter2D(window, -1, _NOISE_KERNEL)[1:-1, 1:-1]
    sigma = float(np.median(np.abs(response))) / (0.6745 * 6.0)
    neighbours = np.abs(np.diff(window, axis=1))
    if np.any(neighbours > 0) and sigma >= 0.5 * float(neighbours[neighbours > 0].min()):
        return sigma  # the floor is at most half of any difference between two values: no need to sort them all
    return max(sigma, _quantization_floor(window))


def _quantization_floor(window):
    """Half the smallest difference between two distinct values of a float32 array (0.0 for a constant one)."""
    steps = np.diff(np.unique(window))
    return 0.5 * float(steps.min()) if steps.size else 0.0


def floor_range_on_noise(lo, hi, sigma, min_range_over_noise):
    """Raise `hi` so that ``hi - lo`` spans at least `min_range_over_noise` noise standard deviations.

    Percentile normalization stretches any image to full contrast, an empty field's noise included; with this
    floor, noise stays dim and only structure well above it reaches full contrast.
    """
    return lo, max(hi, lo + min_range_over_noise * sigma)


#: A field, or an object, is featureless when its 3 x 3 median stays below this fraction of the noise floor's range
#: (`min_range_over_noise` noise standard deviations above the low percentile). Measured in noise standard
#: deviations (40 x 0.6 = 24) on DSB2018 validation images reduced x0.5 (26 images, nuclei of 3-5 px): the
#: objects' medians peak at 10-466, most above 17-24; sparse photon noise in dark background crops at 14 at most
#: (a crop of 401 specks); a crop's unlabelled nucleus at 28.
FEATURELESS_LEVEL = 0.6


def median_3x3(gray):
    """The 3 x 3 median of a gray image, the image's minimum all around it (OpenCV's own border repeats the edge
    pixels, and a mirrored one repeats their neighbours: a speck near a corner would count four times). Removes
    isolated bright pixels, photon noise in a dark field; keeps cells of three pixels and more."""
    gray = np.asarray(gray)
    if gray.dtype not in (np.uint8, np.uint16, np.float32):
        gray = gray.astype(np.float32)
    if min(gray.shape) < 2:
        return gray
    padded = cv2.copyMakeBorder(gray, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=float(gray.min()))
    return cv2.medianBlur(padded, 3)[1:-1, 1:-1]


def featureless_level(lo, sigma, min_range_over_noise):
    """The intensity a 3 x 3 median must reach to be a feature: `FEATURELESS_LEVEL` of the noise floor's range
    above `lo`."""
    return lo + FEATURELESS_LEVEL * min_range_over_noise * sigma


def is_featureless(gray, level):
    """Whether nothing wider than a pixel (`median_3x3`) rises to `level` (`featureless_level`): a field whose
    median stays low holds no cells, however bright its single pixels."""
    return float(median_3x3(gray).max()) < level


def scale_to_range(values, lo, hi, clip=CLIP_RANGE):
    """Map `lo` and `hi` to 0 and 1 in place on a float32 array, as `normalize_percentile` does.

    Parameters
    ----------
    values : numpy.ndarray
        float32 array, overwritten.
    lo, hi : float
        From `percentile_range`; ``hi <= lo`` gives zeros.
    clip : tuple of float or None
        Range the result is clipped to; None leaves it unclipped.

    Returns
    -------
    numpy.ndarray
        `values`.
    """
    if hi <= lo:
        values[...] = 0.0
        return values
    values -= np.float32(lo)
    values *= np.float32(1.0 / (hi - lo))
    if clip is not None:
        np.clip(values, clip[0], clip[1], out=values)
    return values


def normalize_percentile(image, low=1.0, high=99.8, clip=CLIP_RANGE):
    """Scale intensities so that the `low` and `high` percentiles map to 0 and 1.

    Images above ``PERCENTILE_SAMPLE_PIXELS`` (4 megapixels) get their percentiles from a regular strided
    subsample of about that many pixels, which keeps the computation fast and light on memory; for natural
    images the result differs from the exact percentiles by a fraction of a percent of the range.

    If the two percentiles are equal (a constant image, or a sparse one whose background covers more than
    ``high`` percent of the pixels), the image maximum is used as the upper point instead; a constant image
    gives zeros. `percentile_range` and `scale_to_range` do the same in two steps, for one tile at a time.

    Parameters
    ----------
    image : array_like
        Any real dtype and shape with at least one element (typically H x W or H x W x C; all channels share
        the percentiles).
    low, high : float
        Percentiles in [0, 100], ``low < high``.
    clip : tuple of float or None
        Range the result is clipped to (default ``CLIP_RANGE``, -0.5 to 1.5); None leaves it unclipped.

    Returns
    -------
    numpy.ndarray
        float32 array of the input's shape.

    Raises
    ------
    ValueError
        If the image is empty, not real-valued, or contains NaN or infinite values, or if the percentiles are
        out of order or out of range.
    """
    lo, hi = percentile_range(image, low, high)
    image = np.asarray(image)
    return scale_to_range(image.astype(np.float32), lo, hi, clip)
