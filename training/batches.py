"""Sources of training batches that live on the training device, and their shared epoch order.

The training loop asks a source for ``steps(world)`` and iterates ``epoch(epoch, rank, world)``; every batch is a
dict of tensors already on the device (``"image"`` first). No DataLoader, no worker processes: data are decoded
once, moved to the device once, and augmented there (see :mod:`training.device_crops`).
"""

from __future__ import annotations

import math
from typing import Iterator, Protocol

import torch


class BatchSource(Protocol):
    """What :func:`training.loop.train` needs from its training data."""

    def to(self, device: torch.device) -> "BatchSource":
        """The same source with its data on ``device``."""

    def steps(self, world: int) -> int:
        """Batches per epoch in each of ``world`` processes."""

    def epoch(self, epoch: int, rank: int = 0, world: int = 1) -> Iterator[dict]:
        """The batches of one epoch for process ``rank``, reproducible from the source's seed and ``epoch``."""


def epoch_order(items: int, seed: int, epoch: int, rank: int = 0, world: int = 1) -> torch.Tensor:
    """Shuffled item numbers of one epoch, this process's equal share (the same permutation on every rank)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(items, generator=generator)
    return order[rank::world][: items // world]


def device_generator(seed: int, epoch: int, rank: int, device: torch.device) -> torch.Generator:
    """The random generator of one epoch's augmentations on ``device``."""
    return torch.Generator(device=device).manual_seed((seed * 1_000_003 + epoch) * 1_009 + rank)


def steps_for(items: int, batch_size: int, world: int) -> int:
    """Batches per epoch and process for ``items`` shared by ``world`` processes (the last batch may be short)."""
    return math.ceil((items // world) / batch_size)


class TensorBatches:
    """Equally sized tensors (``N x ...`` each) served in shuffled batches.

    ``dihedral`` names keys of square ``N x C x S x S`` images that get one of the eight flips/90-degree rotations at
    random per sample and epoch (the dcc_counter's masks).
    """

    def __init__(self, tensors: dict, batch_size: int, seed: int = 0, dihedral: tuple = ()):
        self.tensors, self.batch_size, self.seed, self.dihedral = tensors, batch_size, seed, dihedral
        self.items = len(next(iter(tensors.values())))
        self.device = next(iter(tensors.values())).device

    def to(self, device) -> TensorBatches:
        return TensorBatches({key: value.to(device) for key, value in self.tensors.items()}, self.batch_size,
                             self.seed, self.dihedral)

    def steps(self, world: int) -> int:
        return steps_for(self.items, self.batch_size, world)

    def epoch(self, epoch: int, rank: int = 0, world: int = 1) -> Iterator[dict]:
        order = epoch_order(self.items, self.seed, epoch, rank, world).to(self.device)
        generator = device_generator(self.seed, epoch, rank, self.device)
        for start in range(0, len(order), self.batch_size):
            chosen = order[start:start + self.batch_size]
            batch = {key: value[chosen] for key, value in self.tensors.items()}
            for key in self.dihedral:
                batch[key] = random_dihedral(batch[key], generator)
            yield batch


def random_dihedral(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each square image of ``images`` (``B x C x S x S``) turned by a random one of the 8 flips/rotations."""
    codes = torch.randint(8, (len(images),), generator=generator, device=images.device)
    out = images.clone()
    for code in range(8):
        chosen = codes == code
        turned = torch.rot90(images[chosen], code % 4, dims=(-2, -1))
        out[chosen] = turned.flip(-1) if code >= 4 else turned
    return out
