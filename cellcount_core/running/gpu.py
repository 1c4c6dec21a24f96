"""CUDA specifics of inference: a per-process share of GPU memory, cached memory given back between images,
and tile batches whose host-device copies overlap the host's work.

Every function is a no-op for CPU devices, so callers need no branches. None of the CUDA paths could be run
where this was written (no GPU); their CPU-side logic is tested with stand-ins.
"""

import math
import os

import torch

#: Environment variable holding the share (0 to 1] of each GPU's memory one process may use, so that several
#: CellProfiler workers can share a GPU (e.g. 0.25 for four workers).
MEMORY_FRACTION_VARIABLE = "CELLCOUNT_GPU_MEMORY_FRACTION"


def memory_fraction(environ=None):
    """The GPU memory share set by ``CELLCOUNT_GPU_MEMORY_FRACTION``, or None when it is unset or empty.

    Raises
    ------
    ValueError
        If the variable is not a number in (0, 1].
    """
    text = (os.environ if environ is None else environ).get(MEMORY_FRACTION_VARIABLE, "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 < value <= 1.0:
        raise ValueError(
            f"{MEMORY_FRACTION_VARIABLE}={text!r} is not a share of GPU memory; set a number in (0, 1], "
            "for example 0.25 for four CellProfiler workers on one GPU, or unset it."
        )
    return value


def prepare_device(device):
    """Limit this process to ``CELLCOUNT_GPU_MEMORY_FRACTION`` of a CUDA device's memory (when set)."""
    if device.type != "cuda":
        return
    fraction = memory_fraction()
    if fraction is not None:
        torch.cuda.set_per_process_memory_fraction(fraction, device)


def available_memory(device):
    """Bytes this process may still allocate on a CUDA device: the free memory and its own cached blocks, within
    its ``CELLCOUNT_GPU_MEMORY_FRACTION`` share when set; None for other devices."""
    if device.type != "cuda":
        return None
    free, total = torch.cuda.mem_get_info(device)
    allocated = torch.cuda.memory_allocated(device)
    free += torch.cuda.memory_reserved(device) - allocated
    fraction = memory_fraction()
    return free if fraction is None else max(0, min(free, int(fraction * total) - allocated))


def release_cached_memory(device):
    """Give the CUDA caching allocator's unused blocks back to the driver, for other processes on the GPU."""
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _pinned_empty(shape):
    """An uninitialised float32 tensor in page-locked host memory (fast, asynchronous copies to the GPU)."""
    return torch.empty(shape, dtype=torch.float32, pin_memory=True)


class _PendingResult:
    """A batch output being copied back from the GPU; ``numpy.asarray`` waits for the copy."""

    def __init__(self, host, event):
        self._host = host
        self._event = event

    def __array__(self, dtype=None, copy=None):
        self._event.synchronize()
        values = self._host.numpy()
        return values if dtype is None else values.astype(dtype, copy=False)


class CudaBatchRunner:
    """Run ``forward(tensor) -> tensor`` on CUDA batches without waiting for the result.

    Each call copies the batch into pinned host memory, starts the copy to the GPU, the network and the copy
    back, and returns at once a result that ``numpy.asarray`` resolves; the caller cuts the next batch
    meanwhile (see `tiling.iter_tile_outputs`). Two pinned buffers are used in turn; a buffer is reused only
    after the copy it fed has finished.
    """

    def __init__(self, forward, device):
        self._forward = forward
        self._device = device
        self._staging = [None, None]
        self._events = [None, None]
        self._turn = 0

    def __call__(self, batch):
        slot = self._turn % 2
        self._turn += 1
        if self._events[slot] is not None:
            self._events[slot].synchronize()
        staging = self._staging[slot]
        if staging is None or staging.shape[1:] != batch.shape[1:] or staging.shape[0] < len(batch):
            staging = self._staging[slot] = _pinned_empty(batch.shape)
        staging = staging[: len(batch)]
        staging.numpy()[...] = batch
        with torch.inference_mode():
            inputs = staging.to(self._device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            output = self._forward(inputs)
            host = _pinned_empty(output.shape)
            host.copy_(output, non_blocking=True)
        event = self._events[slot] = torch.cuda.Event()
        event.record()
        return _PendingResult(host, event)
