"""Batched intensity augmentations of normalized crops (``B x 1 x H x W``), each with its own per-sample parameters.

Images are percentile-normalized (background near 0, cells near 1), as at inference. The functions change the image
only; the targets stay as they are. :class:`Photometric` draws the parameters and applies them in a fixed order.
Everything is torch code that runs on the CPU or a GPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cellcount_core.images.normalization import CLIP_RANGE


def uniform(low: float, high: float, batch: int, generator: torch.Generator, device) -> torch.Tensor:
    """``batch`` draws from U(low, high)."""
    return low + (high - low) * torch.rand(batch, generator=generator, device=device)


def chosen(p: float, batch: int, generator: torch.Generator, device) -> torch.Tensor:
    """``batch`` booleans, each True with probability ``p``."""
    return torch.rand(batch, generator=generator, device=device) < p


def smooth_field(batch: int, shape: tuple, points: int, generator: torch.Generator, device) -> torch.Tensor:
    """Random smooth fields ``batch x 1 x H x W`` of unit standard deviation at ``points`` x ``points`` knots.

    Few knots give gradients and uneven illumination; many give a fine grain (structure about ``H / points``
    pixels across).
    """
    knots = torch.randn(batch, 1, points, points, generator=generator, device=device)
    field = F.interpolate(knots, size=tuple(shape), mode="bicubic", align_corners=True)
    return field / field.flatten(1).std(dim=1).clamp(min=1e-6).view(-1, 1, 1, 1)


def gamma(images: torch.Tensor, exponent: torch.Tensor) -> torch.Tensor:
    """``x ** exponent`` per sample where ``x > 0`` (negative values stay): exponents above 1 dim faint cells,
    below 1 brighten them."""
    return torch.where(images > 0, images.clamp(min=0) ** exponent.view(-1, 1, 1, 1), images)


def contrast_brightness(images: torch.Tensor, contrast: torch.Tensor, brightness: torch.Tensor) -> torch.Tensor:
    """Scale each image's deviation from its mean by ``contrast`` and add ``brightness``."""
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return (images - mean) * contrast.view(-1, 1, 1, 1) + mean + brightness.view(-1, 1, 1, 1)


def add_field(images: torch.Tensor, field: torch.Tensor, amplitude: torch.Tensor) -> torch.Tensor:
    """Add ``amplitude`` times a smooth ``field`` (background gradients, uneven illumination)."""
    return images + field * amplitude.view(-1, 1, 1, 1)


def texture(images: torch.Tensor, grain: torch.Tensor, amplitude: torch.Tensor) -> torch.Tensor:
    """Multiply by ``1 + amplitude * grain`` (at least 0): a chromatin-like grain where there is signal (the cells),
    little on the dark background."""
    return images * (1 + grain * amplitude.view(-1, 1, 1, 1)).clamp(min=0)


def specks(images: torch.Tensor, centres: torch.Tensor, sigma: torch.Tensor, amplitude: torch.Tensor) -> torch.Tensor:
    """Add Gaussian specks (debris, hot pixels, dark dust) that are not cells.

    ``centres`` is ``B x n x 2`` (row, column), ``sigma`` and ``amplitude`` are ``B x n`` (amplitude 0: no speck;
    negative: a dark speck).
    """
    size_y, size_x = images.shape[-2:]
    rows = torch.arange(size_y, device=images.device, dtype=torch.float32)
    cols = torch.arange(size_x, device=images.device, dtype=torch.float32)
    spread = 2 * sigma[..., None] ** 2
    along_y = torch.exp(-(rows - centres[..., 0:1]) ** 2 / spread)
    along_x = torch.exp(-(cols - centres[..., 1:2]) ** 2 / spread)
    return images + torch.einsum("bn,bnh,bnw->bhw", amplitude, along_y, along_x)[:, None]


