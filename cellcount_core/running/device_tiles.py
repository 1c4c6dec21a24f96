"""Tiles cut, normalized, run and stitched in the memory of the network's device: the image is uploaded once, and
only the probability map (float32 or float16), its thresholded mask or a density count comes back.

The torch counterpart of the host path (`tiling.iter_tile_outputs` with `normalization.percentile_range`,
`noise_sigma` and `scale_to_range`): the same tile plan, the same percentiles (numpy's linear interpolation
between exact order statistics of the same strided sample), the same noise floor and the same central-region
stitching, so both paths give the same map to float tolerance. `inference` takes it for the device types in
`DEVICE_TYPES`, where host-side tiling bounded the speed (issue 12: 170 MP/s for `predict_probability` on an
H200 against 700 MP/s for the network alone). Every function also runs on CPU tensors, which is how it is tested.
"""

import math
import warnings

import numpy as np
import torch
from tqdm import tqdm

from cellcount_core.images.normalization import (CLIP_RANGE, PERCENTILE_SAMPLE_PIXELS, floor_range_on_noise,
                                                 to_rgb)
from cellcount_core.running import gpu
from cellcount_core.running.tiling import tile_indices

#: Device types whose images stay on the device. The CPU keeps the numpy path: there the network dominates, and
#: the torch path was as fast with one thread and 0.6 times as fast with two on a busy 2-core machine (torch's
#: small parallel operations and sorts; BENCHMARKS.md section 4).
DEVICE_TYPES = ("cuda",)

#: Unsigned dtypes that torch cannot compute with on every device: uploaded as the bits of their signed twin and
#: widened on the device (dtype uploaded, dtype computed with, mask of the original bits).
_WIDENED = {
    np.dtype(np.uint16): (np.int16, torch.int32, 0xFFFF),
    np.dtype(np.uint32): (np.int32, torch.int64, 0xFFFFFFFF),
}

# Immerkaer's noise kernel (`normalization._NOISE_KERNEL`) as (row, column, weight) of its nine taps.
_NOISE_TAPS = [(r, c, w) for r, row in enumerate([[1, -2, 1], [-2, 4, -2], [1, -2, 1]]) for c, w in enumerate(row)]


def keeps_image(device, image_shape):
    """Whether an image of this (H, W[, C]) shape runs with `device_tiles` on `device`: a device type in
    `DEVICE_TYPES` whose memory share (`gpu.available_memory`) holds twice 16 bytes a value (the image at up to
    8 bytes, a float32 gray copy, the float32 map), so that half stays for the network's batches."""
    if device.type not in DEVICE_TYPES:
        return False
    available = gpu.available_memory(device)
    resident = 16 * math.prod(image_shape)
    return available is None or resident <= available / 2


def upload_image(image, device):
    """Copy an image to a device once, as H x W or H x W x 3 (alpha dropped).

    bool becomes uint8; uint16 and uint32 travel as the bits of int16 and int32 and are widened to int32 and
    int64 on the device; uint64 is converted to float64 on the host. Values are not changed otherwise.

    Raises
    ------
    ValueError
        For an empty image, one of an unsupported shape (as `normalization.to_rgb`) or a non-real dtype.
    """
    array = np.asarray(image)
    rgb = to_rgb(array)  # checks the shape
    array = array if array.ndim == 2 else rgb
    if array.dtype == bool:
        array = array.view(np.uint8)
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise ValueError(f"image has dtype {array.dtype}; a real numeric image is expected.")
    if array.dtype == np.uint64:
        array = array.astype(np.float64)
    array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("="))
    sent, widened, bits = _WIDENED.get(array.dtype, (None, None, None))
    with warnings.catch_warnings():  # read-only arrays (memory maps, views) are only read
        warnings.simplefilter("ignore", UserWarning)
        tensor = torch.from_numpy(array if sent is None else array.view(sent)).to(device)
    return tensor if widened is None else tensor.to(widened).bitwise_and_(bits)


def model_channels(image, channels):
    """The C x H x W input of a gray (``channels=1``) or colour (3) model from an uploaded image, as
    `inference` builds it on the host: colour averaged to float32 gray, gray repeated into three channels."""
    if channels == 3:
        return image.expand(3, *image.shape) if image.ndim == 2 else image.permute(2, 0, 1)
    return image[None] if image.ndim == 2 else _mean_of_three(*image.unbind(dim=-1))[None]


def gray_of(inputs):
    """The gray image whose noise the floor is measured on: the channel, or the float32 mean of three."""
    return inputs[0] if inputs.shape[0] == 1 else _mean_of_three(*inputs)


