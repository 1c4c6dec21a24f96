"""Overlapping tiles over large images and stitching of per-tile network outputs (numpy only).

Each tile keeps only its central region: adjacent tiles are cut in the middle of their overlap, so at least
``overlap // 2`` pixels of context are cropped from every tile side that is not on the image border. Tile
positions are multiples of the network's size divisor, and the image is (virtually) reflect-padded to a multiple
of it and, where the plan has a ``border``, by that many pixels beyond each of its sides, so that objects cut by
the image border are seen whole (the overlap-tile strategy of the U-Net paper). A network whose receptive-field
radius is at most ``overlap // 2`` and whose normalization is local (for example BatchNorm in eval mode, but not
GroupNorm) therefore gives the same stitched output as one run on the whole padded image, to float tolerance.

Outputs are written into one preallocated array as batches come back, so memory is bounded by the output plus
two batches of tiles, however large the image. The tile function may return its result lazily (any object that
``numpy.asarray`` turns into the output, such as a GPU result still being copied back): each batch's result is
read only after the next batch has been handed over, so the next batch's tiles are cut while the device works.
"""

import math
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm


@dataclass(frozen=True)
class Tile:
    """One tile of a `TilePlan`.

    Attributes
    ----------
    y, x : int
        Top-left corner in image coordinates: negative where the tile reaches into the mirrored border (``y +
        border`` and ``x + border`` are multiples of the plan's ``multiple``).
    keep : tuple of slice
        (rows, columns) of the tile output that are kept.
    dest : tuple of slice
        (rows, columns) of the image that the kept region fills.
    """

    y: int
    x: int
    keep: tuple
    dest: tuple


@dataclass(frozen=True)
class TilePlan:
    """Tiles that cover an image; the kept regions partition it exactly.

    Attributes
    ----------
    image_shape : tuple of int
        (H, W) of the image.
    tile_shape : tuple of int
        (h, w) of every tile.
    padded_shape : tuple of int
        (H + 2 border, W + 2 border) rounded up to the plan's multiple and to at least one tile (`plan_tiles`'s
        border); beyond the image it is reflected.
    tiles : tuple of Tile
    """

    image_shape: tuple
    tile_shape: tuple
    padded_shape: tuple
    tiles: tuple

    def contains(self, tile):
        """Whether a tile lies within the image (else it reaches into the reflected padding)."""
        return (min(tile.y, tile.x) >= 0 and tile.y + self.tile_shape[0] <= self.image_shape[0]
                and tile.x + self.tile_shape[1] <= self.image_shape[1])


#: Tile side and tiles per batch by device type, from ``python -m benchmarks.tile_defaults`` (BENCHMARKS.md). On a
#: CPU one 2048-pixel tile covers most microscope images without overlap (512-pixel tiles with the segmenter's
#: 128-pixel receptive-field overlap compute 2.4 pixels per pixel of a 2000 x 2000 image) and was 2.6 times
#: faster than 512 x 4, at 1.4 GB peak memory instead of 0.7. On CUDA the H200 measured the same speed from 512
#: to 2048 pixels and 4 to 64 tiles (host-bound); 1024 x 16 is in that range, to be confirmed by gpu_check.sh.
AUTOMATIC_TILING = {"cpu": (2048, 1), "cuda": (1024, 16)}


def automatic_tiling(device) -> tuple[int, int]:
    """(tile size, tiles per batch) for a device ("cpu", "cuda", "cuda:1" or a torch.device) when the user chose
    Automatic; another device type gets the CPU's."""
    kind = getattr(device, "type", str(device)).split(":")[0].lower()
    return AUTOMATIC_TILING.get(kind, AUTOMATIC_TILING["cpu"])


#: Tiles per batch for a tile size given in pixels when no batch size is given.
DEFAULT_BATCH_SIZE = 4
#: The smallest tile side a user may ask for: smaller tiles are mostly overlap.
MIN_TILE_SIZE = 64


