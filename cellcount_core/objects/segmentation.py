"""One call from an image (or a probability map) to labelled cells, for the CLI and the CellProfiler plugins.

image -> probability (:func:`cellcount_core.running.inference.predict_probability`) -> threshold
(:func:`cellcount_core.objects.thresholds.apply_threshold`) -> labels
(:func:`cellcount_core.objects.postprocess.labels_from_mask`).
Maps larger than :data:`cellcount_core.objects.large_images.LARGE_IMAGE_PIXELS` are thresholded and post-processed block
by block (:func:`cellcount_core.objects.large_images.labels_in_blocks`), with the same cells in bounded memory.
Torch is imported only when :func:`segment_image` runs a network.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cellcount_core.models.bundled import resolve_model
from cellcount_core.objects.large_images import is_large, labels_in_blocks
from cellcount_core.models.model_files import read_card
from cellcount_core.objects.diameter import estimate_diameter
from cellcount_core.objects.postprocess import labels_from_mask
from cellcount_core.objects.thresholds import apply_threshold

__all__ = ["SegmentationResult", "labels_from_probability", "segment_image", "model_default_threshold"]


@dataclass
class SegmentationResult:
    """Cells found in one image.

    Attributes
    ----------
    labels : (H, W) int32 array
        0 background, 1..count the cells.
    mask : (H, W) bool array
        The thresholded probability, before post-processing.
    threshold : float
        Threshold used (the mean local threshold for ``"adaptive"``).
    diameter : float
        Cell diameter in pixels used by the post-processing (given or estimated).
    count : int
        Number of cells, ``labels.max()``.
    probability : (H, W) float32 array or None
        The network's probability map (set by :func:`segment_image`).
    scale_factor : float
        The image was resized by this factor before the network (set by :func:`segment_image`; see
        :mod:`cellcount_core.running.cell_scale`).
    """

    labels: np.ndarray
    mask: np.ndarray
    threshold: float
    diameter: float
    count: int
    probability: np.ndarray | None = None
    scale_factor: float = 1.0


def labels_from_probability(
    probability: np.ndarray,
    *,
    threshold_method: str = "model default",
    threshold_value: float | None = None,
    block_size: int = 51,
    offset: float = 0.0,
    diameter: float | None = None,
    min_size: int | None = None,
    fill_holes: bool = True,
    split_touching: bool = True,
    exclude_border: bool = False,
    device=None,
) -> SegmentationResult:
    """Threshold a probability map and post-process it into labelled cells.

    Parameters
    ----------
    probability : (H, W) array
        Foreground probability within 0..1.
    threshold_method, threshold_value, block_size, offset
        See :func:`cellcount_core.objects.thresholds.apply_threshold` (``method``, ``value``, ``block_size``,
        ``offset``); ``"model default"`` needs ``threshold_value`` here (:func:`segment_image` reads it from
        the model card).
    diameter, min_size, fill_holes, split_touching, exclude_border
        See :func:`cellcount_core.objects.postprocess.labels_from_mask`; the diameter is estimated from the mask when
        None.
    device : torch.device, optional
        Where the whole-image steps run: on a CUDA device whose memory share holds the work
        (:func:`cellcount_core.objects.device_objects.runs_on_device`) the map is post-processed there as one
        block, with the host's labels; elsewhere (and by default), and if the device runs out of memory on the
        way (with a warning), on the host.

    Returns
    -------
    SegmentationResult
        Without ``probability`` (the caller has it). Above ``LARGE_IMAGE_PIXELS`` pixels the objects are those
        of a whole-image run, numbered in another order, and an adaptive threshold is averaged over blocks.
    """
    if device is not None:
        from cellcount_core.objects.device_objects import objects_if_room  # imports torch

        found = objects_if_room(probability, device, threshold_method=threshold_method,
                                threshold_value=threshold_value, block_size=block_size, offset=offset,
                                diameter=diameter, min_size=min_size, fill_holes=fill_holes,
                                split_touching=split_touching, exclude_border=exclude_border)
        if found is not None:
            labels, mask, threshold, diameter = found
            return SegmentationResult(labels=labels, mask=mask, threshold=threshold, diameter=diameter,
                                      count=int(labels.max(initial=0)))
    if is_large(np.shape(probability)):
        found = labels_in_blocks(probability, threshold_method=threshold_method, threshold_value=threshold_value,
                                 block_size=block_size, offset=offset, diameter=diameter, min_size=min_size,
                                 fill_holes=fill_holes, split_touching=split_touching, exclude_border=exclude_border)
        return SegmentationResult(labels=found.labels, mask=found.mask, threshold=found.threshold,
                                  diameter=found.diameter, count=int(found.labels.max()))
    mask, threshold = apply_threshold(probability, threshold_method, value=threshold_value,
                                      block_size=block_size, offset=offset)
    given = diameter is not None
    if not given:
        diameter = estimate_diameter(mask, probability)  # 0.0 for an empty mask
    labels = labels_from_mask(mask, probability, diameter=diameter if given or diameter > 0 else None,
                              min_size=min_size,
                              fill_holes=fill_holes, split_touching=split_touching, exclude_border=exclude_border)
    return SegmentationResult(labels=labels, mask=mask, threshold=threshold, diameter=float(diameter),
                              count=int(labels.max()))


def model_default_threshold(model: str = "default") -> float:
    """The default probability threshold stored in a segmentation model's card.

    Parameters
    ----------
    model : str or Path
        Bundled model name, ``"default"`` or a model file path
        (see :func:`cellcount_core.models.bundled.resolve_model`).
    """
    return float(read_card(resolve_model(model)).default_threshold["value"])


def segment_image(
    image: np.ndarray,
    model: str = "default",
    device: str = "Auto",
    tile_size: int | str = "auto",
    batch_size: int | None = None,
    *,
    overlap: int | None = None,
    progress: bool = False,
    cell_size: str | float = "auto",
    **postprocess_kwargs,
) -> SegmentationResult:
    """Segment the cells of an image with a segmentation model.

    Parameters
    ----------
    image : array_like
        H x W (or H x W x 3/4) image of any real dtype.
    model : str or Path
        Bundled model name, ``"default"`` or a model file path.
    device : str
        ``"Auto"``, ``"CPU"`` or ``"GPU"``; see :func:`cellcount_core.running.inference.resolve_device`.
    tile_size, batch_size, overlap, progress
        Tiling and batching of :func:`cellcount_core.running.inference.predict_probability` ("auto": the size
        measured fastest for the device).
    cell_size : "auto", "off" or float
        How the image is brought to the model's cell size: estimated (the default), not at all, or from this
        typical cell diameter in pixels; see
        :func:`cellcount_core.running.inference.predict_probability_at_cell_scale`.
    **postprocess_kwargs
        Keyword arguments of :func:`labels_from_probability` (its ``device`` is this one). With
        ``threshold_method="model default"`` (the default) and no ``threshold_value``, the value comes from the
        model card.

    Returns
    -------
    SegmentationResult
        With the probability map.
    """
    from cellcount_core.running.inference import predict_probability_at_cell_scale, resolve_device  # imports torch

    if postprocess_kwargs.get("threshold_method", "model default") == "model default" \
            and postprocess_kwargs.get("threshold_value") is None:
        postprocess_kwargs["threshold_value"] = model_default_threshold(model)
    probability, scale = predict_probability_at_cell_scale(
        image, model=model, device=device, tile_size=tile_size, overlap=overlap, batch_size=batch_size,
        progress=progress, cell_size=cell_size)
    result = labels_from_probability(probability, device=resolve_device(device), **postprocess_kwargs)
    result.probability = probability
    result.scale_factor = scale.factor
    return result
