"""The whole-image morphology of `components` and `diameter` as torch operations, for masks in GPU memory.

Each function equals its OpenCV counterpart on the host, value for value, and runs on any torch device (the tests
compare them on CPU tensors):

- `label_components`: 4-connected labels numbered in raster order, as ``cv2.connectedComponents`` gives them.
  Every pixel starts with its own flat index; the minimum of each row run and of each column run is spread over
  the run, and labels are looked up through the pixels they name (pointer jumping), until nothing changes. A run
  collapses in one step, so a blob converges in a few rounds, whatever its size.
- `fill_mask_holes` and `fill_small_holes`: from the labelled background.
- `chamfer_distance`: OpenCV's 5 x 5 chamfer distance (``cv2.DIST_L2``, mask 5), the shortest path to the
  background with steps of 1, 1.4 and 2.1969, found by relaxation (to the last bit of float32).
- `squared_distance`: the square of the exact distance (``cv2.DIST_MASK_PRECISE``): the distance to the
  background along each row, then the nearest in each column of ``row distance^2 + row offset^2``.
Outside the image is never background, as in OpenCV.
"""

from __future__ import annotations

import torch

__all__ = ["border_labels", "chamfer_distance", "fill_mask_holes", "fill_small_holes", "label_areas",
           "label_components", "lookup", "per_label", "shifted", "squared_distance"]

#: Label lookups through the pixels labels name, per round.
_JUMPS = 2
#: OpenCV's 5 x 5 chamfer steps (``cv2.DIST_L2``, mask 5): (row, column) offsets and float32 weights.
_CHAMFER_STEPS = ([((0, 1), 1.0), ((1, 0), 1.0), ((0, -1), 1.0), ((-1, 0), 1.0)]
                  + [((r, c), 1.4) for r in (-1, 1) for c in (-1, 1)]
                  + [((r, c), 2.1969) for r, c in ((1, 2), (2, 1), (-1, 2), (-2, 1), (1, -2), (2, -1), (-1, -2),
                                                   (-2, -1))])


def _runs(mask: torch.Tensor, flat: torch.Tensor, along_columns: bool) -> torch.Tensor:
    """The run (int64 id) of each foreground pixel `flat` (flat indices of the contiguous H x W `mask`) among the
    maximal runs of foreground along the rows, or along the columns; ids are increasing in raster order of the
    run, rows or columns first."""
    starts = mask.clone()
    if along_columns:
        starts[1:] &= ~mask[:-1]
        starts = starts.t().contiguous()  # column-major order of the runs
        height, width = mask.shape
        flat = (flat % width) * height + flat // width
    else:
        starts[:, 1:] &= ~mask[:, :-1]
    return torch.cumsum(starts.view(-1), 0, dtype=torch.int32).index_select(0, flat).long()


def _spread_minima(values: torch.Tensor, runs: torch.Tensor) -> torch.Tensor:
    """Each of `values` (one per foreground pixel) replaced by the smallest in its run."""
    minima = torch.full((int(runs.max()) + 1,), torch.iinfo(values.dtype).max, dtype=values.dtype,
                        device=values.device)
    return minima.scatter_reduce_(0, runs, values, "amin").index_select(0, runs)


def label_components(mask: torch.Tensor) -> tuple[torch.Tensor, int]:
    """4-connected components of a bool H x W mask: int32 labels 1..n in the raster order of each component's
    first pixel (0 background), and n.

    Works on the foreground's pixels alone: their flat indices and run ids, 8 bytes each per direction."""
    height, width = mask.shape
    mask = mask.contiguous()
    labels = torch.zeros((height, width), dtype=torch.int32, device=mask.device)
    flat = mask.view(-1).nonzero().view(-1)
    if len(flat) == 0:
        return labels, 0
    row_runs, column_runs = _runs(mask, flat, False), _runs(mask, flat, True)
    # each pixel's label: the flat index of a pixel of its component (its own to start with), read through
    # `labels`, which holds the current label at every foreground pixel
    own = flat.to(torch.int32)
    current = own
    while True:
        before = current
        current = _spread_minima(_spread_minima(current, row_runs), column_runs)
        for _ in range(_JUMPS):
            labels.view(-1)[flat] = current
            current = labels.view(-1).index_select(0, current)
        if torch.equal(current, before):
            break
    del row_runs, column_runs
    roots = current == own  # each component's smallest flat index: its first pixel in raster order
    numbers = torch.cumsum(roots, 0, dtype=torch.int32)
    labels.view(-1)[flat] = 0
    labels.view(-1)[flat[roots]] = numbers[roots]  # each first pixel holds its number
    labels.view(-1)[flat] = labels.view(-1).index_select(0, current)
    return labels, int(numbers[-1])