def random_debris(images: torch.Tensor, present: torch.Tensor, most: int, generator: torch.Generator) -> torch.Tensor:
    """Add about ``most / 2`` (up to ``most``) random :func:`specks` to the images where ``present``: sigma 0.5-1 px
    (smaller than any cell the zoom makes), amplitude 0.3-1.2, seven in ten bright."""
    batch, device = images.shape[0], images.device
    shape = (batch, most)
    centres = torch.rand(*shape, 2, generator=generator, device=device) * (
        torch.tensor(images.shape[-2:], device=device, dtype=torch.float32) - 1)
    sigma = uniform(0.5, 1.0, batch * most, generator, device).view(shape)
    amplitude = uniform(0.3, 1.2, batch * most, generator, device).view(shape)
    sign = torch.where(chosen(0.7, batch * most, generator, device), 1.0, -1.0).view(shape)
    kept = chosen(0.5, batch * most, generator, device).view(shape) & present[:, None]
    return specks(images, centres, sigma, amplitude * sign * kept)


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur with a per-sample ``sigma`` in pixels (0: unchanged), borders reflected."""
    radius = max(int(math.ceil(3 * float(sigma.max()))), 1)
    taps = torch.arange(-radius, radius + 1, device=images.device, dtype=torch.float32)
    kernels = torch.exp(-taps**2 / (2 * sigma.clamp(min=1e-3).view(-1, 1) ** 2))
    kernels = kernels / kernels.sum(dim=1, keepdim=True)  # B x K
    batch = images.shape[0]
    flat = images.transpose(0, 1)  # 1 x B x H x W: one group per sample
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="reflect"), kernels.view(batch, 1, -1, 1), groups=batch)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="reflect"), kernels.view(batch, 1, 1, -1), groups=batch)
    return flat.transpose(0, 1)


def noise(images: torch.Tensor, read_sd: torch.Tensor, shot_gain: torch.Tensor,
          generator: torch.Generator) -> torch.Tensor:
    """Add Gaussian noise of variance ``read_sd^2 + shot_gain * max(x, 0)`` (camera read noise and shot noise)."""
    variance = read_sd.view(-1, 1, 1, 1) ** 2 + shot_gain.view(-1, 1, 1, 1) * images.clamp(min=0)
    return images + torch.randn(images.shape, generator=generator, device=images.device) * variance.sqrt()


def noise_sigma(images: torch.Tensor) -> torch.Tensor:
    """Each crop's noise standard deviation (``B x 1 x 1 x 1``), Immerkaer's estimate as inference measures it
    (``cellcount_core.images.normalization.noise_sigma``, without its quantization floor)."""
    kernel = torch.tensor([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]], device=images.device)
    response = F.conv2d(images.float(), kernel.view(1, 1, 3, 3)).abs().flatten(1)
    return (response.median(dim=1).values / (0.6745 * 6.0)).view(-1, 1, 1, 1)


def normalize_percentile(images: torch.Tensor, low: float = 1.0, high: float = 99.8,
                         min_range_over_noise: float = 0.0) -> torch.Tensor:
    """Per-crop percentile normalization as at inference (``cellcount_core.images.normalization``): the ``low`` and
    ``high`` percentiles go to 0 and 1, clipped to ``CLIP_RANGE``; a constant crop becomes 0. With
    ``min_range_over_noise`` (the card's noise floor) the range spans at least that many noise standard
    deviations, so that an empty crop's noise stays dim, as inference keeps an empty field's."""
    flat = images.flatten(1)
    bounds = torch.quantile(flat, torch.tensor([low / 100, high / 100], device=images.device), dim=1)
    lo, hi = bounds[0].view(-1, 1, 1, 1), bounds[1].view(-1, 1, 1, 1)
    hi = torch.where(hi > lo, hi, flat.max(dim=1).values.view(-1, 1, 1, 1))
    if min_range_over_noise:
        hi = torch.maximum(hi, lo + min_range_over_noise * noise_sigma(images))
    span = hi - lo
    scaled = (images - lo) / span.clamp(min=1e-12)
    return torch.where(span > 0, scaled.clamp(*CLIP_RANGE), torch.zeros_like(images))


@dataclass
class Photometric:
    """Random intensity changes; each has a probability per crop and a range.

    Attributes
    ----------
    texture_p, texture : float
        Chromatin-like grain: ``x * (1 + a * grain)``, ``a`` up to ``texture``, grain ``texture_px`` across.
    gamma_p, gamma : float
        ``x ** g`` with ``log g`` uniform in ``+-log(gamma)``.
    gradient_p, gradient : float
        A smooth background field (3 x 3 knots) of standard deviation up to ``gradient``.
    debris_p, debris : float, int
        Up to ``debris`` specks (sigma 0.5-1 px, bright or dark, amplitude 0.3-1.2) that are not cells.
    blur_p, blur : float
        Gaussian blur, sigma up to ``blur`` pixels (out-of-focus).
    brightness, contrast : float
        Additive shift up to ``brightness``; contrast factor within ``1 +- contrast``.
    noise_p, noise, shot : float
        Gaussian read noise (sd up to ``noise``) plus shot noise (variance gain up to ``shot``).
    """

    texture_p: float = 0.3
    texture: float = 0.6
    texture_px: float = 3.0
    gamma_p: float = 0.3
    gamma: float = 1.6
    gradient_p: float = 0.3
    gradient: float = 0.2
    debris_p: float = 0.2
    debris: int = 6
    blur_p: float = 0.2
    blur: float = 1.5
    brightness: float = 0.1
    contrast: float = 0.2
    noise_p: float = 0.5
    noise: float = 0.05
    shot: float = 0.02

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Return augmented copies of ``images`` (``B x 1 x H x W``)."""
        batch, shape, device = images.shape[0], images.shape[-2:], images.device

        def draw(p, low, high, neutral=0.0):  # U(low, high) with probability p, else the neutral value
            return torch.where(chosen(p, batch, generator, device), uniform(low, high, batch, generator, device),
                               torch.full((batch,), float(neutral), device=device))

        grain_points = max(int(round(max(shape) / self.texture_px)), 2)
        images = texture(images, smooth_field(batch, shape, grain_points, generator, device),
                         draw(self.texture_p, 0.0, self.texture))
        log_gamma = math.log(self.gamma)
        images = gamma(images, torch.exp(draw(self.gamma_p, -log_gamma, log_gamma)))
        images = add_field(images, smooth_field(batch, shape, 3, generator, device),
                           draw(self.gradient_p, 0.0, self.gradient))
        images = random_debris(images, chosen(self.debris_p, batch, generator, device), self.debris, generator)
        if self.blur_p > 0:
            images = gaussian_blur(images, draw(self.blur_p, 0.0, self.blur))
        images = contrast_brightness(images, uniform(1 - self.contrast, 1 + self.contrast, batch, generator, device),
                                     uniform(-self.brightness, self.brightness, batch, generator, device))
        noisy = chosen(self.noise_p, batch, generator, device)
        return noise(images, uniform(0, self.noise, batch, generator, device) * noisy,
                     uniform(0, self.shot, batch, generator, device) * noisy, generator)
