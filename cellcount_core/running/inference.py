"""Running model files on images: device choice, a per-process model cache, tiled probability maps and counts."""

import contextlib
import functools
import threading
from pathlib import Path

import cv2
import numpy as np
import torch

from cellcount_core.running import device_tiles, gpu
from cellcount_core.running.cpu_model import cpu_model
from cellcount_core.models.bundled import DEFAULT_COUNTER, DEFAULT_SEGMENTER, resolve_model
from cellcount_core.models.model_files import load_model, model_paths
from cellcount_core.models.receptive_field import context_overlap
from cellcount_core.running.cell_scale import (CellScale, aimed_at_band, cell_scale, counter_enlargement,
                                               density_diameter, diameter_in_probability, is_below_band, is_specks,
                                               predict_at_cell_scale, resize_image, scale_factor)
from cellcount_core.images.normalization import (floor_range_on_noise, noise_sigma, percentile_range, scale_to_range,
                                                  to_grayscale, to_rgb)
from cellcount_core.running.empty_fields import is_featureless_field, without_featureless_objects
from cellcount_core.running.tiling import iter_tile_outputs, plan_tiles, resolve_tiling, stitch

DEVICE_CHOICES = ("Auto", "CPU", "GPU")

_CACHE = {}
_CACHE_LOCK = threading.Lock()


class InferenceError(RuntimeError):
    """A model cannot be run as asked (wrong device, wrong kind of model, unsupported card)."""


def resolve_device(name="Auto"):
    """Turn a device choice into a torch device.

    Parameters
    ----------
    name : str or torch.device
        "Auto" (CUDA if available, else CPU), "CPU", "GPU" (the current CUDA device), or a torch device
        string such as "cuda:1"; case-insensitive.

    Returns
    -------
    torch.device

    Raises
    ------
    InferenceError
        If the name is unknown, or a GPU is asked for and CUDA is not available.
    """
    if isinstance(name, torch.device):
        name = str(name)
    key = str(name).strip().lower()
    if key == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if key == "cpu":
        return torch.device("cpu")
    if key == "gpu":
        key = "cuda"
    try:
        device = torch.device(key)
    except RuntimeError:
        device = None
    if device is None or device.type != "cuda":
        raise InferenceError(f"Unknown device {name!r}; choose one of {', '.join(DEVICE_CHOICES)} or e.g. 'cuda:0'.")
    if not torch.cuda.is_available():
        raise InferenceError(
            f"Device {name!r} needs a CUDA GPU, but this torch build ({torch.__version__}) sees none; choose "
            "Auto or CPU, or install a CUDA build of torch."
        )
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise InferenceError(
            f"Device {name!r} does not exist: {torch.cuda.device_count()} CUDA device(s) are visible; "
            "choose Auto, CPU, GPU or an index below that count."
        )
    return device


def _file_stamp(path):
    """Modification time and size of a model's card and weights, to notice a rewritten model."""
    stats = [p.stat() for p in model_paths(path) if p.is_file()]
    return tuple((s.st_mtime_ns, s.st_size) for s in stats)


def get_model(name_or_path, device="Auto", default=DEFAULT_SEGMENTER):
    """Load a model once per process and device, reusing it until its file changes.

    Parameters
    ----------
    name_or_path : str or pathlib.Path
        Bundled model name, "default", or a model file path (see `bundled.resolve_model`).
    device : str or torch.device
        See `resolve_device`.
    default : str
        The bundled model that "default" stands for.

    Returns
    -------
    model : torch.nn.Module
        In eval mode, on the device, in channels-last layout (1.2 to 2.2 times faster on CPU,
        benchmarks/memory_layout.py; tensor cores on GPU); float32 on a GPU, and on a CPU in the form
        `cpu_model.cpu_model` gives it (batch norms folded, bf16 where the CPU has it natively). Shared between
        callers: do not modify it.
    card : ModelCard

    Raises
    ------
    InferenceError
        For a bad device. Errors of `resolve_model` and `load_model` (missing or corrupt files) pass through.
    ValueError
        For a CUDA device when ``CELLCOUNT_GPU_MEMORY_FRACTION`` is not a number in (0, 1].
    """
    path = Path(resolve_model(name_or_path, default=default)).resolve()
    torch_device = resolve_device(device)
    gpu.prepare_device(torch_device)
    key = (str(model_paths(path)[0]), str(torch_device))
    with _CACHE_LOCK:
        stamp = _file_stamp(path)
        cached = _CACHE.get(key)
        if cached is None or cached[0] != stamp:
            model, card = load_model(path, torch_device)
            model = cpu_model(model) if torch_device.type == "cpu" else model.to(memory_format=torch.channels_last)
            cached = _CACHE[key] = (stamp, model, card)
        return cached[1], cached[2]


