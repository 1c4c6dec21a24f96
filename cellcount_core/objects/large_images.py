"""Thresholding and post-processing of probability maps too large for whole-image morphology.

A 100-megapixel map post-processed at once needs about 40 bytes per pixel (distance transforms, watershed
queues), 4 GB. Here the same steps run on overlapping blocks (`blockwise`): the global threshold is computed
from a histogram gathered in chunks, the typical diameter from the components of each block, and the labels by
`postprocess.labels_from_mask` on each block, keeping each connected component from one block where it is
computed exactly. Cells lying across block seams are therefore counted once, and the result is that of a
whole-image run (the object ids differ); memory is the map, the labels and the mask plus the work of one block
per thread (blocks are post-processed by as many threads as the process may use cores: OpenCV and numpy release
the GIL).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from skimage.filters import threshold_otsu

from cellcount_core.objects.blockwise import iter_components
from cellcount_core.objects.components import ComponentPixels, component_labels, fill_mask_holes
from cellcount_core.objects.diameter import component_diameters, diameter_from_components
from cellcount_core.objects.postprocess import default_min_size, objects_from_mask
from cellcount_core.objects.thresholds import THRESHOLD_METHODS, apply_threshold

__all__ = ["BLOCK_SIDE", "LARGE_IMAGE_PIXELS", "BlockLabels", "is_large", "label_centroids", "labels_in_blocks",
           "otsu_in_chunks"]

#: Side of the blocks' cores, in pixels: a block with its halo needs about 100 MB of work space; on a 10000 x 10000
#: map blocks of 2048 ran 15 % faster than blocks of 1024 (less of the work is halo; BENCHMARKS.md, section 7).
BLOCK_SIDE = 2048
#: Maps with more pixels than this (2048 x 2048) are post-processed in blocks by
#: `segmentation.labels_from_probability`.
LARGE_IMAGE_PIXELS = 2048 * 2048
#: Halo of the blocks that estimate the diameter (not known yet): clumps wider than about half of it are
#: computed again on a grown window, which is exact but slower.
_DIAMETER_HALO = 128
#: Rows per chunk when a histogram is gathered over the whole map.
_CHUNK_ROWS = 512


@dataclass
class BlockLabels:
    """What `labels_in_blocks` found (the fields of `segmentation.SegmentationResult` but the count)."""

    labels: np.ndarray
    mask: np.ndarray
    threshold: float
    diameter: float


def is_large(shape) -> bool:
    """True if a map of this (H, W) shape is post-processed in blocks (more than `LARGE_IMAGE_PIXELS` pixels)."""
    return len(shape) == 2 and int(shape[0]) * int(shape[1]) > LARGE_IMAGE_PIXELS


def otsu_in_chunks(probability: np.ndarray) -> float:
    """``skimage.filters.threshold_otsu(probability)``, from a histogram gathered a few rows at a time."""
    low, high = probability.min(), probability.max()
    if low == high:
        return float(low)
    counts = 0
    for start in range(0, probability.shape[0], _CHUNK_ROWS):
        chunk_counts, edges = np.histogram(probability[start : start + _CHUNK_ROWS], bins=256, range=(low, high))
        counts = counts + chunk_counts
    return float(threshold_otsu(hist=(counts, (edges[:-1] + edges[1:]) / 2.0)))


def label_centroids(labels: np.ndarray) -> np.ndarray:
    """Centres of mass of the objects of a label image, summed a few rows at a time.

    The values of ``scipy.ndimage.center_of_mass(np.ones_like(labels), labels, present_labels)`` (what
    CellProfiler measures as Location_Center), without its float64 coordinate images (16 bytes per pixel).

    Parameters
    ----------
    labels : (H, W) array of non-negative int
        0 background.

    Returns
    -------
    (n, 2) float64 array
        (row, column) of each label present, in increasing label order.
    """
    labels = np.asarray(labels)
    n = int(labels.max(initial=0))
    pixels, row_sums, column_sums = np.zeros(n + 1), np.zeros(n + 1), np.zeros(n + 1)
    columns = np.arange(labels.shape[1], dtype=float)
    for start in range(0, labels.shape[0], _CHUNK_ROWS):
        chunk = labels[start : start + _CHUNK_ROWS]
        flat = chunk.ravel()
        rows = np.repeat(np.arange(start, start + len(chunk), dtype=float), chunk.shape[1])
        pixels += np.bincount(flat, minlength=n + 1)
        row_sums += np.bincount(flat, weights=rows, minlength=n + 1)
        column_sums += np.bincount(flat, weights=np.tile(columns, len(chunk)), minlength=n + 1)
    present = pixels[1:] > 0
    return np.stack([row_sums[1:][present], column_sums[1:][present]], axis=1) / pixels[1:][present, None]


def labels_in_blocks(
    probability: np.ndarray,
    *,
    threshold_method: str = "model default",
    threshold_value: float | None = None,
    block_size: int = 51,
    offset: float = 0.0,
    diameter: float | None = None,
    min_size: int | None = None,
    fill_holes: bool = True,
    split_touching: bool = True,
    exclude_border: bool = False,
    block_side: int | None = None,
    workers: int | None = None,
) -> BlockLabels:
    """Threshold and post-process a probability map block by block, as a whole-image run would.

    Parameters
    ----------
    probability : (H, W) float array
        Foreground probability within 0..1.
    threshold_method, threshold_value, block_size, offset, diameter, min_size, fill_holes, split_touching, \
