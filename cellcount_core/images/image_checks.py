"""Checks an image passes before a network runs on it: a shape, a type and values the networks take, and the
memory the whole count will need (numpy only; ``psutil`` is used when installed).

Each check raises ``ValueError`` (or :class:`InsufficientMemoryError`) with a message that names the image and
says what to do, so that a hostile input fails at once instead of deep inside tiling or post-processing.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from cellcount_core.images.normalization import _check_image_shape, _percentile_sample

#: The smallest side, in pixels, of an image the networks are run on. The smallest nucleus in the bundled
#: segmenter's training images is about 6 pixels across (its card's ``diameter_range``): a narrower image cannot
#: hold one whole cell, and a one-pixel-high strip made noise look like hundreds of cells.
MIN_IMAGE_SIDE = 8
#: Memory the count needs beside the image itself, per pixel: the float32 probability map, labels, mask and
#: CellProfiler's copies (about 20 bytes per pixel measured at 10k x 10k, BENCHMARKS.md section 3).
BYTES_PER_PIXEL = 20
#: Memory the count needs whatever the image: torch, the model, one batch of tiles, and whole-image
#: post-processing of maps under 4 megapixels (about 40 bytes per pixel).
FIXED_BYTES = 512 * 2**20
_FLOAT32_MAX = float(np.finfo(np.float32).max)


class InsufficientMemoryError(MemoryError):
    """Counting an image would need more memory than the machine has available."""


def check_image(image, source="image", masks_allowed=False):
    """Raise unless the networks can run on ``image`` and counting it fits in memory; ``source`` names it.

    Accepted: H x W, H x W x 3 or H x W x 4 arrays of a real numeric or boolean dtype, both sides at least
    :data:`MIN_IMAGE_SIDE` pixels, with finite values within float32's range (the networks compute in float32).
    Binary masks (boolean, or two values only) are refused unless ``masks_allowed`` (a counter whose card says
    ``"input": "mask"``): networks trained on intensity images find no cell in them (measured: 0 of 40,
    tests/test_hostile_arrays.py).

    Raises
    ------
    ValueError
        For any other image, saying what is wrong and what to do.
    InsufficientMemoryError
        If :func:`check_memory` finds too little memory for it.
    """
    image = np.asarray(image)
    try:
        _check_image_shape(image)
    except ValueError as error:
        raise ValueError(f"{source} {str(error).removeprefix('image ')}") from None
    height, width = image.shape[:2]
    if min(height, width) < MIN_IMAGE_SIDE:
        raise ValueError(f"{source} is {height} x {width} pixels; the smallest image cellcount segments or counts "
                         f"is {MIN_IMAGE_SIDE} x {MIN_IMAGE_SIDE} pixels (a cell must fit inside it). Use a larger "
                         "image or crop.")
    if image.dtype != bool and (not np.issubdtype(image.dtype, np.number) or np.iscomplexobj(image)):
        raise ValueError(f"{source} has dtype {image.dtype}; a real numeric (or boolean) image is expected.")
    if np.issubdtype(image.dtype, np.floating):
        low, high = float(np.min(image)), float(np.max(image))
        if not (math.isfinite(low) and math.isfinite(high)):
            raise ValueError(f"{source} contains NaN or infinite values; replace them (for example with "
                             "numpy.nan_to_num) or mask them out before counting.")
        if max(abs(low), abs(high)) > _FLOAT32_MAX:
            raise ValueError(f"{source} holds values up to {max(abs(low), abs(high)):.3g}, beyond float32's range "
                             f"(+-{_FLOAT32_MAX:.3g}) in which the networks compute; rescale the image first.")
    if not masks_allowed and _is_binary(image):
        raise ValueError(f"{source} is a binary mask (two values only); the networks read intensity images "
                         "(fluorescence) and find no cell in a mask. Give the image itself; count a mask's objects "
                         "with IdentifyPrimaryObjects, or with a counter whose card says \"input\": \"mask\".")
    check_memory(image.shape, image.dtype, source)


def _is_binary(image):
    """True for a boolean image, or one whose (subsampled) pixels take exactly two values."""
    if image.dtype == bool:
        return True
    sample = _percentile_sample(image)
    low, high = sample.min(), sample.max()
    return bool(low != high and np.all((sample == low) | (sample == high)))


def required_bytes(shape, dtype, loaded=True):
    """Estimated peak memory, in bytes, of segmenting and counting an image of ``shape`` and ``dtype``.

    ``loaded=False`` adds the image itself (it is still to be read from a file).
    """
    pixels = int(shape[0]) * int(shape[1])
    channels = int(np.prod(shape[2:], dtype=np.int64)) if len(shape) > 2 else 1
    image_bytes = 0 if loaded else pixels * channels * np.dtype(dtype).itemsize
    return FIXED_BYTES + pixels * BYTES_PER_PIXEL + image_bytes


def available_bytes():
    """Memory available to this process in bytes (the lower of free RAM and a cgroup limit), or None if unknown."""
    candidates = [_cgroup_headroom()]
    try:
        import psutil

        candidates.append(psutil.virtual_memory().available)
    except ImportError:
        candidates.append(_meminfo_available())
    known = [value for value in candidates if value is not None]
    return min(known) if known else None


def check_memory(shape, dtype, source="image", loaded=True):
    """Raise InsufficientMemoryError, before any work, if counting the image would exceed available memory."""
    needed, available = required_bytes(shape, dtype, loaded), available_bytes()
    if available is not None and needed > available:
        raise InsufficientMemoryError(
            f"{source} is {int(shape[0])} x {int(shape[1])} pixels: counting it needs about {_gigabytes(needed)} "
            f"of memory, but {_gigabytes(available)} is available. Free memory, run it on a larger machine, or "
            "split the image into parts.")


def _gigabytes(count):
    return f"{count / 2**30:.1f} GB"


def _meminfo_available():
    try:
        lines = Path("/proc/meminfo").read_text().splitlines()
    except OSError:
        return None
    found = [int(line.split()[1]) * 1024 for line in lines if line.startswith("MemAvailable:")]
    return found[0] if found else None


def _cgroup_headroom():
    """What a cgroup v2 memory limit leaves to this process (limit minus anonymous memory; the page cache can be
    reclaimed), or None without a limit."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        stat = Path("/sys/fs/cgroup/memory.stat").read_text().split()
    except OSError:
        return None
    if not limit.isdigit() or "anon" not in stat:
        return None
    return max(int(limit) - int(stat[stat.index("anon") + 1]), 0)
