"""A generic training loop shared by the segmenter and counter trainers.

Adam; the learning rate drops by 30 % after a plateau of the monitored validation metric (ReduceLROnPlateau,
factor 0.7, patience 4, as c-ResUnet) and training stops early when it has not improved for a number of epochs
(20 in c-ResUnet). Every epoch writes a checkpoint (resumable) and a metrics CSV; the plot of the curves is redrawn
at most once a minute and at the end (GPU epochs take seconds, a plot a fraction of one). CUDA and
mixed precision are used when present; under ``torchrun`` (or any launcher that sets ``WORLD_SIZE``, ``RANK`` and
``MASTER_ADDR``/``MASTER_PORT``) the model is wrapped in DistributedDataParallel (gloo on CPU, NCCL on GPU) and only
rank 0 validates and writes files.
"""

from __future__ import annotations

import copy
import csv
import gc
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .batches import BatchSource

CHECKPOINT = "checkpoint.pt"
METRICS_CSV = "metrics.csv"
CURVES_PNG = "curves.png"
PLOT_INTERVAL = 60.0  # seconds between redraws of curves.png


@dataclass
class TrainConfig:
    """Settings of :func:`train`.

    Attributes
    ----------
    out_dir : Path
        Folder for ``checkpoint.pt``, ``metrics.csv`` and ``curves.png``.
    epochs : int
        Maximum number of epochs.
    lr : float
        Initial Adam learning rate.
    lr_factor, lr_patience : float, int
        ReduceLROnPlateau factor and patience (epochs).
    early_stop : int
        Stop after this many epochs without improvement of the monitored metric.
    seed : int
        Seed of the data order and of every random generator.
    steps_per_epoch : int or None
        Cap on the optimizer steps per epoch (None: one pass over the training set).
    time_limit : float or None
        Stop after the epoch that exceeds this many minutes of training in this run.
    device : str
        ``"auto"`` (CUDA if available), ``"cpu"`` or ``"cuda"``.
    amp : bool
        Mixed precision (bfloat16 or float16 autocast) on CUDA.
    resume : bool
        Continue from ``out_dir/checkpoint.pt`` when it exists.
    monitor : str
        Validation metric to minimize (a key returned by the ``validate`` callback, or ``train_loss``).
    plot : bool
        Draw ``curves.png`` (at most once a minute, and at the end).
    ema : float or None
        Decay of an exponential moving average of the weights, updated after every step; when given, validation
        and the returned best weights are the average's (it smooths out the last steps' noise).
    """

    out_dir: Path
    epochs: int = 100
    lr: float = 1e-4
    lr_factor: float = 0.7
    lr_patience: int = 4
    early_stop: int = 20
    seed: int = 0
    steps_per_epoch: int | None = None
    time_limit: float | None = None
    device: str = "auto"
    amp: bool = True
    resume: bool = False
    monitor: str = "val_loss"
    plot: bool = True
    ema: float | None = None


@dataclass
class TrainResult:
    """What :func:`train` returns: the best weights and the history (on every rank)."""

    best_state: dict
    best_epoch: int
    best_metrics: dict
    history: list = field(default_factory=list)
    stop_reason: str = ""
    is_main: bool = True


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) random generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """Return the torch device for ``"auto"``, ``"cpu"`` or ``"cuda"``."""
    name = name.lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' was requested but no CUDA GPU is available; use --device cpu or auto.")
        return torch.device("cuda", local_rank)
    if name != "cpu":
        raise ValueError(f"Unknown device {name!r}; use auto, cpu or cuda.")
    return torch.device("cpu")


def _init_distributed(device_name: str) -> tuple[int, int, int, bool]:
    """Join the process group described by the environment; return rank, world size, local rank, whether we joined."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0, False
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0")))
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), local_rank, False
    use_cuda = resolve_device(device_name, local_rank).type == "cuda"
    dist.init_process_group("nccl" if use_cuda else "gloo")
    return dist.get_rank(), dist.get_world_size(), local_rank, True


def _broadcast(value, world: int):
    """Send rank 0's picklable ``value`` to every rank."""
    if world == 1:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _mean_across(value: float, world: int) -> float:
    if world == 1:
        return value
    import torch.distributed as dist

    tensor = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(tensor)
    return float(tensor.item()) / world


def write_metrics_csv(history: list[dict], path: Path) -> None:
    """Write one row per epoch with the union of the metric names as columns."""
    columns = list(dict.fromkeys(key for row in history for key in row))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)