def clear_model_cache():
    """Forget every cached model and release cached CUDA memory."""
    with _CACHE_LOCK:
        _CACHE.clear()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _require_kind(card, kind, model, function):
    """Raise InferenceError unless the model's card is of `kind`."""
    if card.kind != kind:
        raise InferenceError(
            f"Model {model!r} is a {card.kind}, but {function} needs a {kind}; choose a {kind} model file."
        )


def _percentile_settings(card):
    """(low, high, min_range_over_noise or None) of a card's percentile normalization; InferenceError for others."""
    normalization = card.normalization
    if normalization.get("method") != "percentile":
        raise InferenceError(
            f"Model card {card.name!r} asks for normalization {normalization!r}; only "
            "{'method': 'percentile', 'low': ..., 'high': ...} is supported. Re-save the model with it."
        )
    return normalization.get("low", 1.0), normalization.get("high", 99.8), normalization.get("min_range_over_noise")


def _image_input(image, card, noise=None):
    """The model input as a C x H x W view of the image, and a function that normalizes a batch of its tiles.

    Gray, or RGB for ``in_channels=3`` models; the percentiles are those of the whole image, so normalizing
    tile by tile gives the same values as `normalize_percentile` without a normalized copy of the image. A
    card's ``min_range_over_noise`` keeps the range at least that many noise standard deviations wide, so
    that an empty field's noise is not stretched to full contrast (`noise`: the gray image's noise standard
    deviation, where already measured).
    """
    low, high, min_range_over_noise = _percentile_settings(card)
    image = to_rgb(image) if card.params.get("in_channels", 1) == 3 else to_grayscale(image)
    lo, hi = percentile_range(image, low, high)
    if min_range_over_noise is not None:
        gray = image if image.ndim == 2 else image.mean(axis=-1, dtype=np.float32)
        lo, hi = floor_range_on_noise(lo, hi, noise_sigma(gray) if noise is None else noise, min_range_over_noise)
    inputs = image[None] if image.ndim == 2 else np.moveaxis(image, -1, 0)
    return inputs, lambda batch: scale_to_range(batch, lo, hi)


def _mask_input(mask):
    """The mask as a 1 x H x W view, and a function that binarizes a float32 batch in place (non-zero -> 1)."""
    mask = to_grayscale(mask)
    if np.issubdtype(mask.dtype, np.floating) and np.isnan(mask.min()):
        raise ValueError("mask contains NaN values; pass a boolean or integer mask (0 is background).")

    def binarize(batch):
        np.greater(batch, 0, out=batch, casting="unsafe")
        return batch

    return mask[None], binarize


def _forward(model, activation, autocast_dtype, inputs):
    """The network's float32 output for a tensor on its device (autocast to `autocast_dtype` when given)."""
    autocast = (torch.autocast("cuda", dtype=autocast_dtype) if autocast_dtype is not None
                else contextlib.nullcontext())
    with torch.inference_mode():
        with autocast:
            output = model(inputs)
        output = output.float()
        return activation(output) if activation is not None else output


