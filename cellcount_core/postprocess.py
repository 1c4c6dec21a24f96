"""From a foreground mask to instance labels, as c-ResUnet post-processes its heatmap.

Fill holes, drop objects too small to be cells, split touching cells by a watershed whose markers are the peaks of
the distance transform spaced by the typical cell diameter, and optionally drop objects on the image border.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.feature import peak_local_max
from skimage.morphology import remove_small_holes, remove_small_objects
from skimage.segmentation import clear_border, relabel_sequential, watershed

__all__ = ["component_diameters", "default_min_size", "diameter_from_components", "estimate_diameter",
           "labels_from_mask", "remove_objects_outside_diameter"]

# A component whose equivalent diameter exceeds its inscribed diameter by more than this factor is a clump of
# touching cells rather than one (possibly elongated) cell.
_CLUMP_RATIO = 1.3
# Fallback ratio of equivalent to inscribed diameter for round-ish cells when no single cell calibrates it.
_DEFAULT_SHAPE_RATIO = 1.1
#: Components narrower than this (equivalent diameter, pixels) are specks, not cells, for the diameter estimate.
SPECK_DIAMETER = 3.0


def _check_inputs(mask, probability) -> tuple[np.ndarray, np.ndarray | None]:
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


def _check_positive(name: str, value) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"{name} must be a positive number of pixels, got {value!r}")


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
    mask, probability = _check_inputs(mask, probability)
    filled = ndi.binary_fill_holes(mask)
    components, n = ndi.label(filled)
    weights = np.ones(mask.shape, np.float32) if probability is None else probability
    return diameter_from_components(*component_diameters(filled, components, np.arange(1, n + 1), weights))


def component_diameters(filled: np.ndarray, components: np.ndarray, index: np.ndarray,
                        weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Equivalent-circle and inscribed diameters of some components of a hole-filled mask.

    Parameters
    ----------
    filled : (H, W) array of bool
        Foreground mask with its holes filled.
    components : (H, W) array of int
        Its connected components (``scipy.ndimage.label``).
    index : array of int
        The component labels to measure.
    weights : (H, W) array
        Pixel weights summed into each area (ones, or the probability map).

    Returns
    -------
    equivalent, inscribed : arrays of float, one value per label of `index`
    """
    areas = np.asarray(ndi.sum_labels(weights, components, index), dtype=float)
    equivalent = np.sqrt(4.0 * areas / np.pi)
    # the distance to the nearest background pixel centre overshoots the radius by about half a pixel
    inscribed = 2.0 * _label_reduce(np.maximum, ndi.distance_transform_edt(filled), components, index) - 1.0
    return equivalent, np.maximum(inscribed, 1.0)