def _mean_of_three(first, second, third):
    """numpy's float32 mean of three channels: summed in order, then divided by 3."""
    as_float = [channel.to(torch.float32) for channel in (first, second, third)]
    return (as_float[0] + as_float[1]).add_(as_float[2]).div_(3)


def _check_finite(inputs):
    """Raise ValueError for NaN or infinite values, as `normalization.percentile_range` does."""
    if inputs.is_floating_point() and not bool(torch.isfinite(inputs.min()) & torch.isfinite(inputs.max())):
        raise ValueError("image contains NaN or infinite values; replace them (for example with numpy.nan_to_num) "
                         "before normalizing.")


def _linear_percentile(ordered, q):
    """numpy's default ("linear") percentile `q` of the sorted float64 values `ordered`, in float64."""
    position = (ordered.numel() - 1) * (q / 100)
    below = min(math.floor(position), ordered.numel() - 1)
    a, b = float(ordered[below]), float(ordered[min(below + 1, ordered.numel() - 1)])
    t = position - below
    return b - (b - a) * (1 - t) if t >= 0.5 else a + (b - a) * t  # numpy's _lerp, exact at both ends


def percentile_range(inputs, low=1.0, high=99.8):
    """`normalization.percentile_range` of a C x H x W tensor on its device: equal values.

    Percentiles of more than ``PERCENTILE_SAMPLE_PIXELS`` pixels come from the same strided subsample, sorted
    exactly (``torch.quantile`` refuses inputs above 16 M values); ``hi`` is the maximum where they coincide.

    Raises
    ------
    ValueError
        For percentiles out of order, or NaN or infinite values.
    """
    if not 0.0 <= low < high <= 100.0:
        raise ValueError(f"percentiles low={low}, high={high} are invalid; use 0 <= low < high <= 100.")
    _check_finite(inputs)
    pixels = inputs.shape[-2] * inputs.shape[-1]
    stride = 1 if pixels <= PERCENTILE_SAMPLE_PIXELS else math.ceil(math.sqrt(pixels / PERCENTILE_SAMPLE_PIXELS))
    ordered = torch.sort(inputs[:, ::stride, ::stride].reshape(-1).to(torch.float64)).values
    lo, hi = _linear_percentile(ordered, low), _linear_percentile(ordered, high)
    if hi <= lo:
        hi = float(inputs.max())
    return lo, hi


def _median(values):
    """numpy's median of a float32 tensor: the middle value, or the float32 mean of the two middle ones."""
    ordered = torch.sort(values.reshape(-1)).values
    middle = ordered.numel() // 2
    if ordered.numel() % 2:
        return float(ordered[middle])
    return float((ordered[middle - 1] + ordered[middle]) / 2)


