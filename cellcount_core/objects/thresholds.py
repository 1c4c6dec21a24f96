"""Thresholds that turn a probability map into a foreground mask.

The methods are those of DeepCellCount (simple 0.5, adaptive Gaussian, Otsu) plus the model's own default
(chosen on validation data by the Kneedle method, c-ResUnet) and a manual value.
"""

from __future__ import annotations

import cv2
import numpy as np
from skimage.filters import threshold_otsu

__all__ = ["PROBABILITY_VALUES", "THRESHOLD_METHODS", "apply_threshold", "fixed_threshold"]

THRESHOLD_METHODS = ("model default", "simple", "manual", "otsu", "adaptive")
#: What is said of a map with values outside 0..1.
PROBABILITY_VALUES = ("probability must hold finite values within 0..1; pass the network's sigmoid output, not "
                      "logits or raw image intensities")


def _check_probability(probability) -> np.ndarray:
    probability = np.asarray(probability, dtype=np.float32)
    if probability.ndim != 2:
        raise ValueError(f"probability must be a 2-D (H x W) map, got shape {probability.shape}")
    if probability.size and not (np.all(np.isfinite(probability)) and probability.min() >= 0.0
                                 and probability.max() <= 1.0):
        raise ValueError(PROBABILITY_VALUES)
    return probability


def _adaptive(probability: np.ndarray, block_size: int, offset: float) -> tuple[np.ndarray, float]:
    """Adaptive Gaussian threshold of the probability scaled to uint8, as DeepCellCount does."""
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size < 3 \
            or block_size % 2 == 0:
        raise ValueError(f"block_size must be an odd integer >= 3 (pixels), got {block_size!r}")
    scaled = np.rint(probability * 255.0).astype(np.uint8)
    constant = offset * 255.0
    binary = cv2.adaptiveThreshold(scaled, 255, cv2.ADAPTIVE_THRESH_GAUSSIAN_C, cv2.THRESH_BINARY,
                                   int(block_size), constant)
    # the same Gaussian-weighted local mean OpenCV thresholds against, to report the mean local threshold
    local_mean = cv2.GaussianBlur(scaled.astype(np.float32), (int(block_size), int(block_size)), 0,
                                  borderType=cv2.BORDER_REPLICATE | cv2.BORDER_ISOLATED)
    return binary > 0, float((local_mean.mean() - constant) / 255.0)


def fixed_threshold(method: str, value: float | None = None) -> float | None:
    """The threshold of a method that does not look at the map (``"model default"``, ``"simple"``,
    ``"manual"``; see `apply_threshold`), None for ``"otsu"`` and ``"adaptive"``."""
    if method not in THRESHOLD_METHODS:
        raise ValueError(f"unknown threshold method {method!r}; choose one of {', '.join(THRESHOLD_METHODS)}")
    if method in ("model default", "manual"):
        if value is None:
            raise ValueError(f"threshold method {method!r} needs a threshold value within 0..1")
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"threshold value must be within 0..1 for method {method!r}, got {value}")
        return float(value)
    return 0.5 if method == "simple" else None


def apply_threshold(
    probability: np.ndarray,
    method: str,
    *,
    value: float | None = None,
    block_size: int = 51,
    offset: float = 0.0,
) -> tuple[np.ndarray, float]:
    """Threshold a probability map.

    Parameters
    ----------
    probability : (H, W) array
        Foreground probability, values within 0..1.
    method : str
        One of :data:`THRESHOLD_METHODS`:

        - ``"model default"``: ``value``, the threshold stored in the model card;
        - ``"simple"``: 0.5;
        - ``"manual"``: ``value``, chosen by the user;
        - ``"otsu"``: Otsu's threshold of the probability values;
        - ``"adaptive"``: a pixel is foreground when its probability exceeds the Gaussian-weighted mean of its
          ``block_size`` x ``block_size`` neighbourhood minus ``offset`` (OpenCV ``ADAPTIVE_THRESH_GAUSSIAN_C`` on
          the probability scaled to 0..255).
    value : float, optional
        Threshold within 0..1 for ``"model default"`` and ``"manual"``; required for them, ignored otherwise.
    block_size : int
        Odd neighbourhood size in pixels (>= 3) for ``"adaptive"``.
    offset : float
        Constant subtracted from the local mean for ``"adaptive"``, in probability units.

    Returns
    -------
    mask : (H, W) bool array
        True where ``probability > threshold`` (the local threshold for ``"adaptive"``).
    threshold : float
        The threshold used; for ``"adaptive"`` the mean of the local thresholds.
    """
    probability = _check_probability(probability)
    if method == "adaptive":
        return _adaptive(probability, block_size, offset)
    threshold = fixed_threshold(method, value)
    if threshold is None:
        threshold = float(threshold_otsu(probability)) if probability.size else 0.5
    return probability > threshold, threshold
