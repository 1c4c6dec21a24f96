"""Agreement between two counting methods on the same images (Bland and Altman, Lancet 1986)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LIMITS_Z = 1.96  # limits of agreement: mean difference +- 1.96 standard deviations (95 % of differences)


@dataclass
class Agreement:
    """How far method B's counts are from method A's (B - A) over the images both counted.

    Attributes
    ----------
    n : int
        Images with both counts.
    mean_difference : float
        Mean of B - A (the bias).
    sd_difference : float
        Sample standard deviation of B - A (0 for one image).
    mae : float
        Mean absolute difference.
    lower_limit, upper_limit : float
        Limits of agreement, mean difference -+ 1.96 standard deviations.
    correlation : float
        Pearson correlation of the counts (NaN when either is constant).
    """

    n: int
    mean_difference: float
    sd_difference: float
    mae: float
    lower_limit: float
    upper_limit: float
    correlation: float


def paired(a, b):
    """The two count sequences as float arrays, keeping only images where both are numbers."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"need one count per image from each method, got {a.size} and {b.size}")
    both = np.isfinite(a) & np.isfinite(b)
    return a[both], b[both]


def agreement(a, b):
    """Agreement of counts ``b`` with counts ``a`` (per image, NaN for missing); see :class:`Agreement`."""
    a, b = paired(a, b)
    if a.size == 0:
        raise ValueError("no image has counts from both methods")
    difference = b - a
    mean, sd = float(difference.mean()), float(difference.std(ddof=1)) if a.size > 1 else 0.0
    constant = np.ptp(a) == 0 or np.ptp(b) == 0
    correlation = float("nan") if constant else float(np.corrcoef(a, b)[0, 1])
    return Agreement(int(a.size), mean, sd, float(np.abs(difference).mean()), mean - LIMITS_Z * sd,
                     mean + LIMITS_Z * sd, correlation)