def _autocast_dtype(device):
    """bf16 on CUDA (fp16 where bf16 is not supported), None (float32) elsewhere."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _tile_function(model, activation=None, prepare=None):
    """Wrap a network as ``fn(N x C x h x w float32 numpy) -> N x 1 x h x w float32`` (numpy or lazy).

    `prepare` first transforms the batch in place (normalization). The network runs under
    ``torch.inference_mode``, with bf16 autocast on CUDA (fp16 where bf16 is not supported) and asynchronous
    copies (`gpu.CudaBatchRunner`); `activation` is applied to its float32 output.
    """
    device = next(model.parameters()).device
    forward = functools.partial(_forward, model, activation, _autocast_dtype(device))
    runner = gpu.CudaBatchRunner(forward, device) if device.type == "cuda" else None

    def run(batch):
        if prepare is not None:
            batch = prepare(batch)
        if runner is not None:
            return runner(batch)
        return forward(torch.from_numpy(batch).contiguous(memory_format=torch.channels_last)).numpy()

    return run


#: Pixels of the image mirrored beyond each of its sides before a segmenter sees it (`tiling.plan_tiles`'s
#: ``border``), so that nuclei cut by the image border are seen whole rather than against zero padding. With the
#: bundled segmenter 8 px found 5 more of the StarDist example's 125 nuclei (111 -> 116) and raised the DSB2018
#: validation F1 from 0.927 to 0.931, at a cost on BBBC005 (docs/RESULTS.md, "Mirrored image borders").
SEGMENTER_BORDER = 8
#: The same for a density counter (its map is summed over the image's own pixels only). Measured on counter v7 at
#: the images' own size: a nucleus touching the image border gets 0.58 of a unit of mass against zero padding
#: (0.96 inside the image), and mirrored by 16 px the DSB2018 validation MAPE fell from 12.1 to 10.6 %
#: (docs/RESULTS.md, "The counter's mirrored border").
COUNTER_BORDER = 16


def _overlap(network, inputs, overlap, tile_size):
    """The tile overlap: as given, or (None) the one that covers the network's receptive field."""
    return context_overlap(network, inputs.shape[0], tile_size) if overlap is None else overlap


def predict_probability(image, model="default", device="Auto", tile_size="auto", overlap=None, batch_size=None,
                        progress=False):
    """Probability map of a segmentation model over an image of any size.

    The image is reduced to gray (or to RGB for models with 3 input channels), mirrored by `SEGMENTER_BORDER`
    pixels beyond its sides, cut into overlapping tiles (see `tiling`), normalized tile by tile with the whole
    image's percentiles as the model card says, run in batches and stitched into one preallocated map: beside the
    image and the map, memory holds two batches of tiles and the network's activations, however large the image.
    On CUDA the image is uploaded once and all of this happens in GPU memory (`device_tiles`; the host path where
    the memory share cannot hold the image), and the cached GPU memory is released afterwards.

    Parameters
    ----------
    image : array_like
        H x W, H x W x 3 or H x W x 4, any real dtype.
    model : str or pathlib.Path
        Bundled model name, "default" (the bundled nuclei segmenter) or a model file path.
    device : str
        "Auto", "CPU", "GPU" or e.g. "cuda:1"; see `resolve_device`.
    tile_size : int or "auto"
        Tile side in pixels (at least 64), or "auto" (the default): the tile size and batch size measured fastest
        for the device (`tiling.automatic_tiling`: one 2048-pixel tile at a time on a CPU).
    overlap : int
        Tile overlap in pixels; half of it is cropped from each interior tile side. The default (None) covers the
        network's receptive field up to half the tile (`receptive_field.context_overlap`), so the map does not
        depend on the tile size (from 256 pixels for the bundled segmenter, 384 for the bundled counter).
    batch_size : int
        Tiles per network call; None (the default) for the automatic one with ``tile_size="auto"``, else 4.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    numpy.ndarray
        float32 H x W in [0, 1].

    Raises
    ------
    ValueError
        For an empty image, one of an unsupported shape, or one with NaN or infinite values.
    InferenceError
        For a model that is not a segmenter, or a bad device.
    """
    network, card = get_model(model, device, default=DEFAULT_SEGMENTER)
    _require_kind(card, "segmenter", model, "predict_probability")
    tile_size, batch_size = resolve_tiling(tile_size, batch_size, next(network.parameters()).device)
    torch_device = next(network.parameters()).device
    try:
        if device_tiles.keeps_image(torch_device, np.shape(image)):
            return _probability_on_device(image, network, card, tile_size, overlap, batch_size, progress)
        inputs, normalize = _image_input(image, card)
        plan = plan_tiles(inputs.shape, tile_size, _overlap(network, inputs, overlap, tile_size),
                          multiple=network.size_divisor, border=SEGMENTER_BORDER)
        run = _tile_function(network, torch.sigmoid, normalize)
        return stitch(run, inputs, plan, batch_size=batch_size, progress=progress)
    finally:
        gpu.release_cached_memory(torch_device)


