"""The connected components of a large image, computed in overlapping blocks, each handed out exactly once.

Whole-image morphology (distance transforms, watersheds) needs tens of bytes per pixel, several GB for a
100-megapixel image. Here a caller's ``analyse(window)`` labels the components of one window of the image;
windows are blocks of ``block_side`` pixels plus a ``halo`` on each side (`tiling.plan_tiles` cuts them, and
their cores partition the image). A component is *exact* in a window when its bounding box stays at least
``margin(height, width)`` pixels from every window side that is not an image border: the caller chooses the
margin so that such a component, and everything computed for it, equals the whole-image result.

Each component is handed out once, from the window where it is exact and whose core holds its *anchor* (its
first pixel in raster order). A component that is not exact in any block (a clump larger than the halo, or one
lying across a seam) is computed again on a window grown around it until it is exact. Peak memory is that of one
window per worker thread (plus one waiting), plus the windows grown around such components.

Blocks are analysed by a pool of threads, in order: OpenCV and numpy release the GIL, so the blocks' morphology runs
on several cores while the bookkeeping (which component is handed out where) stays in the calling thread.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

from cellcount_core.objects.components import ComponentPixels
from cellcount_core.running.tiling import plan_tiles

__all__ = ["Part", "default_workers", "iter_components"]


def default_workers() -> int:
    """Threads that analyse blocks by default: the CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass
class Part:
    """Exact components of one window, as `iter_components` hands them out.

    Attributes
    ----------
    window : tuple of slice
        (rows, columns) of the image that `analyse` was given.
    core : tuple of slice or None
        The block's core in image coordinates (the cores of all blocks partition the image); None for a window
        grown around one component.
    components : (h, w) array of int
        The window's labelled components, as `analyse` returned them.
    extra : object
        What else `analyse` returned for the window.
    ids : array of int
        The labels in `components` handed out here (possibly none for a block).
    """

    window: tuple
    core: tuple | None
    components: np.ndarray
    extra: Any
    ids: np.ndarray


def iter_components(
    shape: tuple[int, int],
    analyse: Callable[[tuple, Callable], tuple[np.ndarray | ComponentPixels, Any]],
    margin: Callable[[int, int], int],
    *,
    block_side: int = 2048,
    halo: int = 128,
    workers: int | None = None,
) -> Iterator[Part]:
    """Hand out every connected component of an image exactly once, computed block by block.

    Parameters
    ----------
    shape : (int, int)
        Image height and width.
    analyse : callable
        ``analyse(window, wanted) -> (components, extra)`` for a window (rows, columns) of the image: its
        connected components labelled 1..n (int array of the window's shape, or its `components.ComponentPixels`
        when the caller has them), and anything else the caller needs. Pixels at least `halo` from the window's
        cut sides must be labelled as in the whole image. ``wanted(pixels)``, called (at most once) with the
        `ComponentPixels` that `analyse` will return, gives the components that may be handed out from this
        window (bool, indexed by label): `analyse` may skip work on the others.
    margin : callable
        ``margin(height, width) -> int``: the distance from a window's cut sides beyond which a component with
        a bounding box of that size is computed as in the whole image; called with arrays of heights and widths
        (use ``np.maximum``, not ``max``).
    block_side, halo : int
        Core side and the overlap added on each side of it, in pixels.
    workers : int, optional
        Threads analysing blocks ahead of the caller (default `default_workers`); `analyse` must be thread-safe.

    Yields
    ------
    Part
        One per block (in raster order, with the components exact there and anchored in its core), then one
        per component that needed a grown window, right after the block where it was found.

    Raises
    ------
    ValueError
        If `block_side` or `halo` is not positive.
    """
    if block_side < 1 or halo < 1:
        raise ValueError(f"block_side={block_side} and halo={halo} must be positive numbers of pixels.")
    plan = plan_tiles(shape, block_side + 2 * halo, 2 * halo)
    windows = [(slice(tile.y, tile.y + plan.tile_shape[0]), slice(tile.x, tile.x + plan.tile_shape[1]))
               for tile in plan.tiles]
    handed_out = set()  # anchors of the components handed out so far

    def survey(window_and_core):
        window, core = window_and_core
        measured = []

        def wanted(pixels):
            measured.append(_Survey(window, pixels, shape, margin))
            return measured[-1].handed_out_from(core)

        components, extra = analyse(window, wanted)
        found = measured[-1] if measured and measured[-1].pixels is components else \
            _Survey(window, components, shape, margin)
        found.extra = extra
        return found

    blocks = [(window, tile.dest) for window, tile in zip(windows, plan.tiles)]
    for tile, found in zip(plan.tiles, _in_threads(survey, blocks, workers)):
        ids = []
        candidates = found.exact & _inside(found.anchors, tile.dest)
        for index, anchor in zip(found.labels[candidates].tolist(), map(tuple, found.anchors[candidates].tolist())):
            if anchor not in handed_out:
                handed_out.add(anchor)
                ids.append(index)
        seeds = [pixels for index, box in zip(found.labels[~found.exact], found.boxes[~found.exact])
                 for pixels in _core_pixels(found.components, index, box, found.window, tile.dest)]
        yield Part(found.window, tile.dest, found.components, found.extra, np.asarray(ids, dtype=np.int64))
        del found
        for seed_pixels in seeds:
            yield from _resolve(seed_pixels, analyse, shape, margin, handed_out)


