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

__all__ = ["border_labels", "chamfer_distance", "fill_mask_holes", "fill_small_holes", "label_components",
           "per_label", "shifted", "squared_distance"]

#: Label lookups through the pixels labels name, per round.
_JUMPS = 2
#: OpenCV's 5 x 5 chamfer steps (``cv2.DIST_L2``, mask 5): (row, column) offsets and float32 weights.
_CHAMFER_STEPS = ([((0, 1), 1.0), ((1, 0), 1.0), ((0, -1), 1.0), ((-1, 0), 1.0)]
                  + [((r, c), 1.4) for r in (-1, 1) for c in (-1, 1)]
                  + [((r, c), 2.1969) for r, c in ((1, 2), (2, 1), (-1, 2), (-2, 1), (1, -2), (2, -1), (-1, -2),
                                                   (-2, -1))])


def _run_minima(labels: torch.Tensor, mask: torch.Tensor, flat_fg: torch.Tensor) -> torch.Tensor:
    """Each foreground pixel's label replaced by the smallest label of its run along the rows of `labels`
    (contiguous H x W); `flat_fg` holds the flat indices of the foreground."""
    starts = mask.clone()
    starts[:, 1:] &= ~mask[:, :-1]
    run_of = torch.cumsum(starts.view(-1), 0, dtype=torch.int32).index_select(0, flat_fg).long()
    values = labels.view(-1).index_select(0, flat_fg)
    minima = torch.full((int(run_of[-1]) + 1,), torch.iinfo(labels.dtype).max, dtype=labels.dtype,
                        device=labels.device)
    minima.scatter_reduce_(0, run_of, values, "amin")
    result = labels.clone()
    result.view(-1)[flat_fg] = minima.index_select(0, run_of)
    return result


def label_components(mask: torch.Tensor) -> tuple[torch.Tensor, int]:
    """4-connected components of a bool H x W mask: int32 labels 1..n in the raster order of each component's
    first pixel (0 background), and n."""
    height, width = mask.shape
    mask = mask.contiguous()
    labels = torch.zeros((height, width), dtype=torch.int32, device=mask.device)
    flat_fg = mask.view(-1).nonzero().view(-1)
    if len(flat_fg) == 0:
        return labels, 0
    transposed_mask = mask.t().contiguous()
    flat_fg_transposed = transposed_mask.view(-1).nonzero().view(-1)
    own = flat_fg.to(torch.int32)
    current = torch.full((height, width), height * width, dtype=torch.int32, device=mask.device)
    current.view(-1)[flat_fg] = own
    while True:
        before = current
        current = _run_minima(current, mask, flat_fg)
        current = _run_minima(current.t().contiguous(), transposed_mask, flat_fg_transposed).t().contiguous()
        values = current.view(-1).index_select(0, flat_fg)
        for _ in range(_JUMPS):
            values = current.view(-1).index_select(0, values)
            current.view(-1)[flat_fg] = values
        if torch.equal(current, before):
            break
    roots = values == own  # each component's smallest flat index: its first pixel in raster order
    numbers = torch.cumsum(roots, 0, dtype=torch.int32)
    first_pixels = torch.zeros(height * width, dtype=torch.int32, device=mask.device)
    first_pixels[flat_fg[roots]] = numbers[roots]
    labels.view(-1)[flat_fg] = first_pixels.index_select(0, values)
    return labels, int(numbers[-1])


def per_label(labels: torch.Tensor, count: int, values: torch.Tensor, reduce: str, initial: float = 0,
              where: torch.Tensor | None = None) -> torch.Tensor:
    """``reduce`` ("sum", "amax" or "amin") of `values` over each label 0..count (in `values`' dtype), from
    `initial`; only over the pixels `where` is True, if given."""
    keep = labels.view(-1) if where is None else labels.view(-1)[where.view(-1)]
    chosen = values.reshape(-1) if where is None else values.reshape(-1)[where.view(-1)]
    result = torch.full((count + 1,), initial, dtype=values.dtype, device=values.device)
    return result.scatter_reduce_(0, keep.long(), chosen, reduce)


