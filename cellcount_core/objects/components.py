"""Connected components and hole filling of boolean masks with OpenCV (an order faster than scipy's).

Cells cover a few per cent of a probability map, so whatever is measured per component is summed over the
labelled pixels alone (`ComponentPixels`), never over whole-image temporaries.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

__all__ = ["ComponentPixels", "component_labels", "euclidean_distance", "exact_root", "fill_mask_holes",
           "fill_small_holes", "label_components", "pack_boxes"]


def label_components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """4-connected components of a bool mask (as `scipy.ndimage.label`: int32 labels 1..n, 0 background) and their
    OpenCV stats, one row per label 0..n: x, y, width, height, area."""
    _, components, stats, _ = cv2.connectedComponentsWithStats(np.ascontiguousarray(mask).view(np.uint8),
                                                               connectivity=4, ltype=cv2.CV_32S)
    return components, stats


def component_labels(mask: np.ndarray) -> np.ndarray:
    """The labels of `label_components` alone (OpenCV is three times faster without the statistics)."""
    return cv2.connectedComponents(np.ascontiguousarray(mask).view(np.uint8), connectivity=4, ltype=cv2.CV_32S)[1]


def exact_root(distance: np.ndarray) -> np.ndarray:
    """Euclidean distances between pixel centres (square roots of whole numbers) made exact: OpenCV's precise
    distance transform is off by one float32 bit at some pixels, differently from run to run, which changed
    where a watershed put a border pixel. Rounded through float64, float32 in and out."""
    return np.sqrt(np.rint(np.square(distance, dtype=np.float64))).astype(np.float32)


def euclidean_distance(mask: np.ndarray) -> np.ndarray:
    """The exact distance of each pixel of a uint8 0/1 mask to the nearest 0 pixel centre (float32; nothing
    beyond the border counts), as OpenCV's precise distance transform, with `exact_root`."""
    return exact_root(cv2.distanceTransform(mask, cv2.DIST_L2, cv2.DIST_MASK_PRECISE))


def fill_mask_holes(mask: np.ndarray) -> np.ndarray:
    """`scipy.ndimage.binary_fill_holes` (bool in, uint8 0/1 out): background that no 4-connected path joins to the
    border becomes foreground, found by one flood fill from outside the image."""
    outside = np.zeros((mask.shape[0] + 2, mask.shape[1] + 2), np.uint8)
    outside[1:-1, 1:-1] = mask
    cv2.floodFill(outside, None, (0, 0), 2, flags=4)
    return (outside[1:-1, 1:-1] != 2).view(np.uint8)


def fill_small_holes(mask: np.ndarray, max_area: float) -> tuple[np.ndarray, bool]:
    """`skimage.morphology.remove_small_holes`: 4-connected background components of fewer than `max_area` pixels
    become foreground, those touching the image border too.

    Each background component touching the border is flood-filled from one of its border pixels (OpenCV returns
    its area); the enclosed ones are labelled together. No whole-image labelling of the background is made.

    Returns
    -------
    filled : (H, W) bool array
    holes_left : bool
        Whether enclosed background (a hole of at least `max_area` pixels) remains.
    """
    work = np.ascontiguousarray(mask, dtype=bool).view(np.uint8).copy()  # 1 foreground, 0 background
    for row, column in _border_run_starts(work):
        if work[row, column] == 0:  # not flooded from an earlier run of the same component
            area = cv2.floodFill(work, None, (int(column), int(row)), 2, flags=4)[0]
            if area < max_area:
                cv2.floodFill(work, None, (int(column), int(row)), 1, flags=4)
    holes = work == 0
    if not holes.any():
        return work == 1, False
    enclosed = ComponentPixels.of(component_labels(holes))
    small = np.bincount(enclosed.ids, minlength=enclosed.count) < max_area
    work.ravel()[enclosed.flat[small[enclosed.ids]]] = 1
    return work == 1, not small[1:].all()


