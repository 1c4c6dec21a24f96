"""From a foreground mask to instance labels, as c-ResUnet post-processes its heatmap.

Fill specks of holes, drop objects too small to be cells, split the components whose shape says they hold several
cells, fill the holes each object encloses, and optionally drop objects on the image border.

Splitting follows each component's own shape, so that a wrong diameter cannot cut a cell into pieces:

- a *compact* component (its area at most ``_COMPACT_RATIO`` times that of its inscribed disk) is one cell;
- a *convex* one (no convexity defect deeper than ``_DEFECT_RATIO`` of its inscribed radius) is one cell too,
  unless the probability map draws a deep valley across it (the network's own border between two cells);
- any other component is cut by a watershed of its smoothed distance transform (times the probability), seeded
  by the h-maxima of that surface (peaks separated by a saddle at least ``h`` deep, where ``h`` grows with the
  diameter and with the component's own size) that are also the highest point within a quarter of the diameter.

The whole mask is labelled, flood-filled and distance-transformed once each with OpenCV; everything measured per
component is summed over its pixels alone (`components.ComponentPixels`: cells cover a few per cent of a map);
the components that may need splitting (a few per cent of them) are worked on their bounding boxes, with OpenCV's
h-maxima (`maxima`). No whole-image float64 array and no per-object Python work for the common cell.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np
from skimage.segmentation import watershed

from cellcount_core.objects.components import (ComponentPixels, component_labels, euclidean_distance,
                                               fill_mask_holes, fill_small_holes)
from cellcount_core.objects.diameter import check_mask_inputs, estimate_diameter
from cellcount_core.objects.maxima import h_maxima, peak_positions

__all__ = ["INSIDE", "MaskObjects", "default_min_size", "labels_from_mask", "objects_from_mask",
           "remove_objects_outside_diameter", "split_candidates", "split_pieces"]

#: A component whose area is at most this multiple of its inscribed disk's area is one cell (a disk gives 1, an
#: ellipse of axis ratio 1.4 gives 1.4; two disks overlapping by a fifth of their diameter give 1.6).
_COMPACT_RATIO = 1.4
#: A component is convex (one cell) if no convexity defect is deeper than this fraction of its inscribed radius,
#: or than `_DEFECT_PIXELS` (pixelated outlines). Single synthetic cells measure up to 0.1; two disks of radius r
#: whose centres are 1.2 r apart 0.2, touching ones 1.0.
_DEFECT_RATIO = 0.15
_DEFECT_PIXELS = 1.5
#: Seeds of a non-convex component: distance-transform peaks separated by a saddle deeper than this fraction of
#: the cell diameter or of the component's own highest peak, whichever is larger (chosen on synthetic clumps and
#: the StarDist example's true mask resized x1-x4, at the estimated diameter and at a third of it).
_H_PER_DIAMETER = 0.01
_H_PER_PEAK = 0.03
#: Seeds of a non-convex component are also at least this fraction of the diameter apart (closer peaks are
#: texture of one cell rather than two cells).
_SEED_SPACING = 0.25
#: A convex component is split only where the probability-weighted surface falls by more than this fraction of
#: its peak between two maxima (a valley the network draws across it).
_CONVEX_VALLEY = 0.5
#: Pixels at least this far from a component's outline are its inside (the probability falls on every outline).
INSIDE = 2.0


def _check_positive(name: str, value) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"{name} must be a positive number of pixels, got {value!r}")


def default_min_size(diameter: float) -> int:
    """Smallest object kept by default: the area of a disk of half the cell diameter (a quarter of a cell)."""
    return max(1, int(round(np.pi * diameter**2 / 16.0)))


def _keep(components: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """The components whose entry in `keep` (indexed by label, 0 ignored) is True, renumbered 1..n in order."""
    keep = keep.copy()
    keep[0] = False
    new_ids = np.where(keep, np.cumsum(keep), 0).astype(np.int32)
    return np.take(new_ids, components)


def _smoothed(values: np.ndarray, sigma: float) -> np.ndarray:
    """`scipy.ndimage.gaussian_filter` (reflected borders, truncated at 4 sigma) with OpenCV, in float32."""
    if sigma <= 0:
        return values
    radius = int(4.0 * sigma + 0.5)
    return cv2.GaussianBlur(values, (2 * radius + 1, 2 * radius + 1), sigma, borderType=cv2.BORDER_REFLECT)


def _is_convex(filled: np.ndarray, inscribed_radius: float) -> bool:
    """True if the outline of a filled component (uint8 crop) has no convexity defect deeper than the limit."""
    contours, _ = cv2.findContours(filled, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    outline = max(contours, key=len)
    if len(outline) < 4:
        return True
    hull = np.sort(cv2.convexHull(outline, returnPoints=False), axis=0)  # OpenCV wants monotonous indices
    try:
        defects = cv2.convexityDefects(outline, hull)
    except cv2.error:  # a self-touching outline: judge it by the other tests
        return False
    deepest = 0.0 if defects is None else defects[:, 0, 3].max() / 256.0
    return deepest <= max(_DEFECT_PIXELS, _DEFECT_RATIO * inscribed_radius)


class _Splitter:
    """Splits one component at a time on its bounding box, with the surface's smoothing and seed depths."""

    def __init__(self, components, boxes, probability, diameter, min_size):
        self.components, self.boxes, self.probability, self.min_size = components, boxes, probability, min_size
        self.distance_sigma = diameter / 20.0
        self.pad = int(4.0 * max(self.distance_sigma, 1.0) + 0.5) + 1
        self.h_diameter = _H_PER_DIAMETER * diameter
        self.min_distance = max(1, int(round(diameter * _SEED_SPACING)))

    def crop(self, index):
        """The padded bounding box of a component, within the image, as (rows, columns) slices."""
        top, bottom, left, right = self.boxes[index]
        height, width = self.components.shape
        return (slice(max(top - self.pad, 0), min(bottom + self.pad, height)),
                slice(max(left - self.pad, 0), min(right + self.pad, width)))

    def pieces(self, index, inscribed_radius, dips):
        """The component's cells as a labelled crop (1..k), with the crop's slices; None if it is one cell.

        `dips`: whether the probability falls inside it (a convex component without such a dip is one cell).
        """
        box = self.crop(index)
        member = self.components[box] == index
        filled = fill_mask_holes(member)
        convex = _is_convex(filled, inscribed_radius)
        if convex and not dips:
            return None
        # a convex outline is cut only along the network's valleys; otherwise holes and gaps shape the seeds too
        shape = filled if convex else member.view(np.uint8)
        distance = euclidean_distance(shape)
        surface = _smoothed(distance, self.distance_sigma)
        if self.probability is not None:
            # the network is least sure on the borders between cells: deepen the valleys there
            surface *= _smoothed(np.ascontiguousarray(self.probability[box]), 1.0)
        peak = float(surface[member].max())
        depth = _CONVEX_VALLEY * peak if convex else max(self.h_diameter, _H_PER_PEAK * peak)
        seeds = self.seeds(surface, member, depth)
        if seeds.max() < 2:
            return None
        pieces = _merge_small_pieces(watershed(-surface, seeds, mask=member), self.min_size)
        return None if pieces.max() < 2 else (box, pieces)

    def seeds(self, surface, member, depth):
        """Watershed markers (int32, 0 elsewhere): the surface's h-maxima plateaus of the given depth whose peak
        is also the highest point closer than `min_distance` (in rows and columns), as in
        `skimage.feature.peak_local_max`."""
        count, plateaus = cv2.connectedComponents((h_maxima(surface, depth) & member).view(np.uint8),
                                                  connectivity=8, ltype=cv2.CV_32S)
        if count < 3:
            return plateaus
        peaks = peak_positions(surface, plateaus, count)
        window = np.ones((2 * self.min_distance - 1,) * 2, np.uint8)
        highest = cv2.dilate(surface, window, borderType=cv2.BORDER_CONSTANT, borderValue=0)
        spaced = np.zeros(count, bool)
        spaced[1:] = surface[peaks] >= highest[peaks]
        return np.where(spaced[plateaus], plateaus, 0)


