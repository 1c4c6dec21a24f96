"""Preloaded images with their targets (records), oversampling lists, and the fixed crops that validate."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch


@dataclass
class Record:
    """One preloaded training image (normalized, float16 to save memory) and its named target arrays."""

    id: str
    image: np.ndarray
    targets: dict = field(default_factory=dict)


def read_oversampling(path, times: int) -> dict:
    """Read a text file of ids to oversample (artifact crops, as c-ResUnet): ``id`` or ``id,times`` per line."""
    repeats = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, count = line.partition(",")
            repeats[name.strip()] = int(count) if count.strip() else times
    return repeats


def fixed_crops(records: list[Record], size: int) -> dict:
    """One centred ``size`` crop per record (zero-padded), stacked into N x 1 x size x size tensors."""
    items = {}
    for record in records:
        h, w = record.image.shape
        top, left = max((h - size) // 2, 0), max((w - size) // 2, 0)
        for key, array in {"image": record.image, **record.targets}.items():
            part = array[top:top + size, left:left + size].astype(np.float32)
            items.setdefault(key, []).append(np.pad(part, ((0, size - part.shape[0]), (0, size - part.shape[1]))))
    return {key: torch.from_numpy(np.stack(values))[:, None] for key, values in items.items()}


def batches(tensors: dict, batch_size: int, device):
    """Yield consecutive slices of a dict of equally long tensors, moved to ``device``."""
    total = len(next(iter(tensors.values())))
    for start in range(0, total, batch_size):
        yield {key: value[start:start + batch_size].to(device) for key, value in tensors.items()}