def pack_boxes(heights, widths, gap: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Places for boxes of the given sizes in one small image, with `gap` blank pixels around every box: shelves
    filled left to right with the boxes in order of decreasing height (next-fit), as wide as a square holding
    their area, or the widest box.

    Returns
    -------
    origins : (n, 2) int array
        Top-left corner (row, column) of each box.
    shape : (int, int)
        The image that holds them all.
    """
    heights = np.asarray(heights, np.int64) + gap
    widths = np.asarray(widths, np.int64) + gap
    width = max(int(np.sqrt(float(np.sum(heights * widths)))), int(widths.max(initial=0)))
    origins = np.zeros((len(heights), 2), np.int64)
    top = left = shelf_height = 0
    for index in np.argsort(-heights, kind="stable").tolist():
        if left + widths[index] > width:
            top, left, shelf_height = top + shelf_height, 0, 0
        origins[index] = top + gap, left + gap
        left += int(widths[index])
        shelf_height = max(shelf_height, int(heights[index]))
    return origins, (top + shelf_height + gap, width + gap)


def _border_run_starts(work: np.ndarray) -> list[tuple[int, int]]:
    """(row, column) of the first pixel of each run of background pixels along the image border."""
    height, width = work.shape
    rows = np.r_[np.zeros(width, int), np.arange(height), np.full(width, height - 1), np.arange(height)]
    columns = np.r_[np.arange(width), np.full(height, width - 1), np.arange(width), np.zeros(height, int)]
    background = work[rows, columns] == 0
    starts = background & ~np.r_[False, background[:-1]]
    return list(zip(rows[starts].tolist(), columns[starts].tolist()))


@dataclass
class ComponentPixels:
    """The labelled pixels of a component image, in raster order: what per-component sums and boxes read.

    Attributes
    ----------
    labels : (H, W) int array
        The component image (0 background).
    count : int
        One more than the largest label.
    flat : 1-D int array
        Flat indices of the labelled pixels, increasing.
    ids : 1-D int array
        Their labels.
    """

    labels: np.ndarray
    count: int
    flat: np.ndarray
    ids: np.ndarray
    _every_box: tuple | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, labels: np.ndarray) -> "ComponentPixels":
        flat = np.flatnonzero(labels > 0)  # three times faster than on the int labels
        ids = labels.ravel()[flat]
        return cls(labels, int(ids.max(initial=0)) + 1, flat, ids)

    def values(self, image: np.ndarray) -> np.ndarray:
        """An image's values at the labelled pixels."""
        return image.ravel()[self.flat]

    def maxima(self, values: np.ndarray, where: np.ndarray | None = None, initial: float = 0.0) -> np.ndarray:
        """The largest of `values` (one per labelled pixel, optionally only `where`) per label 0..count-1."""
        ids = self.ids if where is None else self.ids[where]
        result = np.full(self.count, initial, values.dtype)
        np.maximum.at(result, ids, values if where is None else values[where])
        return result

    def minima(self, values: np.ndarray, where: np.ndarray | None = None, initial: float = 0.0) -> np.ndarray:
        """The smallest of `values` (optionally only `where`) per label 0..count-1."""
        ids = self.ids if where is None else self.ids[where]
        result = np.full(self.count, initial, values.dtype)
        np.minimum.at(result, ids, values if where is None else values[where])
        return result

    def boxes(self, where: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Bounding boxes, (count, 4) rows of (row start, row stop, column start, column stop), and the flat index
        of each label's first pixel in raster order; rows of labels without pixels (or none `where`) are
        (0, 0, 0, 0) and -1. Those of every pixel are kept for the next call."""
        if where is None and self._every_box is not None:
            return self._every_box
        flat, ids = (self.flat, self.ids) if where is None else (self.flat[where], self.ids[where])
        width = self.labels.shape[1]
        first = np.full(self.count, np.iinfo(np.int64).max, np.int64)
        last = np.full(self.count, -1, np.int64)
        np.minimum.at(first, ids, flat)
        np.maximum.at(last, ids, flat)
        columns = flat % width
        left = np.full(self.count, np.iinfo(np.int64).max, np.int64)
        right = np.full(self.count, -1, np.int64)
        np.minimum.at(left, ids, columns)
        np.maximum.at(right, ids, columns)
        present = last >= 0
        boxes = np.zeros((self.count, 4), np.int64)
        boxes[present] = np.stack([first[present] // width, last[present] // width + 1, left[present],
                                   right[present] + 1], axis=1)
        found = boxes, np.where(present, first, -1)
        if where is None:
            self._every_box = found
        return found
