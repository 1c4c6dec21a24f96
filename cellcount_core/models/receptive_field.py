"""How far a network's output pixels see, so that tiles overlap enough to be stitched without seams.

Tiles keep their centres and crop half the overlap from each inner side (`tiling`): when that half covers the
receptive-field radius, every kept pixel saw all the context it would see in a whole-image run, and the stitched
map equals the whole-image one to float tolerance, whatever the tile size. A fixed overlap of 64 pixels (32 of
context) was narrower than the bundled networks' radii of 62 and 94 pixels: their stitched maps changed with the
tile size near the seams (regression counts by up to 0.9 %, docs/RELIABILITY.md).
"""

from __future__ import annotations

import math
import weakref

import numpy as np

#: Side of the probe input; doubled (up to MAX_PROBE_SIDE) while the measured field reaches its border.
PROBE_SIDE = 256
MAX_PROBE_SIDE = 1024
_RADII = weakref.WeakKeyDictionary()


def receptive_radius(network, in_channels=1):
    """Pixels of context on each side that one output pixel of ``network`` depends on, or None if unbounded.

    Measured once per network (cached) from the gradient of a central output pixel with respect to the input,
    on a random 2-image batch on the network's device: the field is where that gradient is non-zero. None means
    the field reached the border of a ``MAX_PROBE_SIDE`` input (global normalization or pooling), so no overlap
    makes tiles seamless, or that the central output does not depend on the input at all.
    """
    if network not in _RADII:
        _RADII[network] = _measure(network, in_channels)
    return _RADII[network]


def context_overlap(network, in_channels=1, tile_size=None, fallback=64):
    """The tile overlap that covers the network's receptive field: twice its radius, rounded up to the network's
    ``size_divisor``; ``fallback`` for a network whose field is unbounded.

    With a ``tile_size``, the overlap is at most half the tile (rounded down to the size divisor), so that small
    tiles still step by half their side (at most 4 times the tiles of no overlap) instead of failing; such tiles
    see less context than the field, and their seams show again.
    """
    radius = receptive_radius(network, in_channels)
    multiple = getattr(network, "size_divisor", 1)
    overlap = fallback if radius is None else math.ceil(2 * radius / multiple) * multiple
    if tile_size is not None:
        overlap = min(overlap, tile_size // 2 // multiple * multiple)
    return overlap


def _measure(network, in_channels):
    import torch

    parameter = next(network.parameters())
    side = PROBE_SIDE
    while side <= MAX_PROBE_SIDE:
        generator = torch.Generator().manual_seed(0)
        probe = torch.randn(2, in_channels, side, side, generator=generator).to(parameter.device, parameter.dtype)
        probe.requires_grad_(True)
        with torch.enable_grad():
            output = network(probe)
            centre = output[:, :, output.shape[-2] // 2, output.shape[-1] // 2].sum()
            (gradient,) = torch.autograd.grad(centre, probe)
        rows, columns = np.nonzero(gradient.abs().sum(dim=(0, 1)).cpu().numpy())
        if rows.size == 0:  # the centre does not depend on the input (dead units): nothing to measure
            return None
        radius = int(max(side // 2 - rows.min(), rows.max() - side // 2,
                         side // 2 - columns.min(), columns.max() - side // 2))
        if radius < side // 2 - 1:
            return radius
        side *= 2
    return None