class _Survey:
    """A window's components with, for each, its box, exactness and anchor (arrays, one row each), and what
    `analyse` returned besides (``extra``).

    Computed in the worker threads, so that the caller's thread only does the bookkeeping.
    """

    def __init__(self, window, components, shape, margin):
        self.pixels = components if isinstance(components, ComponentPixels) else ComponentPixels.of(components)
        self.window, self.components, self.extra = window, self.pixels.labels, None
        boxes, first = self.pixels.boxes()
        self.labels = np.flatnonzero(first >= 0)
        #: window-relative boxes: first row, row stop, first column, column stop
        self.boxes = boxes[self.labels]
        offset = np.array([window[0].start, window[0].start, window[1].start, window[1].start])
        self.exact = _exact(self.boxes + offset, window, shape, margin)
        self.anchors = np.stack(np.divmod(first[self.labels], self.components.shape[1]), axis=1) + offset[1:3]

    def handed_out_from(self, core):
        """Which components (bool, by label) are exact here and anchored in `core`."""
        chosen = np.zeros(self.pixels.count, bool)
        chosen[self.labels[self.exact & _inside(self.anchors, core)]] = True
        return chosen


def _in_threads(function, items, workers):
    """``function(item)`` for each item, in order, computed by `workers` threads at most one item ahead each."""
    workers = default_workers() if workers is None else max(1, int(workers))
    if workers == 1 or len(items) == 1:
        yield from map(function, items)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="cellcount-block") as pool:
        pending = deque()
        for item in items:
            pending.append(pool.submit(function, item))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _exact(boxes, window, shape, margin):
    """For image boxes (n x 4: row start, row stop, column start, column stop): True where the box keeps
    ``margin(height, width)`` pixels from every side of the window that is not an image border."""
    need = margin(boxes[:, 1] - boxes[:, 0], boxes[:, 3] - boxes[:, 2])
    exact = np.ones(len(boxes), bool)
    for axis, (side, length) in enumerate(zip(window, shape)):
        start, stop = boxes[:, 2 * axis], boxes[:, 2 * axis + 1]
        if side.start > 0:
            exact &= start - side.start >= need
        if side.stop < length:
            exact &= side.stop - stop >= need
    return exact


def _inside(points, region):
    """Which points (n x 2, image coordinates) lie in a region (rows, columns)."""
    return ((points[:, 0] >= region[0].start) & (points[:, 0] < region[0].stop)
            & (points[:, 1] >= region[1].start) & (points[:, 1] < region[1].stop))


