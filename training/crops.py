"""Preloaded images with their targets, served as augmented random crops (torch ``Dataset``) or fixed crops."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .augment import Augmenter


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


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None]


class CropDataset(Dataset):
    """Augmented crops: ``crops_per_image`` per image and epoch; an image named in ``repeats`` comes that often.

    Items are dicts of float32 tensors, ``image`` and one per target, each 1 x h x w. Randomness is drawn from
    ``(seed, epoch, index)``, so an epoch is reproducible whatever the worker processes.
    """

    def __init__(self, records: list[Record], augmenter: Augmenter, crops_per_image: int = 12,
                 repeats: dict | None = None, seed: int = 0):
        repeats = repeats or {}
        self.records, self.augmenter, self.crops, self.seed = records, augmenter, crops_per_image, seed
        self.order = [i for i, record in enumerate(records) for _ in range(repeats.get(record.id, 1))]
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Change the random crops and augmentations (reproducibly) for a new epoch."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.order) * self.crops

    def __getitem__(self, index: int) -> dict:
        record = self.records[self.order[index // self.crops]]
        rng = np.random.default_rng((self.seed, self.epoch, index))
        targets = {key: value.astype(np.float32) if value.dtype == np.float16 else value
                   for key, value in record.targets.items()}
        image, targets = self.augmenter(record.image.astype(np.float32), targets, rng)
        return {"image": _tensor(image), **{key: _tensor(value) for key, value in targets.items()}}


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
