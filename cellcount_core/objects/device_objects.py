"""`postprocess.labels_from_mask` and `diameter.estimate_diameter` with the whole-image work on a torch device.

With the networks on a GPU, the host's morphology bounded `cellcount count` (issue 12: 61 s of a 10000 x 10000
run on an H200, before the host path was made block-parallel). Here the mask and the probability map stay in
device memory for every whole-image step (`device_morphology`: labels, hole filling, distance transforms, and the
sums, extremes and boxes of each component); only the components that may hold several cells (a few per cent)
come to the host, crop by crop, to be split by `postprocess.split_pieces`. The labels are those of the host path,
pixel for pixel (tested on CPU tensors), and the whole image is one block: a 10000 x 10000 map needs about 60
bytes a pixel of device memory at the peak (`BYTES_PER_PIXEL`).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from cellcount_core.objects import device_morphology as morphology
from cellcount_core.objects.diameter import diameter_from_components, measured_diameters
from cellcount_core.objects.postprocess import INSIDE, default_min_size, split_candidates, split_pieces
from cellcount_core.objects.thresholds import PROBABILITY_VALUES, apply_threshold, fixed_threshold
from cellcount_core.running import gpu

__all__ = ["BYTES_PER_PIXEL", "DEVICE_TYPES", "estimate_diameter_on_device", "labels_on_device",
           "objects_if_room", "objects_on_device", "runs_on_device"]

#: Device types whose maps are post-processed here. On a CPU, the host path with OpenCV is 4 to 28 times faster
#: than these torch operations (256 x 300 to 10000 x 10000 maps on 2 cores; BENCHMARKS.md section 9).
DEVICE_TYPES = ("cuda",)
#: Device memory held at the peak of `objects_on_device`, bytes per pixel of the map: 56 measured on CPU tensors
#: (peak resident memory, 2000 x 2000 ideal map; labelling the background, with int64 indices and run ids of its
#: pixels, is the peak), plus the float32 map.
BYTES_PER_PIXEL = 64


def runs_on_device(device, shape) -> bool:
    """Whether a map of this (H, W) shape is post-processed on `device` (a torch device or None): a type in
    `DEVICE_TYPES` whose memory share (`gpu.available_memory`) holds `BYTES_PER_PIXEL` a pixel."""
    if device is None or torch.device(device).type not in DEVICE_TYPES:
        return False
    available = gpu.available_memory(torch.device(device))
    return available is None or BYTES_PER_PIXEL * math.prod(shape) <= available


def objects_if_room(probability, device, **settings) -> tuple[np.ndarray, np.ndarray, float, float] | None:
    """`objects_on_device` where `runs_on_device` says the device can take the map, else None (the caller takes
    the host path). Running out of device memory on the way (other processes on the same GPU) also gives None,
    with a warning; the device's cached memory is released afterwards either way."""
    if not runs_on_device(device, np.shape(probability)):
        return None
    device = torch.device(device)
    try:
        return objects_on_device(probability, device, **settings)
    except torch.cuda.OutOfMemoryError as error:
        warnings.warn(f"Post-processing a {np.shape(probability)} map ran out of memory on {device} "
                      f"({str(error).splitlines()[0]}); it runs on the CPU instead. Other processes on the GPU, "
                      "or a CELLCOUNT_GPU_MEMORY_FRACTION share too small for 64 bytes a pixel, cause this.",
                      RuntimeWarning, stacklevel=3)
        return None
    finally:
        gpu.release_cached_memory(device)


