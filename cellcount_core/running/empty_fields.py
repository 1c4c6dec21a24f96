"""Fields without cells that the noise floor misses: sparse photon noise in a dark field.

A dark 8-bit field of scattered single photons has almost no noise by Immerkaer's estimate (most pixels are 0),
so the noise floor of the normalization leaves its bright pixels bright, and the network marks hundreds of
specks. A 3 x 3 median removes such pixels and keeps cells of three pixels and more
(`normalization.median_3x3`): objects under which it stays below `normalization.featureless_level` are noise.
"""

import cv2
import numpy as np
from scipy import ndimage as ndi

from cellcount_core.images.normalization import (featureless_level, is_featureless, median_3x3, noise_sigma,
                                                  percentile_range, to_grayscale)

__all__ = ["feature_level", "is_featureless_field", "without_featureless_objects"]


def feature_level(image, normalization, noise=None):
    """(gray image, `normalization.featureless_level`) for a model's percentile normalization
    ``(low, high, min_range_over_noise)``; None without a noise floor (``min_range_over_noise`` None). `noise`
    is the gray image's `normalization.noise_sigma` where already measured."""
    low, high, min_range_over_noise = normalization
    if min_range_over_noise is None:
        return None
    gray = to_grayscale(image)
    lo, _ = percentile_range(gray, low, high)
    return gray, featureless_level(lo, noise_sigma(gray) if noise is None else noise, min_range_over_noise)


def is_featureless_field(image, normalization, noise=None):
    """Whether nothing in the image rises to the featureless level (`normalization.is_featureless`); False
    without a noise floor. `noise` as in `feature_level`."""
    measured = feature_level(image, normalization, noise)
    return measured is not None and is_featureless(*measured)


def without_featureless_objects(image, probability, normalization, level):
    """The probability map with every object (a component above `level`) erased whose 3 x 3 median of the image
    stays below the featureless level: specks of photon noise, not cells. The map itself without a noise floor."""
    measured = feature_level(image, normalization)
    if measured is None:
        return probability
    gray, featureless = measured
    count, objects = cv2.connectedComponents((probability > level).view(np.uint8))
    if count == 1:
        return probability
    peaks = np.asarray(ndi.maximum(median_3x3(gray), objects, np.arange(count)))
    erased = peaks < featureless
    erased[0] = False
    return np.where(erased[objects], np.float32(0.0), probability)
