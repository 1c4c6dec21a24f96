"""Classical segmentation baselines to compare the networks against, in the same evaluation run.

- ``"classical"``: percentile normalization, Gaussian smoothing, Otsu's threshold, then the networks' own
  post-processing (:func:`cellcount_core.objects.postprocess.labels_from_mask`: hole filling, size filter and a
  distance-transform watershed sized by the cell diameter).
- ``"cellprofiler"``: CellProfiler's IdentifyPrimaryObjects (global Otsu, intensity declumping) through the pure
  function of ``cellprofiler_library`` (CellProfiler 5), with the typical diameter range set from the cell
  diameter. Needs CellProfiler installed.

When no diameter is given, both estimate it from the Otsu mask of the image
(:func:`cellcount_core.objects.diameter.estimate_diameter`), as the networks' post-processing does.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from cellcount_core.images.normalization import normalize_percentile, to_grayscale
from cellcount_core.objects.diameter import estimate_diameter
from cellcount_core.objects.postprocess import labels_from_mask
from cellcount_core.objects.segmentation import SegmentationResult
from cellcount_core.objects.thresholds import apply_threshold

__all__ = ["BASELINES", "smoothed_intensity", "classical_labels", "cellprofiler_labels", "baseline_labels"]

BASELINES = ("classical", "cellprofiler")


def smoothed_intensity(image: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    """Gray image normalized by its 1st and 99.8th percentiles, smoothed by a Gaussian and clipped to 0..1."""
    if not sigma >= 0:
        raise ValueError(f"sigma must be a non-negative number of pixels, got {sigma!r}")
    normalized = normalize_percentile(to_grayscale(image), 1.0, 99.8)
    smoothed = ndi.gaussian_filter(normalized, sigma) if sigma > 0 else normalized
    return np.clip(smoothed, 0.0, 1.0).astype(np.float32)


def _otsu(image, sigma, diameter):
    intensity = smoothed_intensity(image, sigma)
    mask, threshold = apply_threshold(intensity, "otsu")
    if diameter is None:
        diameter = estimate_diameter(mask)
    elif not diameter > 0:
        raise ValueError(f"diameter must be a positive number of pixels, got {diameter!r}")
    return intensity, mask, threshold, float(diameter)


def classical_labels(image: np.ndarray, *, diameter: float | None = None, sigma: float = 1.5) -> SegmentationResult:
    """Otsu on a smoothed image, then hole filling, size filter and a watershed sized by the cell diameter.

    Parameters
    ----------
    image : array_like
        H x W (or H x W x 3/4) image of any real dtype; bright cells on a dark background.
    diameter : float, optional
        Typical cell diameter in pixels; estimated from the Otsu mask when None.
    sigma : float
        Standard deviation of the Gaussian smoothing, in pixels.

    Returns
    -------
    SegmentationResult
        ``threshold`` is in normalized intensity units (0..1).
    """
    _, mask, threshold, diameter = _otsu(image, sigma, diameter)
    labels = labels_from_mask(mask, diameter=diameter) if diameter > 0 else np.zeros(mask.shape, np.int32)
    return SegmentationResult(labels=labels, mask=mask, threshold=threshold, diameter=diameter,
                              count=int(labels.max()))


def cellprofiler_labels(image: np.ndarray, *, diameter: float | None = None, sigma: float = 1.5) -> SegmentationResult:
    """CellProfiler's IdentifyPrimaryObjects: global Otsu, intensity declumping and watershed.

    The typical diameter range is ``(diameter / 2, 2 * diameter)``; objects touching the border are kept (as in
    the ground truth). The input is the percentile-normalized image (unsmoothed; IdentifyPrimaryObjects smooths
    for declumping itself); ``sigma`` only serves the Otsu mask that estimates the diameter.

    Raises
    ------
    ImportError
        If CellProfiler 5's ``cellprofiler_library`` is not installed.
    """
    try:
        import cellprofiler_library.opts.threshold as threshold_options
        from cellprofiler_library.modules import identifyprimaryobjects
    except ImportError as error:
        raise ImportError("The 'cellprofiler' baseline needs CellProfiler 5 (cellprofiler_library); install it "
                          "(make install) or use the 'classical' baseline.") from error
    _, mask, threshold, diameter = _otsu(image, sigma, diameter)
    if diameter <= 0:
        labels = np.zeros(mask.shape, np.int32)
    else:
        normalized = np.clip(normalize_percentile(to_grayscale(image), 1.0, 99.8), 0.0, 1.0).astype(np.float64)
        labels = identifyprimaryobjects(normalized, threshold_method=threshold_options.Method.OTSU,
                                        min_size=max(1, int(round(diameter / 2))),
                                        max_size=max(2, int(round(2 * diameter))),
                                        exclude_border_objects=False).astype(np.int32)
    return SegmentationResult(labels=labels, mask=labels > 0, threshold=threshold, diameter=diameter,
                              count=int(labels.max()))


def baseline_labels(image: np.ndarray, method: str = "classical", **kwargs) -> SegmentationResult:
    """Segment ``image`` with the baseline ``method`` (one of :data:`BASELINES`); kwargs as the method takes."""
    if method not in BASELINES:
        raise ValueError(f"Unknown baseline {method!r}; choose one of {', '.join(BASELINES)}.")
    return (classical_labels if method == "classical" else cellprofiler_labels)(image, **kwargs)