def objects_on_device(probability, device, *, threshold_method: str = "model default",
                      threshold_value: float | None = None, block_size: int = 51, offset: float = 0.0,
                      **postprocess) -> tuple[np.ndarray, np.ndarray, float, float]:
    """`segmentation.labels_from_probability` with the map on `device`: (labels, mask, threshold, diameter), the
    labels and the mask as host arrays. A fixed threshold is applied on the device; Otsu's and the adaptive one
    on the host map. `postprocess`: the keywords of `labels_on_device`.

    Raises
    ------
    ValueError
        For a map that is not 2-D or holds values outside 0..1, and for a bad threshold setting.
    """
    if np.ndim(probability) != 2:
        raise ValueError(f"probability must be a 2-D (H x W) map, got shape {np.shape(probability)}")
    threshold = fixed_threshold(threshold_method, threshold_value)
    on_device = torch.as_tensor(probability, dtype=torch.float32).to(device)
    if on_device.numel() and not bool(torch.isfinite(on_device).all() & (on_device.min() >= 0)
                                      & (on_device.max() <= 1)):
        raise ValueError(PROBABILITY_VALUES)
    if threshold is None:
        host = probability if isinstance(probability, np.ndarray) else on_device.cpu().numpy()
        host_mask, threshold = apply_threshold(host, threshold_method, value=threshold_value, block_size=block_size,
                                               offset=offset)
        mask = torch.from_numpy(host_mask).to(device)
    else:
        mask = on_device > threshold
    labels, diameter = labels_on_device(mask, on_device, **postprocess)
    return labels.cpu().numpy(), mask.cpu().numpy(), float(threshold), diameter


def estimate_diameter_on_device(mask: torch.Tensor, probability: torch.Tensor | None = None,
                                background: tuple[torch.Tensor, int] | None = None) -> float:
    """`diameter.estimate_diameter` of a bool mask (and float32 map) on a device; 0.0 for an empty mask.
    `background`: ``device_morphology.label_components(~mask)``, if already made."""
    filled = morphology.fill_mask_holes(mask, background)
    components, count = morphology.label_components(filled)
    if count == 0:
        return 0.0
    areas = morphology.per_label(components, count, filled if probability is None else probability, "sum",
                                 dtype=torch.float64)
    squared_radii = morphology.per_label(components, count, morphology.squared_distance(filled), "amax")
    radii = np.sqrt(squared_radii.cpu().numpy().astype(np.float64)).astype(np.float32)  # `components.exact_root`
    equivalent, inscribed = measured_diameters(areas.cpu().numpy(), radii)
    return diameter_from_components(equivalent[1:], inscribed[1:])


class _HostCrops:
    """A device image that `split_pieces` reads crop by crop: each slice comes to the host as a numpy array."""

    def __init__(self, tensor: torch.Tensor):
        self.tensor, self.shape = tensor, tuple(tensor.shape)

    def __getitem__(self, box):
        return self.tensor[box].cpu().numpy()


def _boxes(labels: torch.Tensor, count: int, chosen: torch.Tensor) -> np.ndarray:
    """(count + 1, 4) rows of (row start, row stop, column start, column stop) of the `chosen` labels (bool by
    label); other rows are (0, 0, 0, 0)."""
    height, width = labels.shape
    where = morphology.lookup(chosen, labels)
    rows = torch.arange(height, device=labels.device).view(-1, 1).expand(height, width)
    columns = torch.arange(width, device=labels.device).view(1, -1).expand(height, width)
    edges = [morphology.per_label(labels, count, values, reduce, initial, where) + shift
             for values, reduce, initial, shift in ((rows, "amin", height, 0), (rows, "amax", -1, 1),
                                                    (columns, "amin", width, 0), (columns, "amax", -1, 1))]
    boxes = torch.stack(edges, dim=1).cpu().numpy()
    boxes[~chosen.cpu().numpy()] = 0
    return boxes


def _split(components: torch.Tensor, count: int, areas: torch.Tensor, probability: torch.Tensor | None,
           diameter: float, min_size: int) -> torch.Tensor:
    """`postprocess._split` on the device: labels with the pieces numbered after the components."""
    foreground = components > 0
    distance = morphology.chamfer_distance(foreground)
    radii = morphology.per_label(components, count, distance, "amax").cpu().numpy()
    minima = maxima = None
    if probability is not None:
        inside = foreground & (distance > INSIDE)
        minima = morphology.per_label(components, count, probability, "amin", 1.0, inside).cpu().numpy()
        maxima = morphology.per_label(components, count, probability, "amax", 0.0, inside).cpu().numpy()
    candidates, dips = split_candidates(areas.cpu().numpy(), radii, minima, maxima)
    if len(candidates) == 0:
        return components
    chosen = torch.zeros(count + 1, dtype=torch.bool, device=components.device)
    chosen[torch.from_numpy(candidates).to(components.device)] = True
    boxes = _boxes(components, count, chosen)
    labels, next_id = components.clone(), count + 1
    for _, box, pieces in split_pieces(_HostCrops(components), candidates, boxes, radii, dips,
                                       None if probability is None else _HostCrops(probability), diameter, min_size):
        pieces = torch.from_numpy(pieces).to(labels.device)
        extra = pieces > 1  # piece 1 keeps the component's label
        labels[box] = torch.where(extra, pieces + (next_id - 2), labels[box])
        next_id += int(pieces.max()) - 1
    return labels