def plot_curves(history: list[dict], path: Path) -> None:
    """Plot losses and metrics against the epoch (left) and the learning rate (right) into ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    names = [key for key in history[0] if key not in ("epoch", "lr", "seconds")]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for name in names:
        left.plot(epochs, [row.get(name, math.nan) for row in history], marker=".", label=name)
    left.set(xlabel="epoch", ylabel="value", yscale="log", title="training curves")
    left.legend(fontsize=8)
    right.plot(epochs, [row["lr"] for row in history], marker=".")
    right.set(xlabel="epoch", ylabel="learning rate", yscale="log", title="learning rate")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _save_atomic(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _cpu_state(model: nn.Module) -> dict:
    return {key: value.detach().cpu().clone() for key, value in model.state_dict().items()}


def weight_average(model: nn.Module, decay: float | None):
    """An exponential moving average of ``model``'s weights and buffers (torch's ``AveragedModel``), or None."""
    if decay is None:
        return None
    if not 0 < decay < 1:
        raise ValueError(f"The weight average's decay is {decay}; give a number between 0 and 1, e.g. 0.995.")
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def train(model: nn.Module, train_set: BatchSource, loss_fn: Callable[[torch.Tensor, dict], torch.Tensor],
          config: TrainConfig, validate: Callable[[nn.Module, torch.device], dict] | None = None) -> TrainResult:
    """Train ``model`` on ``train_set`` and return the weights of the best epoch.

    Parameters
    ----------
    model : nn.Module
        Network; called on ``batch["image"]``.
    train_set : BatchSource
        Moved to the device once; each epoch yields batches (dicts of tensors with an ``"image"`` key) on the
        device, reproducible from its seed and the epoch number, each process its own share.
    loss_fn : callable
        ``loss_fn(output, batch)`` -> scalar tensor.
    config : TrainConfig
        Optimisation settings and output folder.
    validate : callable, optional
        ``validate(model, device)`` -> dict of floats, run on rank 0 after every epoch in eval mode. Must contain
        ``config.monitor`` unless that is ``"train_loss"``.

    Returns
    -------
    TrainResult
    """
    rank, world, local_rank, joined = _init_distributed(config.device)
    try:
        result = _train(model, train_set, loss_fn, config, validate, rank, world, local_rank)
        if joined:  # hold each rank until rank 0 has written its files, so none tears the group down mid-write
            import torch.distributed as dist

            dist.barrier()
        return result
    finally:
        if joined:
            _leave_distributed()


def _leave_distributed() -> None:
    """Free the DistributedDataParallel wrapper, then the process group.

    The wrapper's reducer holds the group; a gloo group still alive at interpreter exit can abort the process
    (one run in ten of the two-process test did before this and the barrier).
    """
    import torch.distributed as dist

    gc.collect()
    dist.destroy_process_group()


def _train(model, train_set, loss_fn, config, validate, rank, world, local_rank) -> TrainResult:
    is_main = rank == 0
    out_dir = Path(config.out_dir)
    if is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device, local_rank)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=config.lr_factor,
                                                           patience=config.lr_patience)
    amp_dtype = None
    if config.amp and device.type == "cuda":
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    averaged = weight_average(model, config.ema)
    validated = averaged.module if averaged is not None else model

    state = {"epoch": -1, "best_metric": math.inf, "best_epoch": -1, "best_state": _cpu_state(validated),
             "best_metrics": {}, "stale": 0, "history": []}
    checkpoint = out_dir / CHECKPOINT
    if config.resume and checkpoint.is_file():
        saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        scaler.load_state_dict(saved["scaler"])
        if averaged is not None:
            averaged.load_state_dict(saved["ema"])
        state = saved["state"]
        if is_main:
            tqdm.write(f"Resumed from {checkpoint} after epoch {state['epoch']}.")

    net = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    train_set = train_set.to(device)
    steps = train_set.steps(world)
    steps = steps if config.steps_per_epoch is None else min(steps, config.steps_per_epoch)
    started = time.monotonic()
    plotted = -math.inf
    stop_reason = "max epochs"
    for epoch in range(state["epoch"] + 1, config.epochs):
        epoch_start = time.monotonic()
        torch.manual_seed(config.seed * 100_003 + epoch * 101 + rank)
        net.train()
        total, seen = torch.zeros((), device=device), 0  # summed on the device: no host sync per step
        bar = tqdm(train_set.epoch(epoch, rank, world), total=steps, desc=f"epoch {epoch}", disable=not is_main,
                   leave=False, mininterval=1.0 if os.isatty(2) else 30.0)
        for step, batch in enumerate(bar):
            if step >= steps:
                break
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                output = net(batch["image"])
            loss = loss_fn(output.float(), batch)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            if averaged is not None:
                averaged.update_parameters(model)
            total += loss.detach()
            seen += 1
        bar.close()
        mean_loss = float(total) / max(seen, 1)
        if not math.isfinite(mean_loss):
            raise FloatingPointError(f"The training loss became {mean_loss} in epoch {epoch}; lower --lr.")

        row = {"epoch": epoch, "train_loss": _mean_across(mean_loss, world)}
        if is_main and validate is not None:
            validated.eval()
            with torch.no_grad():
                row.update({key: float(value) for key, value in validate(validated, device).items()})
        row = _broadcast(row, world)
        if config.monitor not in row:
            raise KeyError(f"Monitored metric {config.monitor!r} is missing; the epoch gave {sorted(row)}.")
        metric = row[config.monitor]
        scheduler.step(metric)
        row["lr"] = optimizer.param_groups[0]["lr"]
        row["seconds"] = round(time.monotonic() - epoch_start, 1)
        state["history"].append(row)
        state["epoch"] = epoch
        if metric < state["best_metric"]:
            state.update(best_metric=metric, best_epoch=epoch, best_state=_cpu_state(validated), best_metrics=row,
                         stale=0)
        else:
            state["stale"] += 1
        if is_main:
            _save_atomic({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                          "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "state": state,
                          **({"ema": averaged.state_dict()} if averaged is not None else {})}, checkpoint)
            write_metrics_csv(state["history"], out_dir / METRICS_CSV)
            if config.plot and time.monotonic() - plotted > PLOT_INTERVAL:
                plot_curves(state["history"], out_dir / CURVES_PNG)
                plotted = time.monotonic()
            tqdm.write(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
        if state["stale"] >= config.early_stop:
            stop_reason = f"early stop: no improvement of {config.monitor} for {config.early_stop} epochs"
            break
        over_time = config.time_limit is not None and (time.monotonic() - started) / 60 > config.time_limit
        if _broadcast(over_time, world):
            stop_reason = f"time limit of {config.time_limit} minutes"
            break
    if is_main and config.plot and state["history"]:
        plot_curves(state["history"], out_dir / CURVES_PNG)
    return TrainResult(copy.deepcopy(state["best_state"]), state["best_epoch"], state["best_metrics"],
                       state["history"], stop_reason, is_main)
