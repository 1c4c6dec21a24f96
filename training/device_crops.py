"""Augmented training crops made a batch at a time on the training device (GPU or CPU).

The decoded, normalized images and their targets (masks, weight maps, densities) are packed once into device
memory (:mod:`training.packed`). Each batch then takes a few tensor operations: draw per-crop parameters, build
every crop's source grid (window, zoom 0.25-4x, flips/rotations, elastic; :mod:`training.warps`), gather image and
targets through it from the pyramid level that fits the zoom, change intensities (:mod:`training.photometric`) and
swap some crops for empty ones (:mod:`training.negatives`).

Targets are resampled by kind: ``"binary"`` (masks: bilinear, then > 0.5), ``"smooth"`` (weight maps: bilinear;
their border bands scale with the cells), ``"mass"`` (densities: bilinear times the area factor of the warp,
so a crop's sum stays its count at any zoom) and ``"gaps"`` (the one-pixel gaps between touching cells, read
from block maxima and cut out of the binary targets, so that touching cells stay apart in a crop zoomed out to a
quarter; not returned).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch
from scipy import ndimage

from .batches import device_generator, epoch_order, steps_for
from .crops import Record
from .negatives import KINDS, SYNTHETIC
from .packed import level_for_scale, pack, sample
from .photometric import Photometric, chosen, normalize_percentile, uniform
from .warps import area_factor, elastic_displacement, mirrored_into, source_coordinates, window_centres

TARGET_KINDS = ("binary", "smooth", "mass", "gaps")


@dataclass
class CropSettings:
    """Random settings of the crops.

    Attributes
    ----------
    crop_size : int
        Side of the crops (network input), pixels.
    scale_p, scale_range : float, (float, float)
        Probability of a zoom, drawn log-uniformly from ``scale_range`` (2 = cells twice as large); otherwise 1.
    flips : bool
        One of the eight flips/90-degree rotations per crop.
    elastic_p, elastic, elastic_spacing : float
        Probability of an elastic deformation, standard deviation of its displacements (crop pixels) and the
        spacing of their control points.
    negative_p : float
        Share of crops replaced by an empty one, of the ``negative_kinds`` (equally often).
    negative_kinds : tuple of str
        Kinds of empty crops drawn (names in :data:`training.negatives.KINDS`).
    min_range_over_noise : float
        The card's noise floor: empty crops are normalized with it, as inference normalizes an empty field
        (without it their noise is stretched to full contrast, which inference never shows a network).
    """

    crop_size: int = 256
    scale_p: float = 0.5
    scale_range: tuple = (0.25, 4.0)
    flips: bool = True
    elastic_p: float = 0.3
    elastic: float = 2.0
    elastic_spacing: float = 32.0
    negative_p: float = 0.1
    negative_kinds: tuple = KINDS
    min_range_over_noise: float = 0.0

    def __post_init__(self):
        unknown = set(self.negative_kinds) - set(KINDS)
        if unknown or not self.negative_kinds:
            raise ValueError(f"Negative crop kinds {sorted(unknown) or 'none'}: name one or more of {KINDS}.")


def gap_level(scale: torch.Tensor) -> torch.Tensor:
    """The value from which a bilinearly read gap band is cut out of a crop of zoom ``scale``.

    Zoomed in or not at all: one half, exactly where the mask's own ``> 0.5`` rule leaves the gap (at zoom 1 the
    gap target changes nothing). Zoomed out: one quarter, since the crop pixel nearest a band one pixel wide at its
    pyramid level (crop pixels up to 1.41 level pixels apart) reads at least 0.29 there, and the level's averaged
    masks reach over the band's ends (the notches between round cells) by a fraction of a pixel.
    """
    return torch.where(scale < 1.0, 0.25, 0.5)


def background_windows(foreground: np.ndarray, side: int, per_image: int, rng: np.random.Generator,
                       margin: int = 4) -> np.ndarray:
    """Centres (``k x 2``, row and column) of up to ``per_image`` random ``side`` x ``side`` windows with no
    foreground pixel within ``margin`` pixels."""
    near = ndimage.binary_dilation(foreground, iterations=margin) if foreground.any() else foreground
    height, width = near.shape
    if height < side or width < side:
        return np.zeros((0, 2))
    covered = ndimage.uniform_filter(near.astype(np.float32), size=side, mode="constant")
    half = side // 2
    rows, cols = np.nonzero(covered[half:height - side + half + 1, half:width - side + half + 1] < 0.5 / side**2)
    if not len(rows):
        return np.zeros((0, 2))
    picked = rng.choice(len(rows), size=min(per_image, len(rows)), replace=False)
    return np.stack([rows[picked] + (side - 1) / 2, cols[picked] + (side - 1) / 2], axis=1)


@dataclass
class DeviceCrops:
    """Augmented crops of preloaded records, ``crops_per_image`` per image and epoch, made on the device.

    Parameters
    ----------
    records : list of Record
        Normalized images; records sharing one ``targets`` dict share its device copy.
    targets : dict
        Target name -> kind (``"binary"``, ``"smooth"``, ``"mass"`` or ``"gaps"``), in the order they are packed.
    empty : dict
        Target name -> its value in an empty (negative) crop, e.g. the background class weight.
    """

    records: list
    targets: dict
    empty: dict
    batch_size: int
    settings: CropSettings = field(default_factory=CropSettings)
    photometric: Photometric = field(default_factory=Photometric)
    crops_per_image: int = 12
    repeats: dict = field(default_factory=dict)
    seed: int = 0
    target_dtype: torch.dtype = torch.float16

    def __post_init__(self):
        for name, kind in self.targets.items():
            if kind not in TARGET_KINDS:
                raise ValueError(f"Target {name!r} has kind {kind!r}; use one of {TARGET_KINDS}.")
        shared, owner = {}, []
        for record in self.records:
            owner.append(shared.setdefault(id(record.targets), (len(shared), record.targets))[0])
        unique = [targets for _, targets in shared.values()]
        self.images = pack([record.image for record in self.records])
        gap_channels = tuple(channel for channel, kind in enumerate(self.targets.values()) if kind == "gaps")
        self.packed_targets = pack([np.stack([t[name] for name in self.targets]) for t in unique], self.target_dtype,
                                   max_channels=gap_channels)
        self.target_of = torch.tensor(owner)
        self.order = torch.tensor([index for index, record in enumerate(self.records)
                                   for _ in range(self.repeats.get(record.id, 1) * self.crops_per_image)])
        self.backgrounds = self._background_windows(unique, owner)
        self.device = torch.device("cpu")

    @property
    def background_side(self) -> int:
        """Side of the real background windows (mirrored to the crop's size)."""
        return max(self.settings.crop_size // 2, 4)

    def _background_windows(self, unique: list, owner: list) -> torch.Tensor:
        """``M x 3`` (image, centre row, centre column) windows of real background, a few per image."""
        rng = np.random.default_rng(self.seed)
        marked = [name for name, kind in self.targets.items() if kind != "smooth"]
        centres = [background_windows(np.any([targets[name] > 0 for name in marked], axis=0), self.background_side,
                                      2, rng) for targets in unique]
        rows = [(image, *centre) for image, target in enumerate(owner) for centre in centres[target]]
        return torch.tensor(rows, dtype=torch.float32).reshape(-1, 3)

    def to(self, device) -> DeviceCrops:
        """Move the packed data to ``device`` (in place) and return self."""
        device = torch.device(device)
        self.images, self.packed_targets = self.images.to(device), self.packed_targets.to(device)
        self.target_of, self.backgrounds = self.target_of.to(device), self.backgrounds.to(device)
        self.device = device
        return self

    def steps(self, world: int) -> int:
        return steps_for(len(self.order), self.batch_size, world)

    def epoch(self, epoch: int, rank: int = 0, world: int = 1) -> Iterator[dict]:
        order = self.order.to(self.device)[epoch_order(len(self.order), self.seed, epoch, rank, world).to(self.device)]
        generator = device_generator(self.seed, epoch, rank, self.device)
        for start in range(0, len(order), self.batch_size):
            yield self.batch(order[start:start + self.batch_size], generator)

    def batch(self, index: torch.Tensor, generator: torch.Generator) -> dict:
        """Augmented crops of images ``index`` (on the device): ``{"image": B x 1 x S x S, target: ...}``."""
        settings, batch, device = self.settings, len(index), self.device
        negative = chosen(settings.negative_p, batch, generator, device)
        drawn = torch.tensor([KINDS.index(name) for name in settings.negative_kinds], device=device)
        kind = drawn[torch.randint(len(drawn), (batch,), generator=generator, device=device)]
        background = negative & (kind == KINDS.index("background")) & (len(self.backgrounds) > 0)
        index, centre_y, centre_x, scale = self._windows(index, background, generator)
        dihedral = torch.randint(8 if settings.flips else 1, (batch,), generator=generator, device=device)
        amplitude = torch.where(chosen(settings.elastic_p, batch, generator, device),
                                uniform(0, settings.elastic, batch, generator, device), torch.zeros(batch, device=device))
        displacement = elastic_displacement(batch, settings.crop_size, amplitude, settings.elastic_spacing, generator)
        y, x = source_coordinates(centre_y, centre_x, scale, dihedral, settings.crop_size, displacement)
        if background.any():
            y, x = self._mirrored_into_windows(y, x, centre_y, centre_x, background)
        level = level_for_scale(scale)
        image = self._with_synthetic_negatives(sample(self.images, index, level, y, x), negative & ~background, kind,
                                               generator)
        image = self.photometric(image, generator)
        negatives = torch.nonzero(negative).flatten()
        if len(negatives):
            image[negatives] = normalize_percentile(image[negatives],
                                                    min_range_over_noise=self.settings.min_range_over_noise)
        values = sample(self.packed_targets, self.target_of[index], level, y, x)
        kinds = list(self.targets.values())
        level_of_gap = gap_level(scale).view(-1, 1, 1, 1)
        outside_gaps = torch.ones_like(values[:, :1])
        for channel in (channel for channel, kind in enumerate(kinds) if kind == "gaps"):
            outside_gaps = outside_gaps * (values[:, channel:channel + 1] < level_of_gap)
        out = {"image": image}
        for channel, (name, kind_of_target) in enumerate(self.targets.items()):
            if kind_of_target == "gaps":
                continue
            target = values[:, channel:channel + 1]
            if kind_of_target == "binary":
                target = (target > 0.5).float() * outside_gaps
            elif kind_of_target == "mass":
                target = target * area_factor(y, x)
            out[name] = torch.where(negative.view(-1, 1, 1, 1), torch.full_like(target, self.empty[name]), target)
        return out

    def _windows(self, index, background, generator):
        """Image, window centre and zoom of each crop: random windows, or real background windows where asked."""
        settings, size, batch, device = self.settings, self.settings.crop_size, len(index), self.device
        low, high = (math.log(value) for value in settings.scale_range)
        scale = torch.where(chosen(settings.scale_p, batch, generator, device),
                            torch.exp(uniform(low, high, batch, generator, device)), torch.ones(batch, device=device))
        centre_y, centre_x = window_centres(self.images.heights[0, index].float(), self.images.widths[0, index].float(),
                                            size / scale, generator)
        if background.any():
            window = self.backgrounds[torch.randint(len(self.backgrounds), (batch,), generator=generator, device=device)]
            index = torch.where(background, window[:, 0].long(), index)
            centre_y = torch.where(background, window[:, 1], centre_y)
            centre_x = torch.where(background, window[:, 2], centre_x)
            scale = torch.where(background, torch.ones_like(scale), scale)
        return index, centre_y, centre_x, scale

    def _mirrored_into_windows(self, y, x, centre_y, centre_x, background):
        """Coordinates of the ``background`` crops reflected into their windows, at the image's own pixel size.

        A window is half a crop wide; mirrored rather than zoomed 2x, its noise keeps the grain an empty field has
        at inference (a bilinear zoom smooths it, the noise floor then under-rates the noise and the field is
        stretched into blobs).
        """
        width, keep = self.background_side - 1.0, background.view(-1, 1, 1)
        return (torch.where(keep, mirrored_into(y, centre_y.view(-1, 1, 1), width), y),
                torch.where(keep, mirrored_into(x, centre_x.view(-1, 1, 1), width), x))

    def _with_synthetic_negatives(self, image, synthetic, kind, generator) -> torch.Tensor:
        """``image`` with the ``synthetic`` crops replaced by normalized noise, constant or out-of-focus fields."""
        for name, make in SYNTHETIC.items():
            replaced = torch.nonzero(synthetic & (kind == KINDS.index(name))).flatten()
            if len(replaced):
                image[replaced] = normalize_percentile(make(len(replaced), image.shape[-1], generator, self.device))
        return image