def _tiles_on_device(image, network, card, tile_size, overlap, activation, border=0):
    """(inputs, plan, normalize, forward) of an image uploaded to the network's device (`device_tiles`), tiled with a
    mirrored `border`."""
    device = next(network.parameters()).device
    inputs, normalize = device_tiles.image_input(image, device, card.params.get("in_channels", 1),
                                                 *_percentile_settings(card))
    plan = plan_tiles(inputs.shape, tile_size, _overlap(network, inputs, overlap, tile_size),
                      multiple=network.size_divisor, border=border)
    return inputs, plan, normalize, functools.partial(_forward, network, activation, _autocast_dtype(device))


def _probability_on_device(image, network, card, tile_size, overlap, batch_size, progress):
    """`predict_probability` with the image uploaded once and tiled, run and stitched on the network's device."""
    inputs, plan, normalize, forward = _tiles_on_device(image, network, card, tile_size, overlap, torch.sigmoid,
                                                        SEGMENTER_BORDER)
    return device_tiles.to_host(device_tiles.stitch(forward, inputs, plan, normalize, batch_size, progress))


def _count_on_device(image, network, card, tile_size, overlap, batch_size, progress):
    """The sum and the sum of squares of a density counter's map of an image (`_density_sums`), with the image
    uploaded once: the tiles' kept densities are summed on the device, and two numbers come back."""
    inputs, plan, normalize, forward = _tiles_on_device(image, network, card, tile_size, overlap, None,
                                                        COUNTER_BORDER)
    tiles = device_tiles.iter_tile_outputs(forward, inputs, plan, normalize, batch_size, progress)
    sums = sum(torch.stack([values.sum(dtype=torch.float64), values.double().square().sum()]) for _, values in tiles)
    return float(sums[0]), float(sums[1])


def predict_count(image_or_mask, model=DEFAULT_COUNTER, device="Auto", tile_size="auto", overlap=None,
                  batch_size=None, progress=False, *, noise=None):
    """Number of cells that a counting model sees in a mask or an image.

    Models whose card has ``input == "mask"`` get the input binarized (non-zero is foreground); ``"image"``
    models get it normalized as the card says. A counter with a fixed ``input_size`` (``dcc_counter``) runs
    once on the input resized to that size (``cv2.INTER_AREA``); a density counter runs tiled on the input
    mirrored by `COUNTER_BORDER` pixels beyond its sides, and the sum of its stitched density map over the input's
    own pixels is the count (on CUDA, for images, summed in GPU memory: `device_tiles`). Counts are clipped at 0
    and multiplied by the card's ``count_scale`` (its calibration on training images).

    Parameters
    ----------
    image_or_mask : array_like
        H x W (or H x W x 3/4) mask or image.
    model : str or pathlib.Path
        Bundled model name ("default" is the bundled nuclei counter) or a model file path.
    device, tile_size, overlap, batch_size, progress
        As in `predict_probability` (tiling applies to density counters only).
    noise : float, optional
        The gray image's `normalization.noise_sigma`, where the caller has measured it, so that the host path
        does not measure it again (the CUDA path measures it on the device).

    Returns
    -------
    float

    Raises
    ------
    ValueError
        For an empty input, one of an unsupported shape, or one with NaN or infinite values.
    InferenceError
        For a model that is not a counter, or a bad device.
    """
    _, card = get_model(model, device, default=DEFAULT_COUNTER)
    return _calibrated(_density_sums(image_or_mask, model, device, tile_size, overlap, batch_size, progress, noise)[0],
                       card)


def _calibrated(total: float, card) -> float:
    """A counter's raw sum as its count: clipped at 0, times the card's ``count_scale``."""
    return max(total, 0.0) * card.count_scale


