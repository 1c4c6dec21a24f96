"""The typical cell diameter in a foreground mask, robust to clumps, elongated cells and specks."""

from __future__ import annotations

import cv2
import numpy as np

from cellcount_core.objects.components import component_labels, fill_mask_holes

__all__ = ["SPECK_DIAMETER", "check_mask_inputs", "component_diameters", "diameter_from_components",
           "estimate_diameter"]

# A component whose equivalent diameter exceeds its inscribed diameter by more than this factor is a clump of
# touching cells rather than one (possibly elongated) cell.
_CLUMP_RATIO = 1.3
# Fallback ratio of equivalent to inscribed diameter for round-ish cells when no single cell calibrates it.
_DEFAULT_SHAPE_RATIO = 1.1
#: Components narrower than this (equivalent diameter, pixels) are specks, not cells, for the diameter estimate.
SPECK_DIAMETER = 3.0


def check_mask_inputs(mask, probability) -> tuple[np.ndarray, np.ndarray | None]:
    """`mask` as bool and `probability` as float32 (or None), after checking their shapes and values."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be a 2-D (H x W) array, got shape {mask.shape}")
    mask = mask.astype(bool)
    if probability is None:
        return mask, None
    probability = np.asarray(probability, dtype=np.float32)
    if probability.shape != mask.shape:
        raise ValueError(f"probability shape {probability.shape} does not match mask shape {mask.shape}; "
                         "pass the probability map the mask was thresholded from")
    if probability.size and not (np.all(np.isfinite(probability)) and probability.min() >= 0.0
                                 and probability.max() <= 1.0):
        raise ValueError("probability must hold finite values within 0..1")
    return mask, probability


def estimate_diameter(mask: np.ndarray, probability: np.ndarray | None = None) -> float:
    """Estimate the typical cell diameter in a foreground mask.

    Each connected component (holes filled) gives one estimate. A component whose area is close to that of its
    inscribed disk is a single cell and gives its equivalent-circle diameter ``sqrt(4 area / pi)``; a larger
    one is a clump of touching cells and gives its inscribed diameter (twice the maximum of the distance
    transform, i.e. the size of its largest member) times the median equivalent/inscribed ratio of the single
    cells, which corrects for elongated shapes. The result is the median over the components, after dropping
    specks narrower than :data:`SPECK_DIAMETER` (a low threshold can leave more one-pixel specks than cells, and
    the median would collapse to their size) and then those smaller than half the first median.

    Parameters
    ----------
    mask : (H, W) array of bool
        Foreground mask.
    probability : (H, W) array, optional
        Probability map the mask came from; when given, areas are measured as the sum of the probabilities over
        each component, which depends less on the threshold level.

    Returns
    -------
    float
        Diameter in pixels; 0.0 when the mask is empty.
    """
    mask, probability = check_mask_inputs(mask, probability)
    filled = fill_mask_holes(mask)
    components = component_labels(filled)
    weights = np.ones(mask.shape, np.float32) if probability is None else probability
    equivalent, inscribed = component_diameters(filled, components, weights)
    return diameter_from_components(equivalent[1:], inscribed[1:])


def component_diameters(filled: np.ndarray, components: np.ndarray,
                        weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Equivalent-circle and inscribed diameters of every component of a hole-filled mask.

    Parameters
    ----------
    filled : (H, W) array of bool or uint8
        Foreground mask with its holes filled.
    components : (H, W) array of int32
        Its connected components, 1..n (:func:`cellcount_core.objects.components.component_labels`).
    weights : (H, W) array
        Pixel weights summed into each area (ones, or the probability map).

    Returns
    -------
    equivalent, inscribed : arrays of float, indexed by label 0..n (index 0 unused)
    """
    n = int(components.max(initial=0))
    areas = np.bincount(components.ravel(), weights=np.asarray(weights).ravel(), minlength=n + 1)
    distance = cv2.distanceTransform(np.ascontiguousarray(filled).view(np.uint8), cv2.DIST_L2,
                                     cv2.DIST_MASK_PRECISE)
    deepest = np.zeros(n + 1, np.float32)
    np.maximum.at(deepest, components.ravel(), distance.ravel())
    # the distance to the nearest background pixel centre overshoots the radius by about half a pixel
    return np.sqrt(4.0 * areas / np.pi), np.maximum(2.0 * deepest.astype(float) - 1.0, 1.0)


def diameter_from_components(equivalent: np.ndarray, inscribed: np.ndarray) -> float:
    """The typical cell diameter (see :func:`estimate_diameter`) from each component's two diameters; 0.0 if none."""
    if len(equivalent) == 0:
        return 0.0
    single = equivalent <= _CLUMP_RATIO * inscribed
    ratio = float(np.median(equivalent[single] / inscribed[single])) if single.any() else _DEFAULT_SHAPE_RATIO
    estimates = np.where(single, equivalent, inscribed * ratio)
    if (equivalent >= SPECK_DIAMETER).any():
        estimates = estimates[equivalent >= SPECK_DIAMETER]
    estimates = estimates[estimates >= 0.5 * np.median(estimates)]
    return float(np.median(estimates))