exclude_border
        As in `segmentation.labels_from_probability`.
    block_side : int, optional
        Side of the blocks' cores in pixels; default `BLOCK_SIDE`.
    workers : int, optional
        Threads post-processing blocks at once; default `blockwise.default_workers` (the usable CPU cores).

    Returns
    -------
    BlockLabels
        int32 labels (ids 1..n, in block order rather than the whole-image order), the thresholded mask, the
        threshold (for ``"adaptive"`` the mean local threshold, averaged over the blocks) and the diameter.

    Raises
    ------
    ValueError
        For a probability map that is not 2-D, not finite or outside 0..1, and for bad threshold options.
    """
    probability = _checked(probability)
    block_side = BLOCK_SIDE if block_side is None else block_side
    threshold = _WindowThreshold(probability, threshold_method, threshold_value, block_size, offset)
    cores = _CoreRecord(probability.shape)
    labels = np.zeros(probability.shape, np.int32)
    estimated = diameter is None
    if estimated:
        diameter = _estimate_diameter(probability, threshold, block_side, cores, workers)
    if diameter or not estimated:  # an estimated 0 means an empty mask
        _label(labels, probability, threshold, diameter, block_side, None if estimated else cores, workers,
               min_size=min_size, fill_holes=fill_holes, split_touching=split_touching, exclude_border=exclude_border)
    return BlockLabels(labels, cores.mask, threshold.report(cores.thresholds), float(diameter))


def _checked(probability):
    """The map as a 2-D array, after checking (without temporary copies) that it is finite and within 0..1."""
    probability = np.asarray(probability)
    if probability.ndim != 2 or probability.size == 0:
        raise ValueError(f"probability must be a non-empty 2-D (H x W) map, got shape {probability.shape}")
    if not (0.0 <= probability.min() and probability.max() <= 1.0):
        raise ValueError("probability must hold finite values within 0..1; pass the network's sigmoid output, "
                         "not logits or raw image intensities")
    return probability


class _WindowThreshold:
    """Thresholds windows of a map as the whole map would be; ``reach`` is how far a window side disturbs it."""

    def __init__(self, probability, method, value, block_size, offset):
        if method not in THRESHOLD_METHODS:
            raise ValueError(f"unknown threshold method {method!r}; choose one of {', '.join(THRESHOLD_METHODS)}")
        self.adaptive = method == "adaptive"
        self.block_size, self.offset = block_size, offset
        self.reach = int(block_size) // 2 if self.adaptive else 0
        if self.adaptive:
            apply_threshold(probability[:1, :1], method, block_size=block_size, offset=offset)  # checks options
            self.value = None
        elif method == "otsu":
            self.value = otsu_in_chunks(probability)
        else:
            self.value = apply_threshold(probability[:1, :1], method, value=value)[1]

    def __call__(self, values):
        if self.adaptive:
            return apply_threshold(values, "adaptive", block_size=self.block_size, offset=self.offset)
        return values > self.value, self.value

    def report(self, cores_and_thresholds):
        """The threshold to report: the global one, or the adaptive windows' means weighted by core area."""
        if not self.adaptive:
            return float(self.value)
        areas = [(c[0].stop - c[0].start) * (c[1].stop - c[1].start) for c, _ in cores_and_thresholds]
        return float(np.average([t for _, t in cores_and_thresholds], weights=areas))


class _CoreRecord:
    """The thresholded mask and each window's threshold, gathered from the cores of the blocks."""

    def __init__(self, shape):
        self.mask = np.zeros(shape, bool)
        self.thresholds = []

    def add(self, part, window_mask, window_threshold):
        if part.core is not None:
            self.mask[part.core] = window_mask[_relative(part.core, part.window)]
            self.thresholds.append((part.core, window_threshold))


