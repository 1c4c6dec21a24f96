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

from .diameter import check_mask_inputs, estimate_diameter, label_reduce

__all__ = ["default_min_size", "labels_from_mask", "remove_objects_outside_diameter"]



def _check_positive(name: str, value) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"{name} must be a positive number of pixels, got {value!r}")


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
    low = label_reduce(np.minimum, labels, touching, index)
    high = label_reduce(np.maximum, labels, touching, index)
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
        Typical cell diameter in pixels; estimated by :func:`cellcount_core.diameter.estimate_diameter` when None. It sets the largest
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
    mask, probability = check_mask_inputs(mask, probability)
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
