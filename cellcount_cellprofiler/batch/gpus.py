"""Which GPUs a Dask worker's CellProfiler processes see: whole GPUs per worker, or several workers per GPU."""

from __future__ import annotations

import math
import os

#: The variable cellcount_core.running.gpu reads in each CellProfiler process (named here so that this module
#: needs no torch).
MEMORY_FRACTION_VARIABLE = "CELLCOUNT_GPU_MEMORY_FRACTION"


def visible_gpus(environ=None):
    """GPU ids this machine offers: CUDA_VISIBLE_DEVICES when set, else every GPU torch counts."""
    environ = os.environ if environ is None else environ
    listed = environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [gpu.strip() for gpu in listed.split(",") if gpu.strip()]
    import torch

    return [str(index) for index in range(torch.cuda.device_count())]


def worker_environment(worker_index, gpus_per_worker, gpu_ids):
    """Environment variables for the CellProfiler processes of local worker ``worker_index``.

    ``gpus_per_worker`` >= 1 gives each worker its own whole GPUs (worker 0 the first ones); a share below 1 puts
    ``1 / gpus_per_worker`` workers on each GPU and limits each to that share of its memory. 0 changes nothing.
    """
    if not gpus_per_worker:
        return {}
    if not gpu_ids:
        raise ValueError("--gpus-per-worker was given but this machine has no GPU (CUDA_VISIBLE_DEVICES is empty "
                         "and torch finds none). Leave --gpus-per-worker out to run on the CPU.")
    if gpus_per_worker >= 1:
        if gpus_per_worker != int(gpus_per_worker):
            raise ValueError(f"--gpus-per-worker {gpus_per_worker}: give a whole number of GPUs, or a share below 1.")
        count = int(gpus_per_worker)
        start = worker_index * count
        if start + count > len(gpu_ids):
            raise ValueError(f"worker {worker_index} needs GPUs {start}..{start + count - 1} but only "
                             f"{len(gpu_ids)} are visible ({','.join(gpu_ids)}); use fewer --workers.")
        return {"CUDA_VISIBLE_DEVICES": ",".join(gpu_ids[start:start + count])}
    per_gpu = round(1 / gpus_per_worker)
    gpu = worker_index // per_gpu
    if gpu >= len(gpu_ids):
        raise ValueError(f"{per_gpu} workers per GPU need {math.ceil((worker_index + 1) / per_gpu)} GPUs for "
                         f"worker {worker_index}, but only {len(gpu_ids)} are visible; use fewer --workers.")
    return {"CUDA_VISIBLE_DEVICES": gpu_ids[gpu], MEMORY_FRACTION_VARIABLE: f"{gpus_per_worker:g}"}


def local_worker_environments(workers, gpus_per_worker, gpu_ids):
    """{worker index: environment} for a LocalCluster of ``workers`` workers."""
    return {index: worker_environment(index, gpus_per_worker, gpu_ids) for index in range(workers)}