def _estimate_diameter(probability, threshold, block_side, cores, workers):
    """`diameter.estimate_diameter` of the thresholded map, from the components of each block."""

    def analyse(window, wanted):
        values = probability[window]
        window_mask, window_threshold = threshold(values)
        components = ComponentPixels.of(component_labels(fill_mask_holes(window_mask)))
        return components, (component_diameters(components, values, wanted(components)), window_mask,
                            window_threshold)

    equivalent, inscribed = [], []
    margin = threshold.reach + 3
    for part in iter_components(probability.shape, analyse, lambda h, w: np.maximum(h, w) + margin,
                                block_side=block_side, halo=_DIAMETER_HALO + margin, workers=workers):
        (eq, ins), window_mask, window_threshold = part.extra
        cores.add(part, window_mask, window_threshold)
        equivalent.append(eq[part.ids])
        inscribed.append(ins[part.ids])
    equivalent, inscribed = np.concatenate(equivalent), np.concatenate(inscribed)
    return diameter_from_components(equivalent, inscribed) if len(equivalent) else 0.0


def _label(labels, probability, threshold, diameter, block_side, cores, workers, *, min_size, exclude_border,
           **options):
    """Write the objects of `postprocess.labels_from_mask` into `labels`, block by block; record the cores."""
    min_size = default_min_size(diameter) if min_size is None else int(min_size)

    def analyse(window, wanted):
        values = np.asarray(probability[window], np.float32)
        window_mask, window_threshold = threshold(values)
        found = objects_from_mask(window_mask, values, diameter, min_size=min_size, wanted=wanted, **options)
        return found.components, (found.object_pixels(), found.component_of, window_mask, window_threshold)

    # how far a window side reaches: the adaptive threshold, the two smoothings of the watershed surface
    context = threshold.reach + 2 * _gaussian_radius(diameter / 20.0) + _gaussian_radius(1.0) + 3
    next_id = 1
    for part in iter_components(probability.shape, analyse, lambda h, w: np.maximum(h, w) + context,
                                block_side=block_side, halo=4 * math.ceil(diameter) + context, workers=workers):
        objects, component_of, window_mask, window_threshold = part.extra
        if cores is not None:
            cores.add(part, window_mask, window_threshold)
        next_id = _write_objects(labels, part, objects, component_of, exclude_border, next_id)


def _write_objects(labels, part, objects, component_of, exclude_border, next_id):
    """Copy the objects of a part's handed-out components into the image's labels with new ids; the next id.

    `objects` holds the flat indices of the window's object pixels and their labels; ``component_of[label]`` is
    the component (of ``part.components``) that holds each object.
    """
    if len(part.ids) == 0:
        return next_id
    owned = np.zeros(int(component_of.max()) + 1, bool)
    owned[part.ids] = True
    keep = owned[component_of]
    keep[0] = False
    flat, ids = objects
    window_width = part.window[1].stop - part.window[1].start
    if exclude_border:
        keep[_image_border_objects(flat, ids, window_width, part.window, labels.shape)] = False
    new_ids = np.where(keep, np.cumsum(keep) + (next_id - 1), 0).astype(labels.dtype)
    written = keep[ids]
    rows, columns = np.divmod(flat[written], window_width)
    labels.ravel()[(rows + part.window[0].start) * labels.shape[1] + columns + part.window[1].start] = \
        new_ids[ids[written]]
    return next_id + int(keep.sum())


def _image_border_objects(flat, ids, window_width, window, shape):
    """Labels of a window's objects (pixels at flat indices `flat` of the window, labels `ids`) that touch the
    image border."""
    rows, columns = np.divmod(flat, window_width)
    on_border = np.zeros(len(flat), bool)
    if window[0].start == 0:
        on_border |= rows == 0
    if window[0].stop == shape[0]:
        on_border |= rows == window[0].stop - window[0].start - 1
    if window[1].start == 0:
        on_border |= columns == 0
    if window[1].stop == shape[1]:
        on_border |= columns == window_width - 1
    return np.unique(ids[on_border])


def _relative(region, window):
    """An image region in a window's coordinates."""
    return tuple(slice(r.start - w.start, r.stop - w.start) for r, w in zip(region, window))


def _gaussian_radius(sigma):
    """Radius of scipy's Gaussian filter kernel (truncated at 4 standard deviations)."""
    return int(4.0 * sigma + 0.5)