def _label_reduce(reduce, values: np.ndarray, labels: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``np.minimum`` or ``np.maximum`` of `values` over each label of `index` (0 for a label without pixels).

    The results of ``scipy.ndimage.minimum``/``maximum``, without their sort of every pixel: tens of times faster
    and a few bytes per pixel lighter on large images.
    """
    values, index = np.asarray(values), np.asarray(index, dtype=np.intp)
    size = max(int(labels.max(initial=0)), int(index.max(initial=0))) + 1
    limits = np.finfo(values.dtype) if np.issubdtype(values.dtype, np.floating) else np.iinfo(values.dtype)
    result = np.full(size, limits.min if reduce is np.maximum else limits.max, dtype=values.dtype)
    reduce.at(result, labels.ravel(), values.ravel())
    result[np.bincount(labels.ravel(), minlength=size) == 0] = 0
    return result[index]


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


def default_min_size(diameter: float) -> int:
    """Smallest object kept by default: the area of a disk of half the cell diameter (a quarter of a cell)."""
    return max(1, int(round(np.pi * diameter**2 / 16.0)))


def _split(mask: np.ndarray, probability: np.ndarray | None, diameter: float) -> np.ndarray:
    """Watershed split of touching objects with markers spaced by the diameter."""
    components, n = ndi.label(mask)
    if n == 0:
        return components
    distance = ndi.gaussian_filter(ndi.distance_transform_edt(mask), sigma=diameter / 20.0)
    if probability is not None:
        # the network is least sure on the borders between cells: deepen the valleys there
        distance *= ndi.gaussian_filter(probability, sigma=1.0)
    peaks = peak_local_max(distance, min_distance=max(1, int(round(diameter / 4.0))), labels=components,
                           exclude_border=False)
    markers = np.zeros(mask.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    labels = watershed(-distance, markers, mask=mask)
    # a component without a peak (too small or flat) is one object
    orphans = components.copy()
    orphans[labels > 0] = 0
    orphans = relabel_sequential(orphans, offset=len(peaks) + 1)[0]
    return np.where(labels > 0, labels, orphans).astype(np.int32)


def _fill_enclosed_holes(labels: np.ndarray, max_area: float) -> np.ndarray:
    """Give each background hole of at most max_area pixels that one object alone encloses to that object."""
    holes, n = ndi.label(labels == 0)
    if n == 0:
        return labels
    index = np.arange(1, n + 1)
    border = np.unique(np.concatenate([holes[0], holes[-1], holes[:, 0], holes[:, -1]]))
    # the hole each object pixel touches (the largest id among its neighbours), to find the objects around a hole
    touching = np.where(labels > 0, ndi.grey_dilation(holes, size=3), 0)
    low = _label_reduce(np.minimum, labels, touching, index)
    high = _label_reduce(np.maximum, labels, touching, index)
    size = ndi.sum_labels(np.ones_like(holes), holes, index)
    fill = (np.asarray(low) == np.asarray(high)) & (np.asarray(high) > 0) & (size <= max_area)
    fill[border[border > 0] - 1] = False
    owner = np.zeros(n + 1, labels.dtype)
    owner[1:][fill] = np.asarray(high, dtype=labels.dtype)[fill]
    return np.where(labels > 0, labels, owner[holes])


def labels_from_mask(
    mask: np.ndarray,
    probability: np.ndarray | None = None,
    *,
    diameter: float | None = None,
    min_size: int | None = None,
    fill_holes: bool = True,
    split_touching: bool = True,
    exclude_border: bool = False,
) -> np.ndarray:
    """Turn a foreground mask into instance labels.

    Parameters
    ----------
    mask : (H, W) array of bool
        Foreground mask, e.g. from :func:`cellcount_core.thresholds.apply_threshold`.
    probability : (H, W) array, optional
        Probability map within 0..1; when given, the watershed surface is the distance transform times the
        probability, so that uncertain borders between touching cells become split lines.
    diameter : float, optional
        Typical cell diameter in pixels; estimated by :func:`estimate_diameter` when None. It sets the largest
        hole filled, the default ``min_size`` and the spacing of the watershed markers (a quarter of it).
    min_size : int, optional
        Objects with fewer pixels are removed. Default: the area of a disk of half the diameter,
        ``round(pi * diameter**2 / 16)``.
    fill_holes : bool
        Fill holes: specks (up to ``pi * diameter**2 / 64`` pixels) before splitting, then every hole no larger
        than one cell (``pi * diameter**2 / 4`` pixels) that a single object encloses. Gaps enclosed by several
        touching cells stay background.
    split_touching : bool
        Split touching cells by a marker-controlled watershed of the distance transform, smoothed by a
        Gaussian of ``diameter / 20`` pixels.
    exclude_border : bool
        Remove objects that touch the image border.

    Returns
    -------
    (H, W) array of int32
        Labels, 0 for background and 1..n for the objects.
    """
    mask, probability = _check_inputs(mask, probability)
    _check_positive("diameter", diameter)
    _check_positive("min_size", min_size)
    if diameter is None:
        diameter = estimate_diameter(mask, probability)
    if not mask.any() or diameter == 0:
        return np.zeros(mask.shape, np.int32)
    if fill_holes:
        # specks of holes before splitting; filling the gaps between touching cells would merge them
        mask = remove_small_holes(mask, area_threshold=max(1, int(np.pi * diameter**2 / 64.0)))
    mask = remove_small_objects(mask, min_size=default_min_size(diameter) if min_size is None else int(min_size))
    labels = _split(mask, probability, diameter) if split_touching else ndi.label(mask)[0]
    if fill_holes:
        labels = _fill_enclosed_holes(labels, np.pi * diameter**2 / 4.0)
    if exclude_border:
        labels = clear_border(labels)
    return relabel_sequential(labels)[0].astype(np.int32)


def remove_objects_outside_diameter(labels: np.ndarray, min_diameter: float, max_diameter: float) -> np.ndarray:
    """Drop objects whose equivalent diameter (of a disc of equal area) is outside ``[min, max]``; relabel.

    This is IdentifyPrimaryObjects' "Discard objects outside the diameter range".
    """
    if not 0 <= min_diameter <= max_diameter:
        raise ValueError(f"The diameter range ({min_diameter}, {max_diameter}) must satisfy 0 <= min <= max.")
    areas = np.bincount(labels.ravel())
    diameters = np.sqrt(4.0 * areas / np.pi)
    keep = (diameters >= min_diameter) & (diameters <= max_diameter)
    keep[0] = False
    kept = np.where(keep[labels], labels, 0)
    return relabel_sequential(kept)[0].astype(np.int32)