def per_label(labels: torch.Tensor, count: int, values: torch.Tensor, reduce: str, initial: float = 0,
              where: torch.Tensor | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``reduce`` ("sum", "amax" or "amin") of `values` (an H x W tensor, perhaps expanded) over the pixels of each
    label 1..count (only those `where` is True, if given), from `initial`, in `dtype` (default `values`'); the
    entry of label 0 stays `initial`. Only the chosen pixels are copied."""
    chosen = labels > 0 if where is None else where & (labels > 0)
    flat = chosen.view(-1).nonzero().view(-1)
    del chosen
    selected = values.reshape(-1).index_select(0, flat) if values.is_contiguous() else values[
        flat // values.shape[1], flat % values.shape[1]]
    selected = selected if dtype is None else selected.to(dtype)
    result = torch.full((count + 1,), initial, dtype=selected.dtype, device=values.device)
    return result.scatter_reduce_(0, labels.view(-1).index_select(0, flat).long(), selected, reduce)


def lookup(table: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``table[labels]`` without an int64 copy of the labels."""
    return table.index_select(0, labels.view(-1)).view(labels.shape)


def label_areas(labels: torch.Tensor, count: int) -> torch.Tensor:
    """The pixel count (int64) of each label 0..count; 0 for label 0."""
    values = labels.view(-1)
    return torch.bincount(values[values > 0].long(), minlength=count + 1)


def border_labels(labels: torch.Tensor) -> torch.Tensor:
    """The labels found on the image border (with duplicates)."""
    return torch.cat([labels[0], labels[-1], labels[:, 0], labels[:, -1]])


def fill_mask_holes(mask: torch.Tensor, background: tuple[torch.Tensor, int] | None = None) -> torch.Tensor:
    """`components.fill_mask_holes` (``scipy.ndimage.binary_fill_holes``): background that no 4-connected path
    joins to the border becomes foreground (bool). `background`: ``label_components(~mask)``, if already made."""
    background, count = label_components(~mask) if background is None else background
    outside = torch.zeros(count + 1, dtype=torch.bool, device=mask.device)
    outside[border_labels(background).long()] = True
    outside[0] = False
    return mask | ~lookup(outside, background) & (background > 0)


def fill_small_holes(mask: torch.Tensor, max_area: float,
                     background: tuple[torch.Tensor, int] | None = None) -> tuple[torch.Tensor, bool]:
    """`components.fill_small_holes`: 4-connected background components of fewer than `max_area` pixels become
    foreground, those touching the border too; and whether an enclosed one of at least `max_area` remains.
    `background`: ``label_components(~mask)``, if already made."""
    background, count = label_components(~mask) if background is None else background
    small = label_areas(background, count) < max_area
    small[0] = False
    on_border = torch.zeros(count + 1, dtype=torch.bool, device=mask.device)
    on_border[border_labels(background).long()] = True
    holes_left = bool((~small[1:] & ~on_border[1:]).any())
    return mask | lookup(small, background), holes_left


def shifted(values: torch.Tensor, rows: int, columns: int, fill, out: torch.Tensor | None = None) -> torch.Tensor:
    """``out[r, c] = values[r - rows, c - columns]``, `fill` where that lies outside (in `out` if given)."""
    height, width = values.shape
    out = torch.full_like(values, fill) if out is None else out.fill_(fill)
    out[max(rows, 0):height + min(rows, 0), max(columns, 0):width + min(columns, 0)] = \
        values[max(-rows, 0):height - max(rows, 0), max(-columns, 0):width - max(columns, 0)]
    return out


def chamfer_distance(mask: torch.Tensor) -> torch.Tensor:
    """``cv2.distanceTransform(mask, cv2.DIST_L2, 5)``: float32, 0 on the background, the largest float32 in a
    mask without background. OpenCV sums the steps in float32 in its scan order, this in the order of the
    shortest path found: values may differ in the last bit. Three float32 images of work space."""
    distance = torch.where(mask, torch.inf, 0.0).to(torch.float32)
    step = torch.empty_like(distance)
    while True:
        before = distance.clone()
        for (rows, columns), weight in _CHAMFER_STEPS:  # in place: the relaxation reaches the same fixpoint
            torch.minimum(distance, shifted(distance, rows, columns, torch.inf, step).add_(weight), out=distance)
        if torch.equal(distance, before):
            break
    return distance.nan_to_num_(posinf=torch.finfo(torch.float32).max)


def squared_distance(mask: torch.Tensor) -> torch.Tensor:
    """The squared Euclidean distance of each foreground pixel to the nearest background pixel centre, 0 on the
    background: whole numbers in float32, exact up to 2^24 (distances of 4096 pixels). Their square roots are
    ``components.euclidean_distance``; take them on the host (torch's float32 root on a CPU may miss the last
    bit)."""
    along_rows = _distance_along_rows(mask)
    # a pixel's nearest background is no farther than the nearest in its row or column: no more rows away
    reach = int(torch.minimum(along_rows, _distance_along_rows(mask.t()).t()).max()) if mask.numel() else 0
    squared = along_rows.to(torch.float32).square_()
    del along_rows
    best = squared.clone()
    for offset in range(1, min(reach, mask.shape[0] - 1) + 1):
        step = float(offset * offset)
        torch.minimum(best[offset:], squared[:-offset] + step, out=best[offset:])
        torch.minimum(best[:-offset], squared[offset:] + step, out=best[:-offset])
    return best


def _distance_along_rows(mask: torch.Tensor, chunk_pixels: int = 1 << 22) -> torch.Tensor:
    """Each pixel's distance (int32) to the nearest background pixel in its row; about 2 (H + W) where none.
    Computed a few rows at a time (the scans need 40 bytes a pixel)."""
    height, width = mask.shape
    far = 2 * (height + width)
    columns = torch.arange(width, dtype=torch.int32, device=mask.device)
    distance = torch.empty((height, width), dtype=torch.int32, device=mask.device)
    rows_per_chunk = max(1, chunk_pixels // max(width, 1))
    for top in range(0, height, rows_per_chunk):
        part = mask[top:top + rows_per_chunk]
        before = torch.where(part, -far, columns).cummax(dim=1).values  # last background column at or before
        after = torch.where(part, far + width, columns).flip(1).cummin(dim=1).values.flip(1)
        distance[top:top + rows_per_chunk] = torch.minimum(columns - before, after - columns)
    return distance