def _fill_enclosed_holes(labels: torch.Tensor, max_area: float) -> torch.Tensor:
    """`postprocess._fill_enclosed_holes`: each hole of at most `max_area` pixels that only one object touches
    (in its 8 neighbours) goes to that object."""
    holes = morphology.fill_mask_holes(labels > 0) & (labels == 0)
    found, count = morphology.label_components(holes)
    small = morphology.label_areas(found, count) <= max_area
    small[0] = False
    unset = torch.iinfo(torch.int32).max
    low = torch.full_like(labels, unset)
    high = torch.zeros_like(labels)
    for rows in (-1, 0, 1):
        for columns in (-1, 0, 1):
            if rows or columns:
                around = morphology.shifted(labels, rows, columns, 0)
                low = torch.minimum(low, torch.where(around > 0, around, unset))
                high = torch.maximum(high, around)
    owner_low = morphology.per_label(found, count, low, "amin", unset)
    owner_high = morphology.per_label(found, count, high, "amax", 0)
    owner = torch.where(small & (owner_low == owner_high), owner_high, 0)
    owner[0] = 0
    given = morphology.lookup(owner, found)
    return torch.where(given > 0, given, labels)


def _sequential(labels: torch.Tensor, exclude_border: bool) -> torch.Tensor:
    """Labels renumbered 1..n in the order of their ids, without those on the border if asked."""
    present = morphology.label_areas(labels, int(labels.max())) > 0
    if exclude_border:
        present[morphology.border_labels(labels).long()] = False
    present[0] = False
    new_ids = torch.where(present, torch.cumsum(present, 0), 0).to(torch.int32)
    return morphology.lookup(new_ids, labels)


def labels_on_device(mask: torch.Tensor, probability: torch.Tensor | None = None, *, diameter: float | None = None,
                     min_size: int | None = None, fill_holes: bool = True, split_touching: bool = True,
                     exclude_border: bool = False) -> tuple[torch.Tensor, float]:
    """`postprocess.labels_from_mask` of a bool mask (and float32 map) on their device: int32 labels 1..n on that
    device, and the diameter used (estimated when None, as `labels_from_probability` does)."""
    # the background's components serve the diameter estimate and the filling of specks of holes
    background = morphology.label_components(~mask) if diameter is None or fill_holes else None
    if diameter is None:
        diameter = estimate_diameter_on_device(mask, probability, background)
    if not bool(mask.any()) or diameter == 0:
        return torch.zeros(mask.shape, dtype=torch.int32, device=mask.device), float(diameter)
    min_size = default_min_size(diameter) if min_size is None else int(min_size)
    holes_left = False
    if fill_holes:
        # specks of holes before splitting; filling the gaps between touching cells would merge them
        mask, holes_left = morphology.fill_small_holes(mask, max(1, int(math.pi * diameter**2 / 64.0)), background)
    del background
    components, count = morphology.label_components(mask)
    areas = morphology.label_areas(components, count)
    small = areas < min_size
    small[0] = False
    components = torch.where(morphology.lookup(small, components), 0, components)
    areas[small] = 0
    labels = components
    if split_touching and count:
        labels = _split(components, count, areas, probability, diameter, min_size)
    if holes_left:
        labels = _fill_enclosed_holes(labels, math.pi * diameter**2 / 4.0)
    return _sequential(labels, exclude_border), float(diameter)
