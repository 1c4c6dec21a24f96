"""Named building blocks shared by every network in :mod:`cellcount_core.models.networks`.

The segmenters are all one shape, :class:`EncoderDecoder`: encoder stages whose outputs are kept as skip
connections, a bridge, decoder stages that up-sample and merge one skip each, and a 1x1 head. The U-Nets and the
ResUnets differ only in the blocks they put in those places.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

NORMS = ("batch", "group", "none")
UPSAMPLINGS = ("transpose", "bilinear")

BlockFactory = Callable[[int, int], nn.Module]


def norm_layer(norm: str, channels: int, groups: int = 8) -> nn.Module:
    """Return a normalization layer for ``channels`` feature maps.

    Parameters
    ----------
    norm : {"batch", "group", "none"}
        BatchNorm2d, GroupNorm with ``groups`` groups, or no normalization (identity).
    channels : int
        Number of feature maps.
    groups : int
        Groups of GroupNorm; must divide ``channels``.
    """
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "group":
        if groups < 1 or channels % groups:
            raise ValueError(
                f"GroupNorm groups={groups} does not divide {channels} channels; "
                "choose groups that divides every level's filter count (e.g. 8 with filters 64/128/256)."
            )
        return nn.GroupNorm(groups, channels)
    if norm == "none":
        return nn.Identity()
    raise ValueError(f"Unknown norm {norm!r}; use one of {', '.join(NORMS)}.")


def conv(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, *, bias: bool = True) -> nn.Conv2d:
    """A 'same'-padded convolution (odd ``kernel_size``; output size = input size / stride)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=bias)


def filter_levels(base_filters: int, depth: int) -> list[int]:
    """Filters of ``depth`` levels: ``base_filters``, doubling at each level."""
    for name, value in (("base_filters", base_filters), ("depth", depth)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return [base_filters * 2 ** i for i in range(depth)]


class ConvBlock(nn.Sequential):
    """Two convolutions, each followed by normalization and ReLU (the U-Net level).

    Parameters
    ----------
    in_channels, out_channels : int
        Input and output feature maps.
    kernel_size : int
        Odd kernel size of both convolutions.
    norm, groups
        See :func:`norm_layer`.
    """

    def __init__(self, in_channels: int, out_channels: int, *, kernel_size: int = 3, norm: str = "batch",
                 groups: int = 8):
        bias = norm == "none"
        super().__init__(
            conv(in_channels, out_channels, kernel_size, bias=bias), norm_layer(norm, out_channels, groups),
            nn.ReLU(inplace=True),
            conv(out_channels, out_channels, kernel_size, bias=bias), norm_layer(norm, out_channels, groups),
            nn.ReLU(inplace=True),
        )


class ResidualUnit(nn.Module):
    """Pre-activation residual unit of Zhang, Liu & Wang (2018): (norm-ReLU-conv) x 2 plus a shortcut.

    The shortcut is a 1x1 convolution with normalization when the number of channels or the resolution
    changes, else the identity.

    Parameters
    ----------
    in_channels, out_channels : int
        Input and output feature maps.
    stride : int
        Stride of the first convolution and of the shortcut (2 halves the resolution).
    kernel_size : int
        Odd kernel size of both convolutions (c-ResUnet uses 5 in its deepest units).
    norm, groups
        See :func:`norm_layer`.
    preactivate : bool
        False for the network's first unit, which sees the raw input (conv-norm-ReLU-conv).
    """

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1, kernel_size: int = 3,
                 norm: str = "batch", groups: int = 8, preactivate: bool = True):
        super().__init__()
        pre = [norm_layer(norm, in_channels, groups), nn.ReLU()] if preactivate else []
        self.residual = nn.Sequential(
            *pre,
            conv(in_channels, out_channels, kernel_size, stride),
            norm_layer(norm, out_channels, groups), nn.ReLU(),
            conv(out_channels, out_channels, kernel_size),
        )
        if in_channels == out_channels and stride == 1:
            self.shortcut = nn.Identity()
        else:
            self.shortcut = nn.Sequential(conv(in_channels, out_channels, 1, stride),
                                          norm_layer(norm, out_channels, groups))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual(x) + self.shortcut(x)


class DecoderStage(nn.Module):
    """Up-sample by 2, concatenate the skip connection, then apply a block.

    Parameters
    ----------
    in_channels : int
        Feature maps coming from the deeper level.
    skip_channels : int
        Feature maps of the skip connection.
    out_channels : int
        Feature maps after the block.
    block : callable
        ``block(in, out) -> nn.Module`` building the merging block.
    upsample : {"transpose", "bilinear"}
        A learned 2x2 transposed convolution to ``out_channels`` maps (U-Net) or parameter-free bilinear
        interpolation (ResUnet).
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, block: BlockFactory,
                 upsample: str = "transpose"):
        super().__init__()
        if upsample == "transpose":
            self.up = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)
            merged = out_channels + skip_channels
        elif upsample == "bilinear":
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
            merged = in_channels + skip_channels
        else:
            raise ValueError(f"Unknown upsample {upsample!r}; use one of {', '.join(UPSAMPLINGS)}.")
        self.block = block(merged, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.block(torch.cat([self.up(x), skip], dim=1))


class EncoderDecoder(nn.Module):
    """U-shaped network: encoder stages (kept as skips) -> bridge -> decoder stages -> 1x1 head.

    Every encoder stage after the first and the bridge halve the resolution, so H and W must be divisible
    by ``size_divisor = 2 ** len(encoder)``. ``forward`` returns the head's raw output (logits for
    segmenters), N x out_channels x H x W.

    Parameters
    ----------
    encoder : sequence of nn.Module
        Stages from full resolution down; stage ``i`` outputs ``channels[i]`` maps.
    bridge : nn.Module
        The deepest stage, below the last skip.
    decoder : sequence of DecoderStage
        Stages from the deepest up, one per encoder stage.
    head : nn.Module
        Final layer mapping ``channels[0]`` maps to the output.
    """

    def __init__(self, encoder: Sequence[nn.Module], bridge: nn.Module, decoder: Sequence[DecoderStage],
                 head: nn.Module):
        super().__init__()
        if len(encoder) != len(decoder):
            raise ValueError(f"{len(encoder)} encoder stages but {len(decoder)} decoder stages; they must match.")
        self.encoder = nn.ModuleList(encoder)
        self.bridge = bridge
        self.decoder = nn.ModuleList(decoder)
        self.head = head
        self.size_divisor = 2 ** len(encoder)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_divisible(x, self.size_divisor)
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        x = self.bridge(x)
        for stage, skip in zip(self.decoder, reversed(skips)):
            x = stage(x, skip)
        return self.head(x)


def check_divisible(x: torch.Tensor, size_divisor: int) -> None:
    """Raise ValueError unless ``x`` is N x C x H x W with H and W divisible by ``size_divisor``."""
    if x.ndim != 4:
        raise ValueError(f"Expected an N x C x H x W tensor, got shape {tuple(x.shape)}.")
    height, width = x.shape[-2:]
    if height % size_divisor or width % size_divisor:
        raise ValueError(
            f"Input of {height} x {width} pixels: height and width must be divisible by {size_divisor} "
            "(the model's size_divisor); pad the image first."
        )