def _merge_small_pieces(pieces: np.ndarray, min_size: int) -> np.ndarray:
    """Merge each piece of a split component smaller than `min_size` pixels (a seed that was no cell, such as a
    bulge of a cell's outline) into the neighbour it shares the longest border with; ids 1..k."""
    while True:
        areas = np.bincount(pieces.ravel())
        areas[0] = 0
        small = np.flatnonzero((areas > 0) & (areas < min_size))
        if len(small) == 0 or (areas > 0).sum() < 2:
            return _sequential(pieces)
        piece = small[np.argmin(areas[small])]
        own = (pieces == piece).view(np.uint8)
        ring = cv2.dilate(own, np.ones((3, 3), np.uint8)).view(bool) & (pieces > 0) & ~own.view(bool)
        pieces[pieces == piece] = np.bincount(pieces[ring]).argmax() if ring.any() else 0


@dataclass
class MaskObjects:
    """The objects of a mask and the connected components they were cut from.

    Attributes
    ----------
    labels : (H, W) int32 array
        Object labels, 0 background; ids may skip numbers (removed specks).
    components : ComponentPixels
        The foreground's 4-connected components (specks removed, enclosed holes not filled); an unsplit object
        keeps its component's id, the pieces of a split one get ids above every component's.
    component_of : 1-D int array
        The component of each object id (0 for 0).
    filled_holes : 1-D int array
        Flat indices of the enclosed holes' pixels given to the object around them.
    """

    labels: np.ndarray
    components: ComponentPixels
    component_of: np.ndarray
    filled_holes: np.ndarray

    def object_pixels(self) -> tuple[np.ndarray, np.ndarray]:
        """Flat indices of every object pixel (not in raster order) and their labels."""
        flat = np.concatenate([self.components.flat, self.filled_holes])
        return flat, self.labels.ravel()[flat]