def resolve_tiling(tile_size, batch_size, device) -> tuple[int, int]:
    """The (tile size, tiles per batch) to run with, from settings that may say "auto".

    Parameters
    ----------
    tile_size : int or "auto"
        A tile side of at least :data:`MIN_TILE_SIZE` pixels, or "auto" (any case) for the device's measured
        fastest pair (:func:`automatic_tiling`).
    batch_size : int or None
        Tiles per batch; None for the automatic batch with an automatic tile size, else :data:`DEFAULT_BATCH_SIZE`.
    device : str or torch.device
        The device the network runs on.

    Raises
    ------
    ValueError
        For a tile size that is neither "auto" nor a whole number of at least 64 pixels, or a batch size below 1.
    """
    if isinstance(tile_size, str) and tile_size.strip().lower() == "auto":
        tile, default_batch = automatic_tiling(device)
    elif isinstance(tile_size, (int, np.integer)) and not isinstance(tile_size, bool) and tile_size >= MIN_TILE_SIZE:
        tile, default_batch = int(tile_size), DEFAULT_BATCH_SIZE
    else:
        raise ValueError(f"tile size {tile_size!r} is neither 'auto' nor a whole number of at least "
                         f"{MIN_TILE_SIZE} pixels; use 'auto' (measured fastest for the device) or a larger tile.")
    batch = default_batch if batch_size is None else batch_size
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise ValueError(f"batch size {batch_size!r} is not a whole number of tiles of at least 1.")
    return tile, int(batch)


