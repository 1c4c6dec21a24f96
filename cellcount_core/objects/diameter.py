"""The typical cell diameter in a foreground mask, robust to clumps, elongated cells and specks."""

from __future__ import annotations

import cv2
import numpy as np

from cellcount_core.objects.components import (ComponentPixels, component_labels, euclidean_distance, exact_root,
                                               fill_mask_holes, pack_boxes)

__all__ = ["SPECK_DIAMETER", "check_mask_inputs", "component_diameters", "diameter_from_components",
           "estimate_diameter", "inscribed_radii", "measured_diameters"]

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
    components = ComponentPixels.of(component_labels(fill_mask_holes(mask)))
    equivalent, inscribed = component_diameters(components, probability)
    return diameter_from_components(equivalent[1:], inscribed[1:])


def component_diameters(pixels: ComponentPixels, weights: np.ndarray | None,
                        chosen: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Equivalent-circle and inscribed diameters of every component of a hole-filled mask.

    Parameters
    ----------
    pixels : ComponentPixels
        The connected components of a hole-filled mask, 1..n
        (:func:`cellcount_core.objects.components.component_labels`).
    weights : (H, W) array or None
        Pixel weights summed into each area (the probability map), or None to count pixels.
    chosen : array of bool, optional
        The labels to measure (default all); the inscribed diameter of the others is left at 1.

    Returns
    -------
    equivalent, inscribed : arrays of float, indexed by label 0..n (index 0 unused)
    """
    summed = None if weights is None else pixels.values(np.asarray(weights)).astype(float)
    areas = np.bincount(pixels.ids, weights=summed, minlength=pixels.count)
    return measured_diameters(areas, inscribed_radii(pixels, chosen))


def measured_diameters(areas: np.ndarray, deepest: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Equivalent-circle and inscribed diameters from components' areas and largest distances to the background."""
    # the distance to the nearest background pixel centre overshoots the radius by about half a pixel
    return np.sqrt(4.0 * areas / np.pi), np.maximum(2.0 * deepest.astype(float) - 1.0, 1.0)


def inscribed_radii(pixels: ComponentPixels, chosen: np.ndarray | None = None) -> np.ndarray:
    """The largest exact Euclidean distance from a pixel of each component (each `chosen` one, bool by label) to
    the nearest pixel outside it, indexed by label (0.0 for the others): OpenCV's precise distance transform of
    the whole mask, computed on the components' boxes alone.

    A pixel's nearest pixel outside its 4-connected component is background and lies within the component's box
    grown by one pixel, so each box is copied with a blank margin into shelves of one small image (cells cover a
    few per cent of a map). Components touching the image border, beyond which OpenCV looks for nothing, keep
    their own crop.
    """
    labels = pixels.labels
    height, width = labels.shape
    boxes, _ = pixels.boxes()
    present = (boxes[:, 1] > boxes[:, 0]) & (True if chosen is None else chosen)
    on_border = present & ((boxes[:, 0] == 0) | (boxes[:, 1] == height) | (boxes[:, 2] == 0) | (boxes[:, 3] == width))
    radii = np.zeros(pixels.count, np.float32)
    for label in np.flatnonzero(on_border):
        top, bottom, left, right = boxes[label]
        crop = labels[max(top - 1, 0):bottom + 1, max(left - 1, 0):right + 1] == label
        radii[label] = euclidean_distance(crop.view(np.uint8)).max()
    inner = present & ~on_border
    if not inner.any():
        return radii
    packed_labels = np.flatnonzero(inner)
    top, left = boxes[packed_labels, 0], boxes[packed_labels, 2]
    origins, shape = pack_boxes(boxes[packed_labels, 1] - top, boxes[packed_labels, 3] - left, gap=1)
    # a pixel's flat index in the shelves: its own, moved by its row and by its box's shift
    shift = np.zeros(pixels.count, np.int64)
    shift[packed_labels] = (origins[:, 0] - top) * shape[1] + origins[:, 1] - left
    packed = inner[pixels.ids]
    flat, ids = pixels.flat[packed], pixels.ids[packed]
    flat = flat + (flat // width) * (shape[1] - width) + shift[ids]
    shelves = np.zeros(shape, np.uint8)
    shelves.ravel()[flat] = 1
    distance = cv2.distanceTransform(shelves, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    np.maximum.at(radii, ids, distance.ravel()[flat])
    return exact_root(radii)


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