def _density_sums(image_or_mask, model, device, tile_size, overlap, batch_size, progress, noise=None):
    """`predict_count`'s count before clipping, and the sum of squares of a density counter's map (0.0 for a
    counter of a fixed input size), from which `cell_scale.density_diameter` reads the cell size."""
    network, card = get_model(model, device, default=DEFAULT_COUNTER)
    _require_kind(card, "counter", model, "predict_count")
    torch_device = next(network.parameters()).device
    tile_size, batch_size = resolve_tiling(tile_size, batch_size, torch_device)
    if card.input == "image" and not card.input_size and device_tiles.keeps_image(torch_device,
                                                                                  np.shape(image_or_mask)):
        try:
            return _count_on_device(image_or_mask, network, card, tile_size, overlap, batch_size, progress)
        finally:
            gpu.release_cached_memory(torch_device)
    inputs, prepare = _mask_input(image_or_mask) if card.input == "mask" else _image_input(image_or_mask, card, noise)
    try:
        if card.input_size:
            height, width = card.input_size
            resized = np.stack([
                cv2.resize(prepare(channel.astype(np.float32)), (width, height), interpolation=cv2.INTER_AREA)
                for channel in inputs
            ])
            return float(np.asarray(_tile_function(network)(resized[None])).sum()), 0.0
        plan = plan_tiles(inputs.shape, tile_size, _overlap(network, inputs, overlap, tile_size),
                          multiple=network.size_divisor, border=COUNTER_BORDER)
        tiles = iter_tile_outputs(_tile_function(network, prepare=prepare), inputs, plan,
                                  batch_size=batch_size, progress=progress)
        total = squares = 0.0
        for _, values in tiles:
            values = values.astype(np.float64)
            total += float(values.sum())
            squares += float(np.square(values).sum())
        return total, squares
    finally:
        gpu.release_cached_memory(torch_device)


def parse_cell_size(cell_size):
    """``"auto"`` -> None (estimate), ``"off"`` -> False (never resize), a positive number -> that diameter.

    Raises
    ------
    ValueError
        For anything else, naming the accepted values.
    """
    if isinstance(cell_size, str) and cell_size.strip().lower() in ("auto", "off"):
        return None if cell_size.strip().lower() == "auto" else False
    try:
        diameter = float(cell_size)
    except (TypeError, ValueError):
        diameter = float("nan")
    if not diameter > 0 or not np.isfinite(diameter):
        raise ValueError(f"cell size {cell_size!r} is not 'auto', 'off' or a positive cell diameter in pixels.")
    return diameter


def _segmenter_runner(model, device, tile_size, overlap, batch_size, progress):
    """``run(image) -> probability`` with these settings, and the segmenter's card."""
    network, card = get_model(model, device, default=DEFAULT_SEGMENTER)
    _require_kind(card, "segmenter", model, "predict_probability")
    run = functools.partial(predict_probability, model=model, device=device, tile_size=tile_size,
                            overlap=overlap, batch_size=batch_size, progress=progress)
    return run, card


def predict_probability_at_cell_scale(image, model="default", device="Auto", tile_size="auto", overlap=None,
                                      batch_size=None, progress=False, cell_size="auto"):
    """`predict_probability` with the image resized so that its cells fall in the model's diameter band.

    See :func:`cellcount_core.running.cell_scale.predict_at_cell_scale`. A model whose card has no ``diameter_band``
    runs at the image's own scale. With ``cell_size="auto"``, where the network finds only specks
    (`cell_scale.is_specks`), the objects under which the image is featureless (`empty_fields`: its 3 x 3
    median stays low, sparse photon noise in a dark field) are erased from the map; where it finds nothing of
    the band's size (`cell_scale.is_below_band`) in a featureless field (`empty_fields.is_featureless_field`),
    the map is zero.

    Parameters
    ----------
    image, model, device, tile_size, overlap, batch_size, progress
        As in `predict_probability`.
    cell_size : "auto", "off" or float
        Estimate the cell diameter (the default), never resize, or the typical cell diameter in pixels.

    Returns
    -------
    probability : numpy.ndarray
        float32 H x W in [0, 1], the image's size.
    scale : CellScale
        The resize factor and the cell diameter (pixels of the image; 0.0 when not estimated or none found).
    """
    diameter = parse_cell_size(cell_size)
    run, card = _segmenter_runner(model, device, tile_size, overlap, batch_size, progress)
    if card.diameter_band is None or diameter is False:
        return run(image), CellScale(1.0, diameter or 0.0)
    image, band = np.asarray(image), tuple(card.diameter_band)
    is_empty = functools.partial(is_featureless_field, normalization=_percentile_settings(card))
    probability, scale = predict_at_cell_scale(image, run, band, float(card.default_threshold["value"]), diameter,
                                               is_empty)
    if diameter is None and is_specks(scale, band):
        probability = without_featureless_objects(image, probability, _percentile_settings(card),
                                                  0.5 * card.default_threshold["value"])
    elif diameter is None and is_below_band(scale, band) and is_featureless_field(image, _percentile_settings(card)):
        probability = np.zeros_like(probability)
    return probability, scale


