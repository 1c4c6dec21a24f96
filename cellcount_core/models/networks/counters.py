"""Counting networks: DeepCellCount's fixed-size regressor and a size-agnostic density counter."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .blocks import filter_levels
from .unets import build_unet


class DCCCounter(nn.Module):
    """DeepCellCount's counting CNN (VISAPP 2025): regresses the cell count of a fixed-size mask or image.

    Two blocks of 3x3 convolution + ReLU + 2x2 max-pooling, flatten, a dense layer with ReLU, one output.
    ``forward`` takes N x C x H x W with (H, W) == ``input_size`` and returns N counts (float).

    Parameters
    ----------
    input_size : (int, int)
        Height and width the network is built for (inference resizes inputs to it); divisible by 4.
    in_channels : int
        Input channels.
    filters : (int, int)
        Filters of the two convolutions.
    dense_units : int
        Units of the hidden dense layer.
    """

    def __init__(self, input_size: Sequence[int] = (128, 128), in_channels: int = 1,
                 filters: Sequence[int] = (32, 64), dense_units: int = 512):
        super().__init__()
        self.input_size = tuple(int(s) for s in input_size)
        self.size_divisor = 4
        if len(self.input_size) != 2 or min(self.input_size) < 4 or any(s % 4 for s in self.input_size):
            raise ValueError(f"input_size must be (height, width) divisible by 4, got {input_size!r}.")
        if len(filters) != 2:
            raise ValueError(f"filters must give the two convolutions' filters, e.g. (32, 64); got {filters!r}.")
        first, second = (int(f) for f in filters)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, first, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(first, second, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )
        flat = second * (self.input_size[0] // 4) * (self.input_size[1] // 4)
        self.regressor = nn.Sequential(nn.Flatten(), nn.Linear(flat, dense_units), nn.ReLU(inplace=True),
                                       nn.Linear(dense_units, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or tuple(x.shape[-2:]) != self.input_size:
            raise ValueError(f"DCC counter expects N x C x {self.input_size[0]} x {self.input_size[1]} input, "
                             f"got shape {tuple(x.shape)}; resize the input to input_size first.")
        return self.regressor(self.features(x)).squeeze(1)


class DensityCounter(nn.Module):
    """Fully convolutional counter: a small BatchNorm U-Net ending in a softplus density.

    ``forward`` returns a non-negative density N x 1 x H x W whose sum over H and W is the count, so any image
    size (divisible by ``size_divisor``) and tiled inference work; BatchNorm (fixed statistics at inference)
    keeps each pixel's output independent of the rest of the tile.

    Parameters
    ----------
    in_channels, base_filters, depth : int
        Input channels, filters of the first level (doubling per level), number of poolings.
    norm, groups
        See :func:`cellcount_core.models.networks.blocks.norm_layer`.
    """

    def __init__(self, in_channels: int = 1, base_filters: int = 16, depth: int = 3, norm: str = "batch",
                 groups: int = 8):
        super().__init__()
        levels = filter_levels(base_filters, depth)
        self.body = build_unet(in_channels, levels, 2 * levels[-1], norm=norm, groups=groups)
        self.size_divisor = self.body.size_divisor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.softplus(self.body(x))


def dcc_counter(input_size: Sequence[int] = (128, 128), in_channels: int = 1, filters: Sequence[int] = (32, 64),
                dense_units: int = 512) -> DCCCounter:
    """DeepCellCount's fixed-size count regressor, see :class:`DCCCounter`."""
    return DCCCounter(input_size, in_channels, filters, dense_units)


def density_counter(in_channels: int = 1, base_filters: int = 16, depth: int = 3, norm: str = "batch",
                    groups: int = 8) -> DensityCounter:
    """Size-agnostic density counter, see :class:`DensityCounter`."""
    return DensityCounter(in_channels, base_filters, depth, norm, groups)
