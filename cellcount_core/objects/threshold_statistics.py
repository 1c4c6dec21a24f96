"""How well a threshold separates an image: IdentifyPrimaryObjects' weighted variance and sum of entropies.

The values of ``centrosome.threshold.weighted_variance`` and ``sum_of_entropies`` (what CellProfiler writes as
Threshold_WeightedVariance and Threshold_SumOfEntropies), computed a few rows at a time: centrosome's versions
copy, log-transform and perturb the whole image, about 30 bytes per pixel (3 GB for a 10000 x 10000 image).
Sums are accumulated in float64, so values agree with centrosome's to float precision.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["sum_of_entropies", "weighted_variance"]

_CHUNK_ROWS = 256
#: centrosome perturbs intensities by noise this many bits below them, from a generator seeded with 0.
_NOISE_BITS = 8
_NOISE_SEED = 0


def _row_chunks(image, foreground, mask):
    """Yield (values, foreground, valid) for successive row chunks; `valid` is the mask (all True if None)."""
    for start in range(0, image.shape[0], _CHUNK_ROWS):
        rows = slice(start, start + _CHUNK_ROWS)
        values = image[rows]
        valid = np.ones(values.shape, bool) if mask is None else np.asarray(mask[rows], bool)
        yield values, np.asarray(foreground[rows]) != 0, valid


def _masked_max(image, foreground, mask, drop_nan=False):
    """The largest valid value (NaN pixels invalid when `drop_nan`) and the number of valid pixels."""
    top, count = -np.inf, 0
    for values, _, valid in _row_chunks(image, foreground, mask):
        if drop_nan:
            valid = valid & ~np.isnan(values)
        if valid.any():
            top = max(top, float(values[valid].max()))
        count += int(np.count_nonzero(valid))
    return top, count


def weighted_variance(image, foreground, mask=None):
    """Pixel-weighted mean of the variances of the log2 intensities of the foreground and the background.

    Parameters
    ----------
    image : (H, W) float array
        The thresholded image.
    foreground : (H, W) array
        Non-zero in the foreground (a mask or a label image).
    mask : (H, W) bool array, optional
        Pixels to consider (all when None).

    Returns
    -------
    float
        ``centrosome.threshold.weighted_variance(image, mask, foreground != 0)``.
    """
    image = np.asarray(image)
    top, count = _masked_max(image, foreground, mask)
    if count == 0 or top / 256 == 0:
        return 0.0
    low = image.dtype.type(top / 256) if np.issubdtype(image.dtype, np.floating) else top / 256

    def logs():
        for values, fg, valid in _row_chunks(image, foreground, mask):
            yield [np.log2(np.maximum(values[part & valid], low)) for part in (fg, ~fg)]

    n, sums = np.zeros(2), np.zeros(2)
    for chunk in logs():
        n += [len(c) for c in chunk]
        sums += [c.sum(dtype=np.float64) for c in chunk]
    means = np.divide(sums, n, out=np.zeros(2), where=n > 0)
    squares = np.zeros(2)
    for chunk in logs():
        squares += [((c - mean) ** 2).sum(dtype=np.float64) for c, mean in zip(chunk, means)]
    variances = np.divide(squares, n, out=np.zeros(2), where=n > 0)
    return float((variances * n).sum() / n.sum())


def _perturbed(values, noise):
    """centrosome's ``smooth_with_noise`` of a chunk, given the chunk's share of the normal noise."""
    delta = 2.0**-_NOISE_BITS
    clipped = np.clip(values, delta, 1)
    result = np.exp2(np.log2(clipped + delta) * noise + (1 - noise) * np.log2(clipped))
    result[result > 1] = 1
    result[result < 0] = 0
    return result


def _perturbed_chunks(image, foreground, mask, low):
    """Yield (perturbed values, foreground, valid) chunk by chunk, with the noise stream centrosome draws."""
    noise = np.random.RandomState(_NOISE_SEED)
    for values, fg, valid in _row_chunks(image, foreground, mask):
        clamped = np.where(values < low, values.dtype.type(low), values)
        yield _perturbed(clamped, noise.normal(size=values.shape)), fg, valid & ~np.isnan(values)


def sum_of_entropies(image, foreground, mask=None):
    """Sum of the entropies of the foreground's and the background's histograms of log2 intensities.

    Intensities are clamped 8 bits below the maximum and perturbed by noise 8 bits below them, as
    centrosome does (same noise, from a generator seeded with 0).

    Parameters
    ----------
    image, foreground, mask
        As in `weighted_variance`; NaN pixels are left out.

    Returns
    -------
    float
        ``centrosome.threshold.sum_of_entropies(image, mask, foreground != 0)``.
    """
    image = np.asarray(image)
    top, count = _masked_max(image, foreground, mask, drop_nan=True)
    if count == 0 or top / 256 == 0:
        return 0.0
    low = top / 256
    smallest, largest = np.inf, -np.inf
    for values, _, _ in _perturbed_chunks(image, foreground, mask, low):
        smallest, largest = min(smallest, values.min()), max(largest, values.max())
    lower, upper = np.log2(smallest), np.log2(largest)
    if upper == lower:
        return math.log(count, 2)
    histograms = np.zeros((2, 256), np.int64)
    for values, fg, valid in _perturbed_chunks(image, foreground, mask, low):
        for histogram, part in zip(histograms, (fg, ~fg)):
            histogram += np.histogram(np.log2(values[part & valid]), 256, range=(lower, upper))[0]
    if not (histograms.sum(axis=1) > 0).all():
        return 0.0
    total = 0.0
    for histogram in histograms:
        p = histogram[histogram > 0] / histogram.sum()
        total += float(np.sum(p * np.log2(p)))
    return total
