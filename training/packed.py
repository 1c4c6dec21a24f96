"""Images of different sizes held in one flat tensor per pyramid level, and bilinear sampling from them.

Training images (and their targets) are decoded once and kept in device memory: every image's channels are laid
end to end in a ``C x total_pixels`` tensor, with each image's start and size recorded, so images of any size
share one tensor. Each image carries a border of zeros (1 pixel above and left, 2 below and right), so a bilinear
read never needs a bounds check: coordinates are clamped into the border, where the values are 0. Levels 1 and 2 are 2x and 4x area-averaged copies (mip-maps): a crop drawn at a
quarter of the original size samples the 4x level, so small objects are averaged, not aliased away. Channels of
thin lines (the gaps between touching cells) take the block maximum instead, so the lines stay in every level.

:func:`sample` reads any set of per-sample coordinate grids from such a stack in one batched gather (bilinear, zero
outside each image), on the CPU or a GPU alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

#: Pyramid levels kept: 1x, 1/2 and 1/4 of the original size.
LEVELS = 3

#: Zero border around every packed image: left, right, top, bottom.
BORDER = (1, 2, 1, 2)


@dataclass
class PackedStack:
    """``N`` images of ``C`` channels, each of its own size, at :data:`LEVELS` resolutions, in one tensor.

    Attributes
    ----------
    values : Tensor
        ``C x P``: every bordered image at every level, row-major, one after the other.
    starts, heights, widths : Tensor
        ``LEVELS x N`` int64: where each bordered image begins in ``values`` at each level and its size there
        (without the border).
    """

    values: torch.Tensor
    starts: torch.Tensor
    heights: torch.Tensor
    widths: torch.Tensor

    def to(self, device) -> PackedStack:
        """A copy on ``device``."""
        return PackedStack(self.values.to(device), self.starts.to(device), self.heights.to(device),
                           self.widths.to(device))


def pack(arrays: list[np.ndarray], dtype=torch.float16, max_channels: tuple = ()) -> PackedStack:
    """Pack ``C x H x W`` (or ``H x W``) arrays of any sizes into a :class:`PackedStack` of ``dtype``.

    Each further level averages 2 x 2 blocks of the one before (a block at an odd edge averages what it holds);
    the channels numbered in ``max_channels`` take the blocks' maxima instead.
    """
    parts = []
    sizes = np.zeros((3, LEVELS, len(arrays)), np.int64)  # start, height, width
    for index, array in enumerate(arrays):
        level = torch.from_numpy(np.asarray(array, np.float32))
        level = level[None] if level.ndim == 2 else level
        for k in range(LEVELS):
            if k:
                level = _halved(level, list(max_channels))
            parts.append(F.pad(level, BORDER).flatten(1).to(dtype))
            sizes[1:, k, index] = level.shape[1:]
    areas = ((sizes[1] + 3) * (sizes[2] + 3)).T.ravel()  # in the order of `parts`: image by image, level by level
    sizes[0] = (np.cumsum(areas) - areas).reshape(len(arrays), LEVELS).T
    starts, heights, widths = (torch.from_numpy(part) for part in sizes)
    return PackedStack(torch.cat(parts, dim=1), starts, heights, widths)


def _halved(level: torch.Tensor, max_channels: list) -> torch.Tensor:
    """The next pyramid level of ``C x H x W`` ``level``: 2 x 2 block means, or block maxima in ``max_channels``."""
    halved = F.avg_pool2d(level[None], 2, ceil_mode=True)[0]
    if max_channels:
        halved[max_channels] = F.max_pool2d(level[None, max_channels], 2, ceil_mode=True)[0]
    return halved


def level_for_scale(scale: torch.Tensor) -> torch.Tensor:
    """The pyramid level to sample for each zoom ``scale`` (output pixels per original pixel): round(log2(1/s))."""
    return torch.round(-torch.log2(scale)).clamp(0, LEVELS - 1).long()


def sample(stack: PackedStack, index: torch.Tensor, level: torch.Tensor, y: torch.Tensor,
           x: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of images ``index`` at original-resolution coordinates ``y, x``, from pyramid ``level``.

    Parameters
    ----------
    stack : PackedStack
    index, level : Tensor
        ``B`` int64: the image and pyramid level of each sample.
    y, x : Tensor
        ``B x H x W`` float32 coordinates in pixels of the original image (pixel centres at integers).

    Returns
    -------
    Tensor
        ``B x C x H x W`` float32; pixels outside the image count as 0. One ``index_select`` reads the four
        corners of every pixel.
    """
    start, height, width = (part[level, index].view(-1, 1, 1) for part in (stack.starts, stack.heights, stack.widths))
    step = (2.0 ** level).view(-1, 1, 1)
    y = torch.minimum(((y + 0.5) / step - 0.5).clamp(min=-1.0), height)  # pixel centres of the level, clamped
    x = torch.minimum(((x + 0.5) / step - 0.5).clamp(min=-1.0), width)   # into the zero border
    y0, x0 = torch.floor(y), torch.floor(x)
    fy, fx = (y - y0)[:, None], (x - x0)[:, None]
    row_length = width + 3
    corner = start + (y0.long() + 1) * row_length + (x0.long() + 1)
    offsets = torch.stack([torch.zeros_like(row_length), torch.ones_like(row_length), row_length, row_length + 1])
    values = stack.values
    v00, v01, v10, v11 = values.index_select(1, (corner + offsets).flatten()).view(
        values.shape[0], 4, *corner.shape).float().permute(1, 2, 0, 3, 4)  # 4 x B x C x H x W
    top, bottom = v00 + (v01 - v00) * fx, v10 + (v11 - v10) * fx
    return top + (bottom - top) * fy
