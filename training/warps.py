"""Per-sample coordinate grids: where each pixel of an augmented crop comes from in its original image.

One grid per crop combines the random window (centre), the zoom (scale), one of the eight flips/90-degree rotations
of the square and an elastic displacement (c-ResUnet); :func:`training.packed.sample` then reads image and targets
through it in one gather. All functions are batched torch code that runs on the CPU or a GPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: The eight flips/90-degree rotations of the square as 2 x 2 matrices acting on (row, column) offsets.
DIHEDRAL = torch.tensor([
    [[1, 0], [0, 1]], [[0, -1], [1, 0]], [[-1, 0], [0, -1]], [[0, 1], [-1, 0]],
    [[1, 0], [0, -1]], [[0, -1], [-1, 0]], [[-1, 0], [0, 1]], [[0, 1], [1, 0]],
], dtype=torch.float32)


def window_centres(size_y: torch.Tensor, size_x: torch.Tensor, window: torch.Tensor,
                   generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random centres of square windows of side ``window`` (pixels) in images of ``size_y x size_x``.

    A window that fits lies wholly inside the image; one larger than the image holds the whole image at a random
    place (the rest is padding). Pixel centres are at integer coordinates.
    """
    u = torch.rand(2, len(window), generator=generator, device=window.device)
    centre_y = (window - 1) / 2 + u[0] * (size_y - window)
    centre_x = (window - 1) / 2 + u[1] * (size_x - window)
    return centre_y, centre_x


def elastic_displacement(batch: int, size: int, amplitude: torch.Tensor, spacing: float,
                         generator: torch.Generator) -> torch.Tensor:
    """Smooth random displacement fields, ``batch x 2 x size x size``, in output pixels.

    Gaussian displacements at control points ``spacing`` pixels apart, interpolated bicubically; ``amplitude``
    (per sample) is their standard deviation (0 gives no deformation).
    """
    points = max(int(round(size / spacing)), 1) + 1
    control = torch.randn(batch, 2, points, points, generator=generator, device=amplitude.device)
    field = F.interpolate(control, size=(size, size), mode="bicubic", align_corners=True)
    return field * amplitude.view(-1, 1, 1, 1)


def source_coordinates(centre_y: torch.Tensor, centre_x: torch.Tensor, scale: torch.Tensor, dihedral: torch.Tensor,
                       size: int, displacement: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Original-image coordinates (``y, x``, each ``B x size x size``) of every pixel of ``B`` crops.

    Output pixel offsets from the crop centre are turned by ``DIHEDRAL[dihedral]``, displaced by ``displacement``
    (``B x 2 x size x size``, output pixels), divided by ``scale`` (>1 enlarges the cells) and added to the centre.
    """
    device = scale.device
    offsets = torch.arange(size, device=device, dtype=torch.float32) - (size - 1) / 2
    rows, cols = torch.meshgrid(offsets, offsets, indexing="ij")
    grid = torch.stack([rows, cols])  # 2 x size x size
    turned = torch.einsum("bij,jhw->bihw", DIHEDRAL.to(device)[dihedral], grid)
    if displacement is not None:
        turned = turned + displacement
    turned = turned / scale.view(-1, 1, 1, 1)
    return centre_y.view(-1, 1, 1) + turned[:, 0], centre_x.view(-1, 1, 1) + turned[:, 1]


def mirrored_into(coordinate: torch.Tensor, centre: torch.Tensor, width: float) -> torch.Tensor:
    """``coordinate`` reflected into ``[centre - width / 2, centre + width / 2]`` (mirrored at the end pixels, which
    are not repeated, as numpy's ``"reflect"`` padding)."""
    low = centre - width / 2
    offset = torch.remainder(coordinate - low, 2 * width)
    return low + width - (offset - width).abs()


def area_factor(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``|det J|`` of the map from crop pixels to original pixels (original pixels per crop pixel), ``B x 1 x H x W``.

    A density resampled through the map keeps its mass when multiplied by this factor (1 / scale^2 for a zoom).
    """
    y_rows, y_cols = torch.gradient(y, dim=(1, 2))
    x_rows, x_cols = torch.gradient(x, dim=(1, 2))
    return (y_rows * x_cols - y_cols * x_rows).abs()[:, None]
