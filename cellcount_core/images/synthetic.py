"""Synthetic fluorescent cell images with known labels and counts.

The generator follows the spirit of SIMCEP (Lehmussola et al., IEEE TMI 2007), the simulator behind BBBC005:
cells are ellipses with a random orientation whose outline is perturbed by a smooth radial Fourier series, filled
with a textured, centre-bright intensity, placed at random, in clusters or touching a neighbour, on an uneven
background, then blurred and corrupted by Poisson-Gaussian noise.

Every cell is drawn inside its own bounding box, so large images with thousands of cells stay fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import cv2
import numpy as np
from scipy import ndimage as ndi

__all__ = ["SyntheticCells", "ideal_probability", "synthetic_cells", "synthetic_dataset"]

_DTYPES = {"uint8": 255.0, "uint16": 65535.0, "float32": 1.0}
# A touching cell must keep at least this fraction of its own area visible (the rest is hidden under its
# neighbour), so that every label is a clearly visible object and the true count equals the number of labels.
_MIN_VISIBLE = 0.7
_ATTEMPTS = 25


@dataclass
class SyntheticCells:
    """A synthetic image with its ground truth.

    Attributes
    ----------
    image : ndarray
        H x W image of the requested dtype.
    labels : ndarray of int32
        H x W instance labels, 0 background, 1..count.
    count : int
        Number of cells present (``labels.max()``).
    centroids : ndarray of float
        count x 2 (row, column) centroids of the labels, in label order.
    diameter : float
        Mean equivalent-circle diameter of the drawn cells, in pixels.
    """

    image: np.ndarray
    labels: np.ndarray
    count: int
    centroids: np.ndarray
    diameter: float


def _cell_shape(rng: np.random.Generator, diameter: float, irregularity: float) -> np.ndarray:
    """Return the relative radius (0 centre, 1 outline, >1 outside) of one cell on its own square grid."""
    radius = diameter / 2.0
    aspect = 1.0 + irregularity * rng.uniform(0.0, 0.8)
    a, b = radius * np.sqrt(aspect), radius / np.sqrt(aspect)  # area-preserving ellipse semi-axes
    orientation = rng.uniform(0.0, np.pi)
    harmonics = np.arange(2, 7)
    amplitudes = irregularity * 0.12 * rng.uniform(0.0, 1.0, harmonics.size) / harmonics * 2.0
    phases = rng.uniform(0.0, 2.0 * np.pi, harmonics.size)
    half = int(np.ceil(a * (1.0 + amplitudes.sum()))) + 1
    dy, dx = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float32)
    angle = np.arctan2(dy, dx)
    rel = angle - orientation
    outline = a * b / np.sqrt((b * np.cos(rel)) ** 2 + (a * np.sin(rel)) ** 2)
    outline *= 1.0 + (amplitudes[:, None, None] * np.cos(harmonics[:, None, None] * angle + phases[:, None, None])).sum(0)
    return np.hypot(dy, dx) / outline


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], grid: int) -> np.ndarray:
    """Return a smooth random field in [0, 1] made by cubic upsampling of a coarse random grid."""
    coarse = rng.uniform(0.0, 1.0, (grid, grid)).astype(np.float32)
    return np.clip(cv2.resize(coarse, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)


def _box(center: tuple[int, int], half: int, shape: tuple[int, int]):
    """Return image slices and matching cell-grid slices for a cell grid of size 2*half+1 centred at center."""
    (r, c), (h, w) = center, shape
    r0, r1, c0, c1 = max(r - half, 0), min(r + half + 1, h), max(c - half, 0), min(c + half + 1, w)
    if r0 >= r1 or c0 >= c1:
        return None
    image = (slice(r0, r1), slice(c0, c1))
    cell = (slice(r0 - (r - half), r1 - (r - half)), slice(c0 - (c - half), c1 - (c - half)))
    return image, cell


def _validate(shape, n_cells, diameter, fractions, dtype, centers) -> np.ndarray | None:
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"shape must be (height, width) with positive sizes, got {shape!r}")
    if n_cells < 0:
        raise ValueError(f"n_cells must be >= 0, got {n_cells}")
    if len(diameter) != 2 or not 2 <= diameter[0] <= diameter[1]:
        raise ValueError(f"diameter must be (min, max) with 2 <= min <= max pixels, got {diameter!r}")
    for name, value in fractions.items():
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be within 0..1, got {value}")
    if fractions["clustering"] + fractions["touching"] > 1.0:
        raise ValueError("clustering + touching must not exceed 1 (they are fractions of the cells)")
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    if centers is None:
        return None
    centers = np.asarray(centers, dtype=float)
    if centers.ndim != 2 or centers.shape[1] != 2:
        raise ValueError(f"centers must be an n x 2 array of (row, column) positions, got shape {centers.shape}")
    return np.rint(centers).astype(int)


def synthetic_cells(
    shape: Sequence[int] = (512, 512),
    n_cells: int = 60,
    diameter: Sequence[float] = (14, 24),
    *,
    irregularity: float = 0.3,
    clustering: float = 0.3,
    touching: float = 0.2,
    texture: float = 0.3,
    blur_sigma: float = 1.0,
    noise: float = 0.02,
    background: float = 0.05,
    dtype: str = "uint16",
    seed: int | None = 0,
    centers: np.ndarray | None = None,
) -> SyntheticCells:
    """Draw a synthetic fluorescence image of cells with its instance labels.

    Parameters
    ----------
    shape : (int, int)
        Image height and width.
    n_cells : int
        Number of cells to place (ignored when ``centers`` is given). In an image too crowded to place a cell
        without hiding it, that cell is left out; ``count`` always reports the cells actually present.
    diameter : (float, float)
        Range of cell diameters in pixels; each cell draws its equivalent diameter uniformly from it.
    irregularity : float
        0..1; elongation of the ellipse and strength of the smooth outline perturbation.
    clustering : float
        0..1; fraction of cells placed next to (but not overlapping) an earlier cell.
    touching : float
        0..1; fraction of cells placed overlapping an earlier cell. A touching cell keeps at least 70 % of its
        area visible, so it remains a separate object.
    texture : float
        0..1; depth of the smooth intensity texture inside the cells.
    blur_sigma : float
        Standard deviation in pixels of the Gaussian blur (0 for none).
    noise : float
        Noise level relative to full intensity: the Gaussian read-noise standard deviation, and the shot noise
        standard deviation at full intensity (0 for a noiseless image).
    background : float
        Mean background level relative to full intensity; it varies smoothly over the image.
    dtype : {"uint16", "uint8", "float32"}
        Output image type; intensities 0..1 are scaled to the type's full range.
    seed : int or None
        Random seed; the same seed gives the same image.
    centers : array-like, optional
        n x 2 (row, column) positions to place the cells at exactly, e.g. on tile seams. Overlapping cells
        are drawn in order, later ones hidden under earlier ones.

    Returns
    -------
    SyntheticCells
    """
    shape = tuple(int(s) for s in shape)
    fractions = {"irregularity": irregularity, "clustering": clustering, "touching": touching, "texture": texture}
    centers = _validate(shape, n_cells, diameter, fractions, dtype, centers)
    rng = np.random.default_rng(seed)
    n = len(centers) if centers is not None else int(n_cells)
    diameters = rng.uniform(diameter[0], diameter[1], n)

    labels = np.zeros(shape, np.int32)
    intensity = np.zeros(shape, np.float32)
    texture_field = 1.0 - texture * _smooth_field(rng, shape, max(2, int(max(shape) / (0.5 * diameter[0]))))
    placed: list[tuple[int, int, float]] = []  # (row, col, radius)
    areas: list[float] = []
    centroids: list[tuple[float, float]] = []

    for i in range(n):
        rel = _cell_shape(rng, diameters[i], irregularity)
        inside = rel <= 1.0
        half = rel.shape[0] // 2
        # centre-bright profile with a per-cell brightness
        profile = rng.uniform(0.5, 0.9) * (1.0 - 0.35 * np.minimum(rel, 1.0) ** 2)
        if centers is not None:
            position = _place(labels, inside, half, (int(centers[i][0]), int(centers[i][1])), 0.0)
        else:
            position = _position(rng, labels, inside, half, placed, clustering, touching)
        if position is None:
            continue
        image_box, cell_box = position
        # pixels already owned stay with the earlier cell, so the pixels a cell gets now are final
        own = inside[cell_box] & (labels[image_box] == 0)
        labels[image_box][own] = len(placed) + 1
        intensity[image_box] = np.maximum(intensity[image_box], np.where(inside[cell_box], profile[cell_box], 0.0))
        rows, cols = np.nonzero(own)
        centroids.append((rows.mean() + image_box[0].start, cols.mean() + image_box[1].start))
        placed.append((image_box[0].start - cell_box[0].start + half, image_box[1].start - cell_box[1].start + half,
                       diameters[i] / 2.0))
        areas.append(float(np.count_nonzero(inside)))

    intensity *= texture_field
    image = background * (0.5 + _smooth_field(rng, shape, 4)) + intensity
    if blur_sigma > 0:
        image = cv2.GaussianBlur(image, (0, 0), blur_sigma)
    if noise > 0:
        # Poisson-Gaussian noise in its heteroscedastic Gaussian form (variance a * signal + b), which is exact
        # enough at these photon counts and several times faster than drawing Poisson samples
        variance = noise**2 * (np.clip(image, 0.0, None) + 1.0)
        image = image + np.sqrt(variance) * rng.standard_normal(shape, dtype=np.float32)
    image = np.clip(image, 0.0, 1.0) * _DTYPES[dtype]
    image = (np.rint(image) if dtype != "float32" else image).astype(dtype)

    centroids = np.asarray(centroids, dtype=float).reshape(-1, 2)
    mean_diameter = float(np.mean(np.sqrt(4.0 * np.asarray(areas) / np.pi))) if areas else float(np.mean(diameter))
    return SyntheticCells(image=image, labels=labels, count=len(placed), centroids=centroids, diameter=mean_diameter)


def _place(labels, inside, half, center, min_visible):
    """Return the boxes for a cell at center if at least min_visible of its area stays its own, else None.

    With ``min_visible`` 1 the cell must not overlap any earlier cell.
    """
    boxes = _box(center, half, labels.shape)
    if boxes is None:
        return None
    image_box, cell_box = boxes
    mask = inside[cell_box]
    covered = np.count_nonzero(mask & (labels[image_box] != 0))
    if min_visible >= 1.0 and covered:
        return None
    if np.count_nonzero(mask) - covered < max(min_visible * np.count_nonzero(inside), 1):
        return None
    return boxes


def _position(rng, labels, inside, half, placed, clustering, touching):
    """Choose a position for one cell: near or touching an earlier cell, else anywhere free."""
    radius = np.sqrt(np.count_nonzero(inside) / np.pi)
    mode = rng.uniform()
    if placed and mode < clustering + touching:
        low, high, visible = (0.75, 0.9, _MIN_VISIBLE) if mode < touching else (1.0, 1.3, 1.0)
        for _ in range(_ATTEMPTS):
            row, col, other = placed[rng.integers(len(placed))]
            distance = (radius + other) * rng.uniform(low, high)
            angle = rng.uniform(0.0, 2.0 * np.pi)
            center = (int(round(row + distance * np.sin(angle))), int(round(col + distance * np.cos(angle))))
            if not (0 <= center[0] < labels.shape[0] and 0 <= center[1] < labels.shape[1]):
                continue
            boxes = _place(labels, inside, half, center, visible)
            if boxes is not None:
                return boxes
    for _ in range(_ATTEMPTS):
        center = (int(rng.integers(labels.shape[0])), int(rng.integers(labels.shape[1])))
        boxes = _place(labels, inside, half, center, 1.0)
        if boxes is not None:
            return boxes
    return None


def synthetic_dataset(
    n_images: int,
    seed: int = 0,
    *,
    count_range: Sequence[int] = (10, 150),
    diameter_range: Sequence[float] = (10, 32),
    **kwargs,
) -> Iterator[SyntheticCells]:
    """Yield varied synthetic images, each with its own cell count and diameter range.

    Parameters
    ----------
    n_images : int
        Number of images to yield.
    seed : int
        Seed of the whole sequence; image ``i`` is the same for the same seed whatever ``n_images`` is.
    count_range : (int, int)
        Inclusive range the number of cells of each image is drawn from.
    diameter_range : (float, float)
        Range the diameters are drawn from: each image uses a sub-range ``(d, 1.5 d)`` inside it.
    **kwargs
        Passed to :func:`synthetic_cells` (for example ``shape``, ``touching``, ``dtype``).

    Yields
    ------
    SyntheticCells
    """
    if count_range[0] > count_range[1] or count_range[0] < 0:
        raise ValueError(f"count_range must be (min, max) with 0 <= min <= max, got {count_range!r}")
    if not 2 <= diameter_range[0] <= diameter_range[1]:
        raise ValueError(f"diameter_range must be (min, max) with 2 <= min <= max, got {diameter_range!r}")
    for child in np.random.SeedSequence(seed).spawn(n_images):
        rng = np.random.default_rng(child)
        low = rng.uniform(diameter_range[0], max(diameter_range[0], diameter_range[1] / 1.5))
        n_cells = int(rng.integers(count_range[0], count_range[1] + 1))
        image_seed = int(rng.integers(2**31))
        yield synthetic_cells(n_cells=n_cells, diameter=(low, min(1.5 * low, diameter_range[1])), seed=image_seed,
                              **kwargs)


def ideal_probability(labels: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """The probability map a perfect segmentation network would give for known labels.

    The cells' mask, with the pixels where two cells touch set to background (as networks trained with border
    weights learn to do), smoothed by a Gaussian of `sigma` pixels.

    Parameters
    ----------
    labels : (H, W) array of int
        Instance labels, 0 background.
    sigma : float
        Standard deviation of the smoothing in pixels (0 for none).

    Returns
    -------
    (H, W) float32 array within 0..1
    """
    labels = np.asarray(labels)
    cells = labels > 0
    highest_neighbour = ndi.grey_dilation(labels, size=3)
    lowest_cell_neighbour = ndi.grey_erosion(np.where(cells, labels, labels.max() + 1), size=3)
    inside = cells & (highest_neighbour == labels) & (lowest_cell_neighbour == labels)
    probability = inside.astype(np.float32)
    if sigma > 0:
        probability = ndi.gaussian_filter(probability, sigma)
    return np.clip(probability, 0.0, 1.0, out=probability)
