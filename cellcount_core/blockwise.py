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
from scipy import ndimage as ndi

from .tiling import plan_tiles

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
    analyse: Callable[[tuple], tuple[np.ndarray, Any]],
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
        ``analyse(window) -> (components, extra)`` for a window (rows, columns) of the image: its connected
        components labelled 1..n (int array of the window's shape), and anything else the caller needs.
        Pixels at least `halo` from the window's cut sides must be labelled as in the whole image.
    margin : callable
        ``margin(height, width) -> int``: the distance from a window's cut sides beyond which a component with
        a bounding box of that size is computed as in the whole image.
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
    for tile, window, (components, extra) in zip(plan.tiles, windows, _analysed(windows, analyse, workers)):
        ids, seeds = [], []
        for index, box in enumerate(ndi.find_objects(components), start=1):
            if box is None:
                continue
            if _is_exact(_shift(box, window), window, shape, margin):
                anchor = _anchor(components, index, box, window)
                if _contains(tile.dest, anchor) and anchor not in handed_out:
                    handed_out.add(anchor)
                    ids.append(index)
            else:
                seeds += _core_pixels(components, index, box, window, tile.dest)
        yield Part(window, tile.dest, components, extra, np.asarray(ids, dtype=np.int64))
        del components, extra
        for seed_pixels in seeds:
            yield from _resolve(seed_pixels, analyse, shape, margin, handed_out)


def _analysed(windows, analyse, workers):
    """``analyse(window)`` for each window, in order, computed by `workers` threads at most one window ahead each."""
    workers = default_workers() if workers is None else max(1, int(workers))
    if workers == 1 or len(windows) == 1:
        yield from map(analyse, windows)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="cellcount-block") as pool:
        pending = deque()
        for window in windows:
            pending.append(pool.submit(analyse, window))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _shift(box, window):
    """A window-relative box in image coordinates."""
    return tuple(slice(b.start + w.start, b.stop + w.start) for b, w in zip(box, window))


def _is_exact(box, window, shape, margin):
    """True if the image box keeps `margin` pixels from every side of the window that is not an image border."""
    need = margin(box[0].stop - box[0].start, box[1].stop - box[1].start)
    for b, w, length in zip(box, window, shape):
        if w.start > 0 and b.start - w.start < need:
            return False
        if w.stop < length and w.stop - b.stop < need:
            return False
    return True


def _anchor(components, index, box, window):
    """Image coordinates of a component's first pixel in raster order."""
    row = box[0].start
    column = box[1].start + int(np.argmax(components[row, box[1]] == index))
    return row + window[0].start, column + window[1].start


def _contains(region, point):
    return all(r.start <= p < r.stop for r, p in zip(region, point))


def _core_pixels(components, index, box, window, core):
    """The pixels of a component that lie in the core, as [(image row, image column) arrays], or []."""
    rows = slice(max(box[0].start, core[0].start - window[0].start), min(box[0].stop, core[0].stop - window[0].start))
    cols = slice(max(box[1].start, core[1].start - window[1].start), min(box[1].stop, core[1].stop - window[1].start))
    if rows.start >= rows.stop or cols.start >= cols.stop:
        return []
    r, c = np.nonzero(components[rows, cols] == index)
    if len(r) == 0:
        return []
    return [(r + rows.start + window[0].start, c + cols.start + window[1].start)]


def _resolve(seed_pixels, analyse, shape, margin, handed_out):
    """Hand out the exact components through the seed pixels of a component that was cut by its window."""
    rows, columns = seed_pixels
    pending = np.ones(len(rows), bool)
    window = _grown((slice(rows.min(), rows.max() + 1), slice(columns.min(), columns.max() + 1)), None, shape, margin)
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
        box = ndi.find_objects(components, max_label=index)[index - 1]
        anchor = _anchor(components, index, box, window)
        if anchor not in handed_out:
            handed_out.add(anchor)
            yield Part(window, None, components, extra, np.asarray([index], dtype=np.int64))


def _exact_component_at(seed, window, analyse, shape, margin):
    """Analyse windows grown from `window` until the component at `seed` is exact in one; its window and label."""
    while True:
        components, extra = analyse(window)
        index = int(components[seed[0] - window[0].start, seed[1] - window[1].start])
        if index == 0:
            return window, components, extra, 0
        box = _shift(ndi.find_objects(components, max_label=index)[index - 1], window)
        if _is_exact(box, window, shape, margin):
            return window, components, extra, index
        window = _grown(box, window, shape, margin)


def _grown(box, window, shape, margin):
    """The box widened by its margin on every side, joined with `window` (if any), within the image."""
    need = margin(box[0].stop - box[0].start, box[1].stop - box[1].start)
    grown = []
    for axis, (b, length) in enumerate(zip(box, shape)):
        start, stop = max(b.start - need, 0), min(b.stop + need, length)
        if window is not None:
            start, stop = min(start, window[axis].start), max(stop, window[axis].stop)
        grown.append(slice(start, stop))
    return tuple(grown)
