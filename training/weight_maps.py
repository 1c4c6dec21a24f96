"""c-ResUnet pixel weight maps (Morelli et al., Sci Rep 2021).

Every object adds a contribution to the background pixels around it that decays with the distance from the
object's border, ``w0 * exp(-d^2 / (2 sigma^2))``; contributions add up, so the narrow gaps between crowded cells,
which are near several borders at once, weigh most. Class weights (1 for cells, 1.5 for background) are the base.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

CELL_WEIGHT = 1.0
BACKGROUND_WEIGHT = 1.5


def weight_map(labels, *, w0: float = 5.0, sigma: float = 3.0, cell_weight: float = CELL_WEIGHT,
               background_weight: float = BACKGROUND_WEIGHT) -> np.ndarray:
    """Return the pixel weights of an instance-label image.

    Parameters
    ----------
    labels : array_like of int
        H x W instance labels, 0 background.
    w0 : float
        Weight added at the border of one object (a background pixel touching it).
    sigma : float
        Decay length of an object's contribution, in pixels (contributions beyond 4 sigma are dropped).
    cell_weight, background_weight : float
        Class weights of object and background pixels.

    Returns
    -------
    numpy.ndarray
        float32 H x W weights: ``cell_weight`` inside objects, ``background_weight`` plus the summed border
        contributions outside.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 2D integer label image, got shape {labels.shape} dtype {labels.dtype}.")
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}.")
    background = labels == 0
    weights = np.where(background, np.float32(background_weight), np.float32(cell_weight)).astype(np.float32)
    margin = int(math.ceil(4 * sigma))
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        grown = tuple(slice(max(s.start - margin, 0), min(s.stop + margin, n)) for s, n in zip(box, labels.shape))
        outside = labels[grown] != index
        distance = ndimage.distance_transform_edt(outside)
        contribution = w0 * np.exp(-(distance**2) / (2.0 * sigma**2))
        weights[grown] += np.where(background[grown], contribution, 0.0).astype(np.float32)
    return weights
