"""Crops without cells (their targets are empty): what an empty well looks like after normalization.

Percentile normalization stretches whatever an image holds to full contrast, so an empty field arrives at the
network as high-contrast noise, a flat image or a smooth blur; networks never shown such crops count hundreds of
"cells" in them. The kinds here are synthetic; real background windows (cropped from the training images where no
cell is near) are drawn by :mod:`training.device_crops`. Every negative is normalized by its own percentiles, as a
whole empty image is at inference.
"""

from __future__ import annotations

import torch

from .photometric import smooth_field, uniform

#: Kinds of negative crops, in the order of their codes.
KINDS = ("background", "noise", "constant", "out_of_focus")


def camera_noise(batch: int, size: int, generator: torch.Generator, device) -> torch.Tensor:
    """Pure noise: Poisson counts of a random mean (1-100 photons) plus Gaussian read noise."""
    mean = uniform(1.0, 100.0, batch, generator, device).view(-1, 1, 1, 1).expand(batch, 1, size, size)
    read = torch.randn(batch, 1, size, size, generator=generator, device=device) * 2.0
    return torch.poisson(mean.contiguous(), generator=generator) + read


def constant(batch: int, size: int, generator: torch.Generator, device) -> torch.Tensor:
    """Flat images of a random value."""
    return uniform(0.0, 1.0, batch, generator, device).view(-1, 1, 1, 1).expand(batch, 1, size, size).clone()


def out_of_focus(batch: int, size: int, generator: torch.Generator, device) -> torch.Tensor:
    """Blank, out-of-focus fields: a smooth blur with a little noise on top."""
    field = smooth_field(batch, (size, size), 4, generator, device)
    grain = uniform(0.0, 0.05, batch, generator, device).view(-1, 1, 1, 1)
    return field + grain * torch.randn(batch, 1, size, size, generator=generator, device=device)


SYNTHETIC = {"noise": camera_noise, "constant": constant, "out_of_focus": out_of_focus}
