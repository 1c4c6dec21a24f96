"""Bring cells into the size range a network works in: estimate their diameter, resize, run, map back.

A network sees cells well only within a band of diameters close to those it was trained on (the model card's
``diameter_band``). Larger cells come out as rings and fragments, and the watershed then cuts them into pieces;
much smaller ones merge. :func:`predict_at_cell_scale` estimates the cell diameter with cheap passes of the
network on coarse copies of the image; for cells larger than the band it also runs the network on the image
reduced into the band, and keeps that pass (mapped back to the image's size) where the full-size one breaks
the cells up. Images whose cells are in the band cost one full-size pass plus the coarse probes (1/64 + 1/16
of a pass; 11-21 % more time measured). This module is numpy and OpenCV only: the network comes in as a function.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from cellcount_core.objects.diameter import estimate_diameter

__all__ = ["CellScale", "MIN_REDUCED_CELLS", "PROBE_FACTORS", "SPECK_RATIO", "aimed_at_band",
           "breaks_up_when_enlarged", "cell_scale", "counter_enlargement", "density_diameter",
           "diameter_in_probability", "is_below_band", "is_fragmented", "is_specks", "predict_at_cell_scale",
           "probe_diameter", "resize_image", "scale_factor"]

#: Coarse copies the network sees first, coarsest first: a probe that finds cells inside the band there
#: reveals cells larger than the band at full size. Together they cost 1/256 + 1/64 + 1/16 of a full-size pass.
#: The coarsest sees nuclei of ~190 px (a DSB2018 image enlarged x4), which the next one sees at 24-25 px, just
#: above the band, so that without it they stayed at full size in 709 pieces (probes under MIN_SIDE are skipped).
PROBE_FACTORS = (1 / 16, 1 / 8, 1 / 4)
#: The factor never leaves this range: beyond it an image becomes too coarse, or too large to run.
FACTOR_LIMITS = (1 / 16, 4.0)
#: A probe or resized copy needs at least this many pixels on its shorter side. A crop of a few nuclei of 100 px,
#: 320 px wide, is probed at 1/8 (40 px), where they fall in the band; at 48 px only the 1/4 probe ran and saw
#: them at 25 px, just above the band, and the full-size pass cut them into hundreds of pieces.
MIN_SIDE = 32
#: A full-size pass breaks cells up (:func:`is_fragmented`) when its foreground falls into more pieces than
#: FRAGMENT_RATIO times the number of cells the reduced pass holds (its pieces, or its foreground area over that
#: of one cell where touching cells merge into fewer pieces).
#: Measured with segmenter v4 (depth 4; 4-connected pieces over cells): DSB2018 validation images enlarged x3
#: and x4 0.72-1.09 (v3: 1.1-7.1). Its wider view keeps large nuclei in one piece more often, but the watershed
#: then over-splits them at full size (F1 0.88 against 0.93 at x1 with a ratio of 1.0). BBBC005's large (w2)
#: cells, which the network was trained on, 0.07-0.40 (touching cells merge at full size); its blurred, dense
#: small (F48 w1) ones 0.67-0.73, which the reduced pass counts as well (104 and 108 cells for 87 and 100).
FRAGMENT_RATIO = 0.7
#: The reduced pass must hold at least this many cells for its verdict to count: coarse views of blurred,
#: crowded images see a handful of clumps (BBBC005 F48 w2 cells of ~55 px seen as 2 and 7.4 cells of 190-470 px,
#: where the full-size pass was right; a DSB2018 image of 68 nuclei of 12 px seen as two clusters of 140 px);
#: the StarDist example and DSB2018 images enlarged x2-x4 hold 14-163. Fewer cells get a second verdict from
#: :func:`breaks_up_when_enlarged`.
MIN_REDUCED_CELLS = 8
#: Fewer than :data:`MIN_REDUCED_CELLS` reduced cells whose full-size pieces are narrower than the band are checked
#: on the image enlarged this many times (:func:`breaks_up_when_enlarged`), while it stays within
#: :data:`MAX_CHECKED_PIXELS`: small cells keep their number and widen with the image, while the fragments of
#: larger cells (the network's own texture scale) multiply or widen more. Measured with segmenter v4 on 49 crops
#: of 2-7 nuclei of the StarDist example enlarged x4 and x5 (10-732 full-size pieces): enlarged, 0.8-14 times as
#: many pieces and 0.46-1.68 times as wide (relative to the enlargement), each beyond one of the
#: :data:`ENLARGED_GROWTH_LIMITS`. DSB2018 images that the probes see as two clumps: 68 nuclei of 5 and 10 px
#: (x0.5 and x1) 1.10-1.14 times as many and 1.02-1.07 times as wide; 32 nuclei of 4 px (x0.5) 1.56 times as many
#: (nuclei too small for the network at full size appear) and 1.05 times as wide.
CHECK_ENLARGEMENT = 2.0
ENLARGED_GROWTH_LIMITS = (2.0, 1.25)
MAX_CHECKED_PIXELS = 2**24
#: A foreground whose estimated diameter is below this fraction of the band's smallest diameter is specks
#: (:func:`is_specks`): photon noise, or cells far smaller than the model knows. Measured with the bundled
#: segmenter: DSB2018 validation images 6.2 px and up (3.5 and up reduced x0.5), BBBC005 26 px and up; background
#: crops of DSB2018 images with sparse photon noise 0.9-3.3 px (up to 329 specks in a field).
SPECK_RATIO = 0.5
#: A density counter counts an image enlarged this many times where its own density map says the cells are
#: smaller than it counts well (:func:`counter_enlargement`, the card's ``small_density_diameter``).
DENSITY_ENLARGEMENT = 2.0
#: An image is enlarged for the counter only while the enlarged copy stays within this many pixels.
MAX_ENLARGED_PIXELS = 2**26


@dataclass
class CellScale:
    """How an image was brought to a network's cell size.

    Attributes
    ----------
    factor : float
        The image was resized by this factor before the network (1.0: not resized).
    diameter : float
        Typical cell diameter in pixels of the original image (0.0 when no cell was found; the given value for
        a manual diameter).
    density_diameter : float
        For a density counter run at the image's own size on Automatic: the :func:`density_diameter` of its map,
        which decides whether the image is counted enlarged (0.0 when not measured).
    """

    factor: float
    diameter: float
    density_diameter: float = 0.0


def scale_factor(diameter: float, band: tuple[float, float]) -> float:
    """The resize factor that brings cells of `diameter` pixels into `band`.

    1.0 for a diameter inside the band or not positive (nothing to go by); otherwise the factor that maps
    the diameter to the band's geometric centre, within :data:`FACTOR_LIMITS`.
    """
    low, high = band
    if not diameter > 0 or low <= diameter <= high:
        return 1.0
    return float(np.clip(math.sqrt(low * high) / diameter, *FACTOR_LIMITS))


def aimed_at_band(scale: CellScale, band: tuple[float, float]) -> CellScale:
    """`scale` re-aimed at another network's `band`: an image that `scale` reduces is reduced only as far as
    `band` needs (not at all where its diameter lies inside it); one that `scale` leaves at its size stays so."""
    if scale.factor >= 1.0:
        return scale
    return CellScale(min(scale_factor(scale.diameter, band), 1.0), scale.diameter)


def resize_image(image: np.ndarray, factor: float) -> np.ndarray:
    """`image` (H x W or H x W x C) resized by `factor`: area averaging to shrink, bilinear to enlarge.

    Dtypes OpenCV cannot resize (bool, int32/64, float16, ...) are resized as float32; each side keeps at
    least one pixel.
    """
    if factor == 1.0:
        return image
    if image.dtype not in (np.uint8, np.uint16, np.int16, np.float32, np.float64):
        image = image.astype(np.float32)
    height, width = image.shape[:2]
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)


def _resize_to(values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A float32 map resized back to `shape` (H, W), bilinear."""
    if values.shape == tuple(shape):
        return values
    return cv2.resize(values, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def diameter_in_probability(probability: np.ndarray, threshold: float) -> float:
    """Typical cell diameter (pixels) in a probability map thresholded at `threshold`; 0.0 when none."""
    mask = probability > threshold
    return estimate_diameter(mask, probability) if mask.any() else 0.0


def probe_diameter(image, run, band, threshold) -> float:
    """Full-size cell diameter from the coarse probes, or 0.0 when none of them sees cells inside the band."""
    for factor in PROBE_FACTORS:
        if min(image.shape[:2]) * factor < MIN_SIDE:
            continue
        seen = diameter_in_probability(run(resize_image(image, factor)), threshold)
        if band[0] <= seen <= band[1]:
            return seen / factor
    return 0.0


def _reduced_pass(image, run, band, threshold, estimate) -> tuple[np.ndarray, CellScale]:
    """The network's output on the image reduced so that cells of `estimate` pixels fall in the band, mapped back.

    A pass whose cells still fall outside the band (the estimate was off) is corrected once, never beyond the
    image's own size nor below :data:`MIN_SIDE` pixels.
    """
    smallest = max(FACTOR_LIMITS[0], min(1.0, MIN_SIDE / min(image.shape[:2])))
    factor = max(scale_factor(estimate, band), smallest)
    values = run(resize_image(image, factor))
    seen = diameter_in_probability(values, threshold)
    correction = scale_factor(seen, band)
    if correction != 1.0:
        factor = float(np.clip(factor * correction, smallest, 1.0))
        values = run(resize_image(image, factor))
        seen = diameter_in_probability(values, threshold)
    return _resize_to(values, image.shape[:2]), CellScale(factor, seen / factor if seen > 0 else estimate)


def density_diameter(total: float, sum_of_squares: float) -> float:
    """Diameter (pixels) of the disk over which a density map spreads one cell's unit mass, on average.

    A cell's mass spread evenly over `a` pixels has density ``1/a`` there, so the mass-weighted mean density
    ``sum(d**2) / sum(d)`` is one over the typical cell's area. 0.0 for an empty map.
    """
    if not (total > 0 and sum_of_squares > 0):
        return 0.0
    return math.sqrt(4.0 * total / (math.pi * sum_of_squares))


def counter_enlargement(diameter: float, shape: tuple[int, int], small_diameter: float | None,
                        cell_diameter: float = 0.0, largest: float = math.inf) -> float:
    """The factor a density counter's input is enlarged by, given its :func:`density_diameter` on an image of
    `shape` (H, W) and its card's `small_diameter`: :data:`DENSITY_ENLARGEMENT` below `small_diameter` (an empty
    map, 0.0, never; a counter without one, never), while the enlarged image stays within
    :data:`MAX_ENLARGED_PIXELS`; else 1.0.

    Never where the segmenter's probes measured the cells (`cell_diameter` > 0) and enlarged they would be wider
    than `largest`, the counter band's upper end: BBBC005's cell bodies (60-66 px) give a few images a density as
    tight as small nuclei, and enlarged they count three times over.
    """
    enlarged_pixels = shape[0] * shape[1] * DENSITY_ENLARGEMENT**2
    too_large = cell_diameter * DENSITY_ENLARGEMENT > largest
    if small_diameter and 0.0 < diameter < small_diameter and enlarged_pixels <= MAX_ENLARGED_PIXELS \
            and not too_large:
        return DENSITY_ENLARGEMENT
    return 1.0


def is_below_band(scale: CellScale, band: tuple[float, float]) -> bool:
    """Whether a full-size pass found nothing as wide as the band's smallest diameter, or nothing at all."""
    return scale.factor == 1.0 and scale.diameter < band[0]


def is_specks(scale: CellScale, band: tuple[float, float]) -> bool:
    """Whether a full-size pass found nothing but specks: objects narrower than :data:`SPECK_RATIO` of the band's
    low end, or none at all."""
    return is_below_band(scale, (SPECK_RATIO * band[0], band[1]))


def is_fragmented(full_size: np.ndarray, reduced: np.ndarray, threshold: float, diameter: float) -> bool:
    """Whether the full-size pass breaks up the cells that the reduced pass (mapped back) sees whole.

    A network shown cells much larger than it knows marks their rims and textured insides only, in many pieces:
    more than :data:`FRAGMENT_RATIO` times as many as the reduced pass has cells (its pieces, or as many cells
    of `diameter` pixels as its foreground holds, whichever is more). Cells that the network knows at both
    sizes (BBBC005's large cells, which it was trained on) stay whole at full size. Where the reduced pass sees
    fewer than :data:`MIN_REDUCED_CELLS` cells, they may be clumps of smaller cells seen from afar: the count
    gives no verdict, and :func:`breaks_up_when_enlarged` decides.

    `reduced` is the reduced pass mapped back to the image's size.
    """
    cells = _reduced_cells(reduced, threshold, diameter)
    return cells >= MIN_REDUCED_CELLS and _pieces(full_size > threshold) > FRAGMENT_RATIO * cells


def breaks_up_when_enlarged(image, run, full_size, reduced, threshold, band, diameter) -> bool:
    """Whether the full-size pieces of a field of fewer than :data:`MIN_REDUCED_CELLS` reduced cells are fragments.

    Only pieces more numerous than :data:`FRAGMENT_RATIO` times the reduced cells and narrower than the band's
    smallest cells are suspects. The image enlarged :data:`CHECK_ENLARGEMENT` times tells: small cells come out as
    many and as much wider as the image, fragments more than :data:`ENLARGED_GROWTH_LIMITS` times as many or as
    wide. An image too large to enlarge within :data:`MAX_CHECKED_PIXELS` keeps its full-size pass.
    """
    too_large = image.shape[0] * image.shape[1] * CHECK_ENLARGEMENT**2 > MAX_CHECKED_PIXELS
    cells = _reduced_cells(reduced, threshold, diameter)
    if too_large or not 0 < cells < MIN_REDUCED_CELLS:
        return False
    pieces = _pieces(full_size > threshold)  # the cheaper tests first: most images stop here
    width = diameter_in_probability(full_size, threshold) if pieces > FRAGMENT_RATIO * cells else 0.0
    if not 0 < width < band[0]:
        return False
    enlarged = run(resize_image(image, CHECK_ENLARGEMENT))
    more, wider = ENLARGED_GROWTH_LIMITS
    return (_pieces(enlarged > threshold) > more * pieces
            or diameter_in_probability(enlarged, threshold) > wider * CHECK_ENLARGEMENT * width)


def _reduced_cells(reduced: np.ndarray, threshold: float, diameter: float) -> float:
    """Cells in a reduced pass mapped back: its pieces, or as many cells of `diameter` pixels as its foreground
    holds where touching cells merge, whichever is more (0.0 for an empty pass or no diameter)."""
    reduced_mask = reduced > threshold
    if not reduced_mask.any() or not diameter > 0:
        return 0.0
    return max(_pieces(reduced_mask), np.count_nonzero(reduced_mask) / (np.pi * diameter**2 / 4.0))


def _pieces(mask: np.ndarray) -> int:
    """Number of 4-connected components of a boolean mask."""
    return cv2.connectedComponents(mask.view(np.uint8), connectivity=4)[0] - 1


def _reduced_or_full_size(image, run, band, threshold, estimate, is_empty, full_size=None
                          ) -> tuple[np.ndarray, CellScale]:
    """For cells of `estimate` pixels, larger than the band: the reduced pass where the full-size one (run here
    unless given) is fragmented, else the full-size pass. In an empty field (`is_empty`) the pieces are noise,
    and how they change when enlarged tells nothing."""
    reduced, scale = _reduced_pass(image, run, band, threshold, estimate)
    full_size = run(image) if full_size is None else full_size
    if (is_fragmented(full_size, reduced, threshold, scale.diameter)
            or (breaks_up_when_enlarged(image, run, full_size, reduced, threshold, band, scale.diameter)
                and not (is_empty and is_empty(image)))):
        return reduced, scale
    return full_size, CellScale(1.0, diameter_in_probability(full_size, threshold))


def predict_at_cell_scale(
    image: np.ndarray,
    run: Callable[[np.ndarray], np.ndarray],
    band: tuple[float, float],
    threshold: float,
    diameter: float | None = None,
    is_empty: Callable[[np.ndarray], bool] | None = None,
) -> tuple[np.ndarray, CellScale]:
    """Run a network with the image resized so that its cells fall inside the network's diameter band.

    Parameters
    ----------
    image : (H, W) or (H, W, C) array
        The image as the network's runner takes it.
    run : callable
        ``run(image) -> (h, w) float32 map`` for an image of any size: the network, tiled and stitched.
    band : (float, float)
        Cell diameters in pixels that the network surely handles (the model card's ``diameter_band``).
    threshold : float
        Probability above which a pixel counts as cell when diameters are estimated (the model's default).
    diameter : float, optional
        The typical cell diameter in pixels, if known; estimated when None.
    is_empty : callable, optional
        ``is_empty(image) -> bool``: whether the image is a field without cells (DeepSegment: the noise floor's
        featureless test). There the enlarged check (:func:`breaks_up_when_enlarged`) never reduces the image.

    Returns
    -------
    values : (H, W) float32 array
        The network's output at the image's size.
    scale : CellScale
        The factor used and the full-size cell diameter.

    Notes
    -----
    A given `diameter` sets the factor directly (:func:`scale_factor`), enlarging too. Otherwise the coarse
    probes (:data:`PROBE_FACTORS`) and, when they see nothing, a full-size pass estimate the diameter; cells in
    the band or smaller keep the full-size pass. For larger cells the image is also run reduced into the band,
    and the reduced pass is kept only where the full-size pass breaks the cells up (:func:`is_fragmented`, or
    for fewer than :data:`MIN_REDUCED_CELLS` cells :func:`breaks_up_when_enlarged`): a network trained on large
    cells of one kind keeps them whole at full size, with more detail.
    """
    shape = image.shape[:2]
    if diameter is not None:
        factor = scale_factor(diameter, band)
        return _resize_to(run(resize_image(image, factor)), shape), CellScale(factor, float(diameter))
    estimate = probe_diameter(image, run, band, threshold)
    if estimate > 0.0:
        return _reduced_or_full_size(image, run, band, threshold, estimate, is_empty)
    full_size = run(image)
    estimate = diameter_in_probability(full_size, threshold)
    if estimate <= band[1]:  # an estimated size never enlarges an image: noise would become cell-sized blobs
        return full_size, CellScale(1.0, estimate)
    return _reduced_or_full_size(image, run, band, threshold, estimate, is_empty, full_size)


def cell_scale(image: np.ndarray, run: Callable[[np.ndarray], np.ndarray], band: tuple[float, float],
               threshold: float, is_empty: Callable[[np.ndarray], bool] | None = None) -> CellScale:
    """The factor :func:`predict_at_cell_scale` would choose for `image`, for another network (a counter).

    Cheaper for cells in the band: the coarse probes alone decide, without a full-size pass (cells a little
    larger than the band, which only a full-size pass would reveal, are left as they are). `is_empty` as in
    :func:`predict_at_cell_scale`.
    """
    estimate = probe_diameter(image, run, band, threshold)
    if estimate == 0.0:
        return CellScale(1.0, 0.0)
    return _reduced_or_full_size(image, run, band, threshold, estimate, is_empty)[1]