def _axis_plan(length, tile, overlap, multiple, border):
    """Return (tile length, padded length, [(start, keep_start, keep_stop)]) along one axis, in image coordinates
    (the padded axis starts `border` pixels before the image)."""
    padded = math.ceil((length + 2 * border) / multiple) * multiple
    tile = min(tile, padded)
    starts = [0]
    if padded > tile:
        step = (tile - overlap) // multiple * multiple
        if step <= 0:
            raise ValueError(
                f"overlap={overlap} leaves no room to step tiles of {tile} px aligned to multiples of {multiple}; "
                "use a smaller overlap or a larger tile_size."
            )
        starts = list(range(0, padded - tile, step)) + [padded - tile]
    cuts = [0] + [(nxt + prev + tile) // 2 for prev, nxt in zip(starts, starts[1:])] + [padded]
    spans = [(start - border, max(lo - border, 0), min(hi - border, length))
             for start, lo, hi in zip(starts, cuts, cuts[1:])]
    return tile, padded, [span for span in spans if span[1] < span[2]]


def plan_tiles(image_shape, tile_size=512, overlap=64, multiple=1, border=0):
    """Plan overlapping tiles that cover an image.

    Parameters
    ----------
    image_shape : tuple of int
        (H, W), or any shape whose last two entries are H and W.
    tile_size : int
        Largest tile side; rounded down to a multiple of `multiple`. Images smaller than a tile get one tile
        the size of the image rounded up to `multiple` (padded), not a full-size tile.
    overlap : int
        Pixels shared by adjacent tiles (rounded up so that steps are multiples of `multiple`); half of it is
        cropped from each interior tile side.
    multiple : int
        Tile positions and sizes are multiples of this (a network's ``size_divisor``).
    border : int
        Pixels of the image mirrored beyond each of its sides, which the border tiles see as context; tiles
        grow by twice this, so that an image of `tile_size` still takes one tile.

    Returns
    -------
    TilePlan

    Raises
    ------
    ValueError
        If the image is empty or the sizes are inconsistent.
    """
    height, width = (int(n) for n in image_shape[-2:])
    if height < 1 or width < 1:
        raise ValueError(f"image shape {tuple(image_shape)} has no pixels; pass a non-empty image.")
    if multiple < 1:
        raise ValueError(f"multiple={multiple} must be a positive integer.")
    if tile_size < multiple:
        raise ValueError(f"tile_size={tile_size} is smaller than the size divisor {multiple}; use a larger tile_size.")
    if overlap < 0 or border < 0:
        raise ValueError(f"overlap={overlap} or border={border} is negative; use 0 or more pixels.")
    tile = (tile_size + 2 * border) // multiple * multiple
    tile_h, padded_h, rows = _axis_plan(height, tile, overlap, multiple, border)
    tile_w, padded_w, cols = _axis_plan(width, tile, overlap, multiple, border)
    tiles = tuple(
        Tile(
            y=y,
            x=x,
            keep=(slice(y_lo - y, y_hi - y), slice(x_lo - x, x_hi - x)),
            dest=(slice(y_lo, y_hi), slice(x_lo, x_hi)),
        )
        for y, y_lo, y_hi in rows
        for x, x_lo, x_hi in cols
    )
    return TilePlan((height, width), (tile_h, tile_w), (padded_h, padded_w), tiles)


def _reflect(indices, length):
    """Map indices beyond [0, length) back into it by mirror reflection (numpy's ``mode="reflect"``)."""
    if length == 1:
        return np.zeros_like(indices)
    period = 2 * (length - 1)
    indices = np.mod(indices, period)
    return np.where(indices < length, indices, period - indices)


def tile_indices(plan, tile):
    """The image rows and columns a tile covers, reflected where it reaches past the image (int64 arrays)."""
    tile_h, tile_w = plan.tile_shape
    height, width = plan.image_shape
    return (_reflect(np.arange(tile.y, tile.y + tile_h), height),
            _reflect(np.arange(tile.x, tile.x + tile_w), width))


def extract_tile(image, plan, tile, out=None):
    """Copy one tile out of a C x H x W image, reflecting it where the tile reaches past the image.

    Parameters
    ----------
    image : numpy.ndarray
        C x H x W, with (H, W) equal to ``plan.image_shape``.
    plan : TilePlan
    tile : Tile
    out : numpy.ndarray, optional
        C x h x w array to write into.

    Returns
    -------
    numpy.ndarray
        C x h x w tile (``out`` when given).
    """
    if plan.contains(tile):
        tile_h, tile_w = plan.tile_shape
        region = image[:, tile.y : tile.y + tile_h, tile.x : tile.x + tile_w]
    else:
        rows, cols = tile_indices(plan, tile)
        region = image[:, rows[:, None], cols[None, :]]
    if out is None:
        return np.array(region, dtype=np.float32)
    out[...] = region
    return out


def iter_tile_outputs(fn, image, plan, batch_size=4, progress=False):
    """Run `fn` over the tiles of an image in batches and yield each tile's kept output.

    Parameters
    ----------
    fn : callable
        ``fn(batch)`` takes a float32 N x C x h x w array and returns an N x 1 x h x w array, or an object that
        ``numpy.asarray`` turns into one (read after the next batch has been passed to `fn`). Two batch buffers
        are used in turn, so `fn` must not keep a reference to a batch beyond the next call.
    image : numpy.ndarray
        C x H x W image, any real dtype (tiles are cast to float32).
    plan : TilePlan
        From `plan_tiles` for this image's (H, W).
    batch_size : int
        Tiles per call of `fn`.
    progress : bool
        Show a tqdm progress bar over the tiles.

    Yields
    ------
    dest : tuple of slice
        Image region (rows, columns) the values belong to.
    values : numpy.ndarray
        float32 array of that region's shape; valid until the next value is requested (copy it to keep it).

    Raises
    ------
    ValueError
        If the image does not match the plan, `batch_size` is not positive, or `fn` returns a wrong shape.
    """
    if image.ndim != 3 or tuple(image.shape[-2:]) != tuple(plan.image_shape):
        raise ValueError(
            f"image shape {image.shape} does not match the tile plan; a C x H x W array with (H, W) = "
            f"{plan.image_shape} is expected."
        )
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be at least 1.")
    tile_h, tile_w = plan.tile_shape
    buffers = np.empty((2, min(batch_size, len(plan.tiles)), image.shape[0], tile_h, tile_w), np.float32)
    pending = None
    with tqdm(total=len(plan.tiles), desc="tiles", unit="tile", disable=not progress) as bar:
        for number, first in enumerate(range(0, len(plan.tiles), batch_size)):
            batch_tiles = plan.tiles[first : first + batch_size]
            batch = buffers[number % 2, : len(batch_tiles)]
            for tile, slot in zip(batch_tiles, batch):
                extract_tile(image, plan, tile, out=slot)
            submitted = (batch_tiles, fn(batch))
            if pending is not None:
                yield from _kept_outputs(*pending, plan)
                bar.update(len(pending[0]))
            pending = submitted
        if pending is not None:
            yield from _kept_outputs(*pending, plan)
            bar.update(len(pending[0]))


def _kept_outputs(batch_tiles, result, plan):
    """Yield (dest, kept values) of each tile of one batch's result, after checking its shape."""
    result = np.asarray(result)
    expected = (len(batch_tiles), 1) + tuple(plan.tile_shape)
    if result.shape != expected:
        raise ValueError(
            f"the tile function returned shape {result.shape} for a batch of {len(batch_tiles)} tiles of "
            f"{plan.tile_shape}; it must return {expected}."
        )
    for tile, values in zip(batch_tiles, result[:, 0]):
        yield tile.dest, values[tile.keep].astype(np.float32, copy=False)


def stitch(fn, image, plan, batch_size=4, progress=False):
    """Run `fn` tile by tile over a C x H x W image and stitch the kept regions into one H x W float32 map.

    Parameters and errors are those of `iter_tile_outputs`.

    Returns
    -------
    numpy.ndarray
        float32 H x W.
    """
    out = np.empty(plan.image_shape, np.float32)
    for dest, values in iter_tile_outputs(fn, image, plan, batch_size=batch_size, progress=progress):
        out[dest] = values
    return out