def objects_from_mask(mask: np.ndarray, probability: np.ndarray | None, diameter: float, *, min_size: int,
                      fill_holes: bool = True, split_touching: bool = True,
                      wanted: Callable[[ComponentPixels], np.ndarray] | None = None) -> MaskObjects:
    """`labels_from_mask` without its checks, border option and renumbering, with the components kept (for
    `large_images`). `mask` is a bool array, `probability` float32 or None; ``wanted(components)``, if given,
    says which components (bool, by label) to split: the others are left whole."""
    holes_left = False
    if fill_holes:
        # specks of holes before splitting; filling the gaps between touching cells would merge them
        mask, holes_left = fill_small_holes(mask, max(1, int(np.pi * diameter**2 / 64.0)))
    components = component_labels(mask)
    pixels = ComponentPixels.of(components)
    areas = np.bincount(pixels.ids, minlength=pixels.count)
    small = areas < min_size
    small[0] = False
    if small.any():
        components.ravel()[pixels.flat[small[pixels.ids]]] = 0
        pixels = ComponentPixels(components, pixels.count, *_without(pixels, small))
        areas[small] = 0
    labels, component_of = components, np.arange(pixels.count)
    if split_touching and len(pixels.flat):
        if wanted is not None:
            areas = np.where(wanted(pixels), areas, 0)
        labels, component_of = _split(pixels, areas, probability, diameter, min_size)
    filled_holes = np.zeros(0, np.int64)
    if holes_left:  # removing specks opens no new hole: they lie in the background or in a hole left
        labels, filled_holes = _fill_enclosed_holes(labels, np.pi * diameter**2 / 4.0)
    return MaskObjects(labels, pixels, component_of, filled_holes)


