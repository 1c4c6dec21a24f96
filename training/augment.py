"""Data augmentation that keeps an image and its targets aligned.

Geometric transforms (random crop, flips, 90-degree rotations, elastic deformation as in c-ResUnet) move the image
and every target together: integer and boolean targets (masks, labels) use nearest-neighbour interpolation, float
targets (weight maps, densities) linear. Intensity transforms (gamma, brightness and contrast, Gaussian noise, 5x5 blur as
in DeepCellCount) touch the image only. Images are expected normalized (background near 0, cells near 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


def random_crop(image: np.ndarray, targets: dict, size: int, rng: np.random.Generator):
    """Cut the same random ``size`` x ``size`` window from the image and targets.

    Images smaller than ``size`` are padded with zeros (image, masks, weights and densities alike), so padded
    pixels are background with zero loss weight.
    """
    h, w = image.shape
    pad = ((0, max(size - h, 0)), (0, max(size - w, 0)))
    if pad[0][1] or pad[1][1]:
        image = np.pad(image, pad)
        targets = {name: np.pad(array, pad) for name, array in targets.items()}
        h, w = image.shape
    top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    window = (slice(top, top + size), slice(left, left + size))
    return image[window], {name: array[window] for name, array in targets.items()}


def flip_rotate(image: np.ndarray, targets: dict, rng: np.random.Generator):
    """Apply one of the eight flips/90-degree rotations of the square (dihedral group), chosen at random."""
    k, flip = int(rng.integers(4)), bool(rng.integers(2))

    def move(array):
        array = np.rot90(array, k)
        return np.ascontiguousarray(array[:, ::-1] if flip else array)

    return move(image), {name: move(array) for name, array in targets.items()}


def _remap(array: np.ndarray, map_x: np.ndarray, map_y: np.ndarray) -> np.ndarray:
    nearest = not np.issubdtype(array.dtype, np.floating)
    source = array.astype(np.float32) if nearest else array
    out = cv2.remap(source, map_x, map_y, cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REFLECT_101)
    return out.astype(array.dtype) if nearest else out


def elastic_deform(image: np.ndarray, targets: dict, rng: np.random.Generator, alpha: float = 30.0,
                   sigma: float = 6.0):
    """Elastic deformation (Simard et al. 2003): a random displacement field smoothed by a Gaussian.

    Parameters
    ----------
    alpha : float
        Displacement scale in pixels before smoothing.
    sigma : float
        Smoothing of the displacement field, in pixels (larger = smoother, gentler).
    """
    h, w = image.shape
    dx, dy = (cv2.GaussianBlur(rng.uniform(-1, 1, (h, w)).astype(np.float32), (0, 0), sigma) * alpha
              for _ in range(2))
    grid_y, grid_x = np.mgrid[0:h, 0:w].astype(np.float32)
    map_x, map_y = grid_x + dx, grid_y + dy
    return _remap(image, map_x, map_y), {name: _remap(a, map_x, map_y) for name, a in targets.items()}


@dataclass
class Augmenter:
    """Random augmentation of an (image, targets) pair; each transform has its own probability or range.

    Attributes
    ----------
    crop_size : int or None
        Side of the random crop (None keeps the whole image).
    flips : bool
        Random flips and 90-degree rotations.
    elastic_p, elastic_alpha, elastic_sigma : float
        Probability and parameters of the elastic deformation.
    brightness, contrast : float
        Maximum additive brightness shift and relative contrast change.
    gamma_p, gamma : float
        Probability of a gamma change ``x -> x ** g`` (x >= 0) with ``log g`` uniform in ``+-log(gamma)``: makes
        bright cells dimmer or dim cells brighter relative to the rest.
    noise_p, noise_std : float
        Probability and maximum standard deviation of additive Gaussian noise.
    blur_p : float
        Probability of a 5x5 mean blur.
    """

    crop_size: int | None = 256
    flips: bool = True
    elastic_p: float = 0.3
    elastic_alpha: float = 30.0
    elastic_sigma: float = 6.0
    brightness: float = 0.1
    contrast: float = 0.2
    gamma_p: float = 0.3
    gamma: float = 1.6
    noise_p: float = 0.5
    noise_std: float = 0.05
    blur_p: float = 0.2

    def __call__(self, image: np.ndarray, targets: dict, rng: np.random.Generator):
        """Return the augmented ``(image, targets)``; inputs are not modified."""
        if self.crop_size:
            image, targets = random_crop(image, targets, self.crop_size, rng)
        if self.flips:
            image, targets = flip_rotate(image, targets, rng)
        if rng.random() < self.elastic_p:
            image, targets = elastic_deform(image, targets, rng, self.elastic_alpha, self.elastic_sigma)
        image = np.array(image, dtype=np.float32)
        if rng.random() < self.gamma_p:
            image = np.maximum(image, 0) ** np.float32(np.exp(rng.uniform(-1, 1) * np.log(self.gamma)))
        if rng.random() < self.blur_p:
            image = cv2.blur(image, (5, 5))
        image = (image - image.mean()) * (1 + rng.uniform(-self.contrast, self.contrast)) + image.mean()
        image += rng.uniform(-self.brightness, self.brightness)
        if rng.random() < self.noise_p:
            image += rng.normal(0.0, rng.uniform(0, self.noise_std), image.shape).astype(np.float32)
        return image.astype(np.float32), targets