def predict_count_at_cell_scale(image, model=DEFAULT_COUNTER, device="Auto", tile_size="auto", overlap=None,
                                batch_size=None, progress=False, cell_size="auto", segmenter=DEFAULT_SEGMENTER,
                                enlarge_small_cells=True):
    """`predict_count` with the image resized so that its cells fall in the counter's diameter band.

    With ``cell_size="auto"``, the segmenter measures the cell size and decides whether to reduce
    (:func:`cellcount_core.running.cell_scale.cell_scale`: its coarse probes, about 8 % of a segmenter pass, and
    where they see large cells a full-size and a reduced pass); the counter then reduces only as far as its own,
    wider ``diameter_band`` needs (`cell_scale.aimed_at_band`). A manual diameter sets the factor from that band.
    The density of the resized image sums to the count of the original one. Counters of masks, of a fixed input
    size or without a ``diameter_band`` run at the image's own scale. A featureless field (`empty_fields.is_featureless_field`)
    where the probes see nothing counts 0 if a full-size segmenter pass finds nothing of the band's size there
    either, as DeepSegment's map is zero there (dim nuclei, under the featureless level, are counted).
    Where the segmenter leaves the image at its size, the counter's own density map tells whether its cells are
    smaller than it counts well (`cell_scale.density_diameter`); then it counts the image enlarged
    (`cell_scale.counter_enlargement`, x2: four times the counter's work on such images).

    Parameters
    ----------
    image, model, device, tile_size, overlap, batch_size, progress
        As in `predict_count`.
    cell_size : "auto", "off" or float
        As in `predict_probability_at_cell_scale`.
    segmenter : str or pathlib.Path
        The segmentation model whose probes estimate the diameter.
    enlarge_small_cells : bool
        Apply the card's ``small_density_diameter`` rule (the default); False counts at the image's own size
        and still reports the density diameter (`cellcount-train density-rule` measures the rule so).

    Returns
    -------
    count : float
    scale : CellScale
        With the counter's ``density_diameter`` where it counted at the image's own size on Automatic.
    """
    diameter = parse_cell_size(cell_size)
    _, card = get_model(model, device, default=DEFAULT_COUNTER)
    count_options = dict(model=model, device=device, tile_size=tile_size, overlap=overlap, batch_size=batch_size,
                         progress=progress)
    if card.diameter_band is None or card.input != "image" or card.input_size or diameter is False:
        return predict_count(image, **count_options), CellScale(1.0, diameter or 0.0)
    image = np.asarray(image)
    if diameter is None:
        run, seg_card = _segmenter_runner(segmenter, device, tile_size, overlap, batch_size, False)
        band = tuple(seg_card.diameter_band or card.diameter_band)
        threshold = float(seg_card.default_threshold["value"])
        is_empty = functools.partial(is_featureless_field, normalization=_percentile_settings(seg_card))
        scale = aimed_at_band(cell_scale(image, run, band, threshold, is_empty), tuple(card.diameter_band))
        if scale.diameter == 0.0:  # the counter runs on the image itself: its noise is measured once, here
            count_options["noise"] = noise_sigma(to_grayscale(image))
            if is_featureless_field(image, _percentile_settings(seg_card), count_options["noise"]) \
                    and is_below_band(CellScale(1.0, diameter_in_probability(run(image), threshold)), band):
                return 0.0, scale
        if scale.factor == 1.0:
            return _count_small_cells_enlarged(image, scale, card, count_options, enlarge_small_cells)
    else:
        scale = CellScale(scale_factor(diameter, tuple(card.diameter_band)), diameter)
    return predict_count(resize_image(image, scale.factor), **count_options), scale


def _count_small_cells_enlarged(image, scale, card, count_options, enlarge=True):
    """The count of an image at its own size, or (`enlarge`) of the image enlarged where the counter's density map
    says its cells are smaller than it counts well (`cell_scale.counter_enlargement`), with the density diameter."""
    total, squares = _density_sums(image, **count_options)
    measured = CellScale(scale.factor, scale.diameter, density_diameter(total, squares))
    factor = counter_enlargement(measured.density_diameter, image.shape[:2], card.small_density_diameter,
                                 scale.diameter, card.diameter_band[1]) if enlarge else 1.0
    if factor == 1.0:
        return _calibrated(total, card), measured
    count_options.pop("noise", None)  # the enlarged image's own noise is measured
    enlarged = CellScale(factor, scale.diameter, measured.density_diameter)
    return predict_count(resize_image(image, factor), **count_options), enlarged
