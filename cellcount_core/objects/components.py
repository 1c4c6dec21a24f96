"""Connected components and hole filling of boolean masks with OpenCV (an order faster than scipy's)."""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["component_labels", "fill_mask_holes", "label_components"]


def label_components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """4-connected components of a bool mask (as `scipy.ndimage.label`: int32 labels 1..n, 0 background) and their
    OpenCV stats, one row per label 0..n: x, y, width, height, area."""
    _, components, stats, _ = cv2.connectedComponentsWithStats(np.ascontiguousarray(mask).view(np.uint8),
                                                               connectivity=4, ltype=cv2.CV_32S)
    return components, stats


def component_labels(mask: np.ndarray) -> np.ndarray:
    """The labels of `label_components` alone (OpenCV is three times faster without the statistics)."""
    return cv2.connectedComponents(np.ascontiguousarray(mask).view(np.uint8), connectivity=4, ltype=cv2.CV_32S)[1]


def fill_mask_holes(mask: np.ndarray) -> np.ndarray:
    """`scipy.ndimage.binary_fill_holes` (bool in, uint8 0/1 out): background that no 4-connected path joins to the
    border becomes foreground, found by one flood fill from outside the image."""
    outside = np.zeros((mask.shape[0] + 2, mask.shape[1] + 2), np.uint8)
    outside[1:-1, 1:-1] = mask
    cv2.floodFill(outside, None, (0, 0), 2, flags=4)
    return (outside[1:-1, 1:-1] != 2).view(np.uint8)