def noise_sigma(gray):
    """`normalization.noise_sigma` of an H x W tensor on its device (equal for integer images; float images may
    differ in the last bits, from the order of the filter's sums)."""
    side = int(math.sqrt(PERCENTILE_SAMPLE_PIXELS))
    top, left = max(0, (gray.shape[0] - side) // 2), max(0, (gray.shape[1] - side) // 2)
    window = gray[top:top + side, left:left + side].to(torch.float32)
    steps = torch.diff(torch.unique(window))
    floor = 0.5 * float(steps.min()) if steps.numel() else 0.0
    if min(window.shape) < 3:
        return floor
    height, width = window.shape[0] - 2, window.shape[1] - 2
    response = torch.zeros((height, width), dtype=torch.float32, device=window.device)
    for row, column, weight in _NOISE_TAPS:
        response.add_(window[row:row + height, column:column + width], alpha=weight)
    return max(_median(response.abs_()) / (0.6745 * 6.0), floor)


def image_input(image, device, channels=1, low=1.0, high=99.8, min_range_over_noise=None):
    """Upload an image and prepare it for a model, as `inference` does on the host.

    Parameters
    ----------
    image : array_like
        H x W, H x W x 3 or H x W x 4, any real dtype.
    device : torch.device
    channels : int
        The model's input channels (1 gray, 3 colour).
    low, high, min_range_over_noise
        The model card's percentile normalization (see `normalization.percentile_range` and
        `floor_range_on_noise`).

    Returns
    -------
    inputs : torch.Tensor
        C x H x W on the device, in the image's dtype (widened, see `upload_image`) or float32 for averaged colour.
    normalize : callable
        Scales a float32 batch of its tiles in place with the whole image's range, as `scale_to_range`.
    """
    inputs = model_channels(upload_image(image, device), channels)
    lo, hi = percentile_range(inputs, low, high)
    if min_range_over_noise is not None:
        lo, hi = floor_range_on_noise(lo, hi, noise_sigma(gray_of(inputs)), min_range_over_noise)
    return inputs, lambda batch: scale_to_range(batch, lo, hi)


def scale_to_range(batch, lo, hi, clip=CLIP_RANGE):
    """`normalization.scale_to_range` on a float32 tensor in place (the same float32 operations)."""
    if hi <= lo:
        return batch.zero_()
    batch.sub_(float(np.float32(lo))).mul_(float(np.float32(1.0 / (hi - lo))))
    return batch if clip is None else batch.clamp_(*clip)


def _tile(inputs, plan, tile):
    """The C x h x w region of a tile, reflected past the image's border as `tiling.extract_tile` does."""
    tile_h, tile_w = plan.tile_shape
    if plan.contains(tile):
        return inputs[:, tile.y:tile.y + tile_h, tile.x:tile.x + tile_w]
    rows, cols = (torch.from_numpy(index).to(inputs.device) for index in tile_indices(plan, tile))
    return inputs.index_select(1, rows).index_select(2, cols)


def iter_tile_outputs(forward, inputs, plan, prepare=None, batch_size=4, progress=False):
    """Run `forward` over the tiles of a C x H x W tensor in batches and yield each tile's kept output.

    Parameters
    ----------
    forward : callable
        ``forward(batch)``: a float32 N x C x h x w tensor (channels-last) on the inputs' device -> an
        N x 1 x h x w float32 tensor there. The batch buffer is reused for the next batch.
    inputs : torch.Tensor
        C x H x W, any real dtype (tiles are cast to float32).
    plan : TilePlan
        From `tiling.plan_tiles` for the inputs' (H, W).
    prepare : callable, optional
        Transforms a batch in place before `forward` (normalization).
    batch_size : int
    progress : bool
        Show a tqdm progress bar over the tiles.

    Yields
    ------
    dest : tuple of slice
        Image region (rows, columns) the values belong to.
    values : torch.Tensor
        float32 tensor of that region's shape, on the device.

    Raises
    ------
    ValueError
        As `tiling.iter_tile_outputs`.
    """
    if inputs.ndim != 3 or tuple(inputs.shape[-2:]) != tuple(plan.image_shape):
        raise ValueError(f"image shape {tuple(inputs.shape)} does not match the tile plan; a C x H x W tensor with "
                         f"(H, W) = {plan.image_shape} is expected.")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be at least 1.")
    shape = (min(batch_size, len(plan.tiles)), inputs.shape[0]) + tuple(plan.tile_shape)
    buffer = torch.empty(shape, dtype=torch.float32, device=inputs.device, memory_format=torch.channels_last)
    for first in tqdm(range(0, len(plan.tiles), batch_size), desc="tiles", unit="batch", disable=not progress):
        batch_tiles = plan.tiles[first:first + batch_size]
        batch = buffer[:len(batch_tiles)]
        for tile, slot in zip(batch_tiles, batch):
            slot.copy_(_tile(inputs, plan, tile))
        output = forward(batch if prepare is None else prepare(batch))
        expected = (len(batch_tiles), 1) + tuple(plan.tile_shape)
        if tuple(output.shape) != expected:
            raise ValueError(f"the tile function returned shape {tuple(output.shape)} for a batch of "
                             f"{len(batch_tiles)} tiles of {plan.tile_shape}; it must return {expected}.")
        for tile, values in zip(batch_tiles, output[:, 0]):
            yield tile.dest, values[tile.keep]


def stitch(forward, inputs, plan, prepare=None, batch_size=4, progress=False):
    """Stitch the kept tile outputs into one H x W float32 tensor on the device (see `iter_tile_outputs`)."""
    out = torch.empty(tuple(plan.image_shape), dtype=torch.float32, device=inputs.device)
    for dest, values in iter_tile_outputs(forward, inputs, plan, prepare, batch_size, progress):
        out[dest] = values
    return out


def to_host(probability, threshold=None, dtype=np.float32):
    """Bring a map back to the host: as `dtype` (float32 or float16), or with a `threshold` as a bool mask
    (one byte a pixel; True where ``probability > threshold``, as `thresholds.apply_threshold`)."""
    if threshold is not None:
        return (probability > threshold).to(torch.uint8).cpu().numpy().view(bool)
    torch_dtype = {np.dtype(np.float32): torch.float32, np.dtype(np.float16): torch.float16}.get(np.dtype(dtype))
    if torch_dtype is None:
        raise ValueError(f"dtype={dtype!r}: a probability map comes back as float32 or float16.")
    return probability.to(torch_dtype).cpu().numpy()