def border_labels(labels: torch.Tensor) -> torch.Tensor:
    """The labels found on the image border (with duplicates)."""
    return torch.cat([labels[0], labels[-1], labels[:, 0], labels[:, -1]])


def fill_mask_holes(mask: torch.Tensor) -> torch.Tensor:
    """`components.fill_mask_holes` (``scipy.ndimage.binary_fill_holes``): background that no 4-connected path
    joins to the border becomes foreground (bool)."""
    background, count = label_components(~mask)
    outside = torch.zeros(count + 1, dtype=torch.bool, device=mask.device)
    outside[border_labels(background).long()] = True
    outside[0] = False
    return mask | ~outside[background.long()] & (background > 0)


def fill_small_holes(mask: torch.Tensor, max_area: float) -> tuple[torch.Tensor, bool]:
    """`components.fill_small_holes`: 4-connected background components of fewer than `max_area` pixels become
    foreground, those touching the border too; and whether an enclosed one of at least `max_area` remains."""
    background, count = label_components(~mask)
    areas = torch.bincount(background.view(-1).long(), minlength=count + 1)
    small = areas < max_area
    small[0] = False
    on_border = torch.zeros(count + 1, dtype=torch.bool, device=mask.device)
    on_border[border_labels(background).long()] = True
    holes_left = bool((~small[1:] & ~on_border[1:]).any())
    return mask | small[background.long()], holes_left


def shifted(values: torch.Tensor, rows: int, columns: int, fill) -> torch.Tensor:
    """``out[r, c] = values[r - rows, c - columns]``, `fill` where that lies outside."""
    height, width = values.shape
    out = torch.full_like(values, fill)
    out[max(rows, 0):height + min(rows, 0), max(columns, 0):width + min(columns, 0)] = \
        values[max(-rows, 0):height - max(rows, 0), max(-columns, 0):width - max(columns, 0)]
    return out


def chamfer_distance(mask: torch.Tensor) -> torch.Tensor:
    """``cv2.distanceTransform(mask, cv2.DIST_L2, 5)``: float32, 0 on the background, the largest float32 in a
    mask without background. OpenCV sums the steps in float32 in its scan order, this in the order of the
    shortest path found: values may differ in the last bit."""
    unreached = torch.finfo(torch.float32).max
    distance = torch.where(mask, torch.inf, 0.0).to(torch.float32)
    while True:
        before = distance
        for (rows, columns), weight in _CHAMFER_STEPS:
            distance = torch.minimum(distance, shifted(distance, rows, columns, torch.inf) + weight)
        if torch.equal(distance, before):
            break
    return distance.nan_to_num_(posinf=unreached)


def squared_distance(mask: torch.Tensor) -> torch.Tensor:
    """The squared Euclidean distance of each foreground pixel to the nearest background pixel centre, 0 on the
    background: whole numbers in float32, exact up to 2^24 (distances of 4096 pixels). Their square roots are
    ``components.euclidean_distance``; take them on the host (torch's float32 root on a CPU may miss the last
    bit)."""
    along_rows = _distance_along_rows(mask)
    along_columns = _distance_along_rows(mask.t()).t()
    # a pixel's nearest background is no farther than the nearest in its row or column: no more rows away
    reach = int(torch.minimum(along_rows, along_columns).max()) if mask.numel() else 0
    squared = along_rows.to(torch.float32).square()
    best = squared.clone()
    for offset in range(1, min(reach, mask.shape[0] - 1) + 1):
        step = float(offset * offset)
        best[offset:] = torch.minimum(best[offset:], squared[:-offset] + step)
        best[:-offset] = torch.minimum(best[:-offset], squared[offset:] + step)
    return best


def _distance_along_rows(mask: torch.Tensor) -> torch.Tensor:
    """Each pixel's distance (int64) to the nearest background pixel in its row; about 2 (H + W) where none."""
    height, width = mask.shape
    columns = torch.arange(width, device=mask.device).expand(height, width)
    far = 2 * (height + width)
    before = torch.where(mask, -far, columns).cummax(dim=1).values  # last background column at or before
    after = torch.where(mask, far + width, columns).flip(1).cummin(dim=1).values.flip(1)
    return torch.minimum(columns - before, after - columns)
