"""Detection and counting metrics, as c-ResUnet evaluates them.

A true cell is detected when a predicted cell's centroid lies within ``radius`` (typically the cell diameter) of
its centroid; true and predicted cells are matched one to one by an optimal assignment on centroid distances.
Counts are compared by mean and median absolute error and (absolute) mean percentage error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

__all__ = ["DetectionScores", "centroids", "match_detections", "count_errors"]


@dataclass
class DetectionScores:
    """Result of :func:`match_detections`.

    ``precision = tp / (tp + fp)``, ``recall = tp / (tp + fn)``, ``f1`` their harmonic mean and
    ``accuracy = tp / (tp + fp + fn)``. A ratio whose denominator is 0 is 0.0, except when there are neither
    true nor predicted objects: then every score is 1.0 (nothing to find and nothing found is a perfect result).
    ``pairs`` holds the matched (true index, predicted index) rows, in true index order.
    """

    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    accuracy: float
    pairs: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), int), repr=False, compare=False)


def centroids(labels: np.ndarray) -> np.ndarray:
    """Centroids of the objects in a label image.

    Parameters
    ----------
    labels : (H, W) array of int
        0 for background; label ids need not be consecutive.

    Returns
    -------
    (n, 2) array of float
        (row, column) centroid of each label present, in increasing label order.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 2-D integer label image, got {labels.dtype} array of shape {labels.shape}")
    if labels.size and labels.min() < 0:
        raise ValueError("labels must be non-negative (0 background, positive object ids)")
    flat = labels.ravel()
    sizes = np.bincount(flat)
    present = np.flatnonzero(sizes)
    present = present[present != 0]
    rows, cols = np.divmod(np.arange(flat.size), labels.shape[1])
    sum_rows = np.bincount(flat, weights=rows)
    sum_cols = np.bincount(flat, weights=cols)
    return np.stack([sum_rows[present], sum_cols[present]], axis=1) / sizes[present, None]


def _as_points(objects, name: str) -> np.ndarray:
    objects = np.asarray(objects)
    if objects.ndim == 2 and objects.shape[1] == 2:
        return objects.astype(float)
    if objects.ndim == 2 and np.issubdtype(objects.dtype, np.integer):
        return centroids(objects)
    raise ValueError(f"{name} must be a 2-D integer label image or an n x 2 array of (row, column) centroids, "
                     f"got {objects.dtype} array of shape {objects.shape}")


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


def match_detections(true, predicted, radius: float) -> DetectionScores:
    """Match predicted objects to true objects one to one by centroid distance.

    Parameters
    ----------
    true, predicted : array
        Each a 2-D integer label image or an (n, 2) array of (row, column) centroids (an array with two columns
        is always read as centroids).
    radius : float
        Largest centroid distance, in pixels, of a match (c-ResUnet uses the cell diameter).

    Returns
    -------
    DetectionScores
        The assignment maximises the number of matches, then minimises their total distance; pairs farther
        apart than ``radius`` are never matched.
    """
    if not radius > 0:
        raise ValueError(f"radius must be a positive distance in pixels, got {radius!r}")
    true_points, predicted_points = _as_points(true, "true"), _as_points(predicted, "predicted")
    n_true, n_predicted = len(true_points), len(predicted_points)
    if n_true == 0 and n_predicted == 0:
        return DetectionScores(0, 0, 0, 1.0, 1.0, 1.0, 1.0)
    pairs = np.zeros((0, 2), int)
    if n_true and n_predicted:
        distance = cdist(true_points, predicted_points)
        # a forbidden pair costs more than any set of allowed matches, so the match count is maximised first
        forbidden = radius * (min(n_true, n_predicted) + 1) + 1.0
        rows, cols = linear_sum_assignment(np.where(distance <= radius, distance, forbidden))
        keep = distance[rows, cols] <= radius
        pairs = np.stack([rows[keep], cols[keep]], axis=1)
    tp = len(pairs)
    fp, fn = n_predicted - tp, n_true - tp
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return DetectionScores(tp, fp, fn, precision, recall, f1, _ratio(tp, tp + fp + fn), pairs)


def count_errors(true_counts, predicted_counts) -> dict[str, float]:
    """Errors of predicted cell counts.

    Parameters
    ----------
    true_counts, predicted_counts : sequence of float
        Counts per image, same length, at least one image.

    Returns
    -------
    dict
        ``mae`` mean absolute error, ``medae`` median absolute error, ``mpe`` signed mean percentage error
        (positive when counts are over-estimated) and ``mape`` mean absolute percentage error, both in percent.
    """
    true_counts = np.asarray(true_counts, dtype=float).ravel()
    predicted_counts = np.asarray(predicted_counts, dtype=float).ravel()
    if true_counts.shape != predicted_counts.shape or true_counts.size == 0:
        raise ValueError(f"need as many predicted counts as true counts (at least one), got {true_counts.size} "
                         f"true and {predicted_counts.size} predicted")
    zero = np.flatnonzero(true_counts == 0)
    if zero.size:
        raise ValueError(f"true count at index {zero[0]} is 0: percentage errors are undefined; "
                         "leave out images without cells or report only absolute errors")
    error = predicted_counts - true_counts
    percent = 100.0 * error / true_counts
    return {
        "mae": float(np.mean(np.abs(error))),
        "medae": float(np.median(np.abs(error))),
        "mpe": float(np.mean(percent)),
        "mape": float(np.mean(np.abs(percent))),
    }