def _core_pixels(components, index, box, window, core):
    """The pixels of a component (window box: row start, stop, column start, stop) in the core, as
    [(image row, image column) arrays], or []."""
    rows = slice(max(box[0], core[0].start - window[0].start), min(box[1], core[0].stop - window[0].start))
    cols = slice(max(box[2], core[1].start - window[1].start), min(box[3], core[1].stop - window[1].start))
    if rows.start >= rows.stop or cols.start >= cols.stop:
        return []
    r, c = np.nonzero(components[rows, cols] == index)
    if len(r) == 0:
        return []
    return [(r + rows.start + window[0].start, c + cols.start + window[1].start)]


def _box_and_anchor(components, index):
    """The window box of one component (1 x 4: row start, stop, column start, stop) and its first pixel."""
    rows, columns = np.nonzero(components == index)
    return np.array([[rows.min(), rows.max() + 1, columns.min(), columns.max() + 1]]), (rows[0], columns[0])


def _resolve(seed_pixels, analyse, shape, margin, handed_out):
    """Hand out the exact components through the seed pixels of a component that was cut by its window."""
    rows, columns = seed_pixels
    pending = np.ones(len(rows), bool)
    window = _grown(np.array([rows.min(), rows.max() + 1, columns.min(), columns.max() + 1]), None, shape, margin)
    while pending.any():
        seed = (int(rows[pending][0]), int(columns[pending][0]))
        window, components, extra, index = _exact_component_at(seed, window, analyse, shape, margin)
        if index == 0:  # background in the exact result: nothing to hand out here
            pending &= (rows != seed[0]) | (columns != seed[1])
            continue
        local_rows, local_cols = rows - window[0].start, columns - window[1].start
        inside = (local_rows >= 0) & (local_rows < components.shape[0]) & (local_cols >= 0) & (
            local_cols < components.shape[1])
        member = np.zeros(len(rows), bool)
        member[inside] = components[local_rows[inside], local_cols[inside]] == index
        pending &= ~member
        _, (row, column) = _box_and_anchor(components, index)
        anchor = (int(row) + window[0].start, int(column) + window[1].start)
        if anchor not in handed_out:
            handed_out.add(anchor)
            yield Part(window, None, components, extra, np.asarray([index], dtype=np.int64))


def _exact_component_at(seed, window, analyse, shape, margin):
    """Analyse windows grown from `window` until the component at `seed` is exact in one; its window and label."""
    while True:
        components, extra = analyse(window, lambda pixels: _exact_at(seed, pixels, window, shape, margin))
        if isinstance(components, ComponentPixels):
            components = components.labels
        index = int(components[seed[0] - window[0].start, seed[1] - window[1].start])
        if index == 0:
            return window, components, extra, 0
        box = _box_and_anchor(components, index)[0] + [window[0].start, window[0].start, window[1].start,
                                                         window[1].start]
        if _exact(box, window, shape, margin)[0]:
            return window, components, extra, index
        window = _grown(box[0], window, shape, margin)


def _exact_at(seed, pixels, window, shape, margin):
    """The component at an image pixel, if it is exact in the window (bool, by label; all False otherwise)."""
    chosen = np.zeros(pixels.count, bool)
    index = int(pixels.labels[seed[0] - window[0].start, seed[1] - window[1].start])
    if index:
        box = _box_and_anchor(pixels.labels, index)[0] + [window[0].start, window[0].start, window[1].start,
                                                            window[1].start]
        chosen[index] = _exact(box, window, shape, margin)[0]
    return chosen


def _grown(box, window, shape, margin):
    """The image box (row start, stop, column start, stop) widened by its margin on every side, joined with
    `window` (if any), within the image."""
    need = int(margin(box[1] - box[0], box[3] - box[2]))
    grown = []
    for axis, length in enumerate(shape):
        start, stop = max(int(box[2 * axis]) - need, 0), min(int(box[2 * axis + 1]) + need, length)
        if window is not None:
            start, stop = min(start, window[axis].start), max(stop, window[axis].stop)
        grown.append(slice(start, stop))
    return tuple(grown)