def _without(pixels: ComponentPixels, dropped: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The flat indices and ids of the pixels whose label is not `dropped` (indexed by label)."""
    kept = ~dropped[pixels.ids]
    return pixels.flat[kept], pixels.ids[kept]


def _split(pixels: ComponentPixels, areas: np.ndarray, probability: np.ndarray | None, diameter: float,
           min_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Split the components that are neither compact nor convex (see the module's notes; those of area 0 are
    left whole): labels, with the pieces numbered after the components, and the component of each label."""
    components = pixels.labels
    # OpenCV's 5 x 5 chamfer distance: enough to tell compact shapes, 7 times faster than the exact one
    distance = pixels.values(cv2.distanceTransform((components > 0).view(np.uint8), cv2.DIST_L2, 5))
    radii = pixels.maxima(distance)
    minima = maxima = None
    if probability is not None:
        inside, values = distance > INSIDE, pixels.values(probability)
        minima, maxima = pixels.minima(values, inside, 1.0), pixels.maxima(values, inside)
    candidates, dips = split_candidates(areas, radii, minima, maxima)
    labels, component_of = components, [np.arange(pixels.count)]
    if len(candidates) == 0:
        return labels, component_of[0]
    chosen = np.zeros(pixels.count, bool)
    chosen[candidates] = True
    boxes, _ = pixels.boxes(chosen[pixels.ids])
    next_id = pixels.count
    for index, box, pieces in split_pieces(components, candidates, boxes, radii, dips, probability, diameter,
                                           min_size):
        if labels is components:
            labels = components.copy()
        extra = pieces > 1  # piece 1 keeps the component's label
        labels[box][extra] = pieces[extra] + (next_id - 2)
        added = int(pieces.max()) - 1
        component_of.append(np.full(added, index))
        next_id += added
    return labels, np.concatenate(component_of)


def split_candidates(areas: np.ndarray, radii: np.ndarray, inside_minima: np.ndarray | None = None,
                     inside_maxima: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The labels of the components that may hold several cells, and whether each label dips, all indexed by label
    (0 and labels of area 0 are never candidates).

    A component is a candidate if its area exceeds `_COMPACT_RATIO` times that of its inscribed disk (radius:
    its largest distance to the background, OpenCV's 5 x 5 chamfer distance, within 2 % of the exact one), or
    if it dips: the network may draw a border across it, its probability falling below `_CONVEX_VALLEY` of its
    maximum somewhere more than `INSIDE` pixels from its outline (`inside_minima` and `inside_maxima`, the
    probability's extremes there; None without a probability map).
    """
    dips = np.zeros(len(areas), bool)
    if inside_minima is not None:
        dips = inside_minima < _CONVEX_VALLEY * inside_maxima
    # float64: a component without background in the image has OpenCV's 'infinite' distance, 1.8e19
    candidates = np.flatnonzero((areas > _COMPACT_RATIO * np.pi * np.square(radii, dtype=float)) | (dips & (areas > 0)))
    return candidates[candidates > 0], dips


def split_pieces(components, candidates, boxes, radii, dips, probability, diameter: float, min_size: int):
    """The cells of each candidate component that holds several: (label, crop slices, pieces labelled 1..k)
    in the order of `candidates`.

    `components` and `probability` (or None) need only ``shape`` and slicing into numpy arrays (a device path
    passes views that copy each crop to the host); `boxes`, `radii` and `dips` are indexed by label.
    """
    splitter = _Splitter(components, boxes, probability, diameter, min_size)
    for index in candidates:
        found = splitter.pieces(index, float(radii[index]), bool(dips[index]))
        if found is not None:
            yield (index, *found)


def _fill_enclosed_holes(labels: np.ndarray, max_area: float) -> tuple[np.ndarray, np.ndarray]:
    """Give each background hole of at most max_area pixels that only one object touches (in its 8 neighbours)
    to that object; the labels and the flat indices of the pixels filled."""
    holes = fill_mask_holes(labels > 0).view(bool) & (labels == 0)
    found = ComponentPixels.of(component_labels(holes))
    small = np.bincount(found.ids, minlength=found.count) <= max_area
    flat, ids = _without(found, ~small)
    # an enclosed hole never reaches the image border, so its pixels' 8 neighbours lie inside the image
    width = labels.shape[1]
    steps = np.array([-width - 1, -width, -width + 1, -1, 1, width - 1, width, width + 1])
    around = labels.ravel()[flat[:, None] + steps]
    owner_low = np.full(found.count, np.iinfo(np.int32).max, np.int64)
    owner_high = np.zeros(found.count, np.int64)
    np.minimum.at(owner_low, np.repeat(ids, 8), np.where(around > 0, around, np.iinfo(np.int32).max).ravel())
    np.maximum.at(owner_high, np.repeat(ids, 8), around.ravel())
    owner = np.where(owner_low == owner_high, owner_high, 0).astype(labels.dtype)
    given = owner[ids] > 0
    filled = labels.copy()
    filled.ravel()[flat[given]] = owner[ids[given]]
    return filled, flat[given]


def _without_border_objects(labels: np.ndarray) -> np.ndarray:
    """`skimage.segmentation.clear_border`: objects touching the image border removed."""
    edges = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    drop = np.zeros(int(labels.max()) + 1, bool)
    drop[edges] = True
    drop[0] = False
    return np.where(drop[labels], 0, labels)


def _sequential(labels: np.ndarray) -> np.ndarray:
    """The labels renumbered 1..n in the order of their old ids, as int32."""
    present = np.bincount(labels.ravel()) > 0
    return _keep(labels, present)


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
        Foreground mask, e.g. from :func:`cellcount_core.objects.thresholds.apply_threshold`.
    probability : (H, W) array, optional
        Probability map within 0..1; when given, the watershed surface is the distance transform times the
        probability, so that uncertain borders between touching cells become split lines (even across a convex
        component, where the surface falls by more than half between two maxima).
    diameter : float, optional
        Typical cell diameter in pixels; estimated by :func:`cellcount_core.objects.diameter.estimate_diameter` when
        None. It sets the largest hole filled, the default ``min_size``, the smoothing of the distance transform
        and, in part, how deep a saddle between two peaks must be to split (a twentieth of it). It never makes a
        compact or convex component split.
    min_size : int, optional
        Objects with fewer pixels are removed. Default: the area of a disk of half the diameter,
        ``round(pi * diameter**2 / 16)``.
    fill_holes : bool
        Fill holes: specks (up to ``pi * diameter**2 / 64`` pixels) before splitting, then every hole no larger
        than one cell (``pi * diameter**2 / 4`` pixels) that a single object encloses. Gaps enclosed by several
        touching cells stay background.
    split_touching : bool
        Split components whose shape shows several cells (neither compact nor convex) by a watershed of their
        distance transform (holes filled, smoothed by a Gaussian of ``diameter / 20`` pixels), seeded by its
        h-maxima.
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
    min_size = default_min_size(diameter) if min_size is None else int(min_size)
    labels = objects_from_mask(mask, probability, diameter, min_size=min_size, fill_holes=fill_holes,
                               split_touching=split_touching).labels
    if exclude_border:
        labels = _without_border_objects(labels)
    return _sequential(labels)


def remove_objects_outside_diameter(labels: np.ndarray, min_diameter: float, max_diameter: float) -> np.ndarray:
    """Drop objects whose equivalent diameter (of a disc of equal area) is outside ``[min, max]``; relabel.

    This is IdentifyPrimaryObjects' "Discard objects outside the diameter range".
    """
    if not 0 <= min_diameter <= max_diameter:
        raise ValueError(f"The diameter range ({min_diameter}, {max_diameter}) must satisfy 0 <= min <= max.")
    areas = np.bincount(labels.ravel())
    diameters = np.sqrt(4.0 * areas / np.pi)
    return _keep(labels, (diameters >= min_diameter) & (diameters <= max_diameter))
