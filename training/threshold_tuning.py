"""Choose a segmenter's default threshold on validation images, as c-ResUnet did.

Each validation image's probability map is computed once; for every threshold of a grid it is thresholded and
post-processed into cells (:func:`cellcount_core.objects.segmentation.labels_from_probability`), and the cells are
matched to the true ones by centroid distance within the cell diameter
(:func:`cellcount_core.counts.metrics.match_detections`).
True positives, false positives and false negatives are summed over the images into one F1 per threshold. The
threshold is the knee of the rising part of that curve (Kneedle, the ``kneed`` package) or its maximum. Only
images with instance labels can score detections: BBBC005's binary masks merge touching cells, so tune on DSB2018,
the StarDist example or a folder of label images.

``cellcount-train tune-threshold`` writes the choice into the model card's ``default_threshold`` and the curve into
its ``metrics``; only the card (``NAME.json``) is rewritten, never the weights.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from scipy import ndimage as ndi
from tqdm import tqdm

from cellcount_core.images.image_io import read_image as read_raw
from cellcount_core.counts.metrics import match_detections

from .datasets import Sample, read_bbbc005, read_image, read_labelled_folder, read_pairs, split_samples
from .instances import bbbc005_instances

__all__ = [
    "DEFAULT_THRESHOLDS", "CHOICE_METHODS", "DATASETS", "Reference", "count_objects", "object_diameter",
    "read_reference", "default_split", "select_samples", "DetectionCurve", "image_detections", "detection_curve",
    "kneedle_threshold", "argmax_threshold", "threshold_choices", "choose_threshold", "update_card_threshold", "tune", "write_curve",
    "add_dataset_arguments", "add_inference_arguments", "add_arguments", "run",
]

DEFAULT_THRESHOLDS = tuple(float(t) for t in np.round(np.arange(0.05, 0.951, 0.05), 2))
CHOICE_METHODS = ("kneedle", "argmax")
DATASETS = ("bbbc005", "dsb2018", "folder", "stardist")
SPLITS = ("val", "train", "all")


# --------------------------------------------------------------------------------------------- reference data
@dataclass
class Reference:
    """The truth of one image.

    Attributes
    ----------
    count : int
        True number of cells (BBBC005: from the file name; otherwise the number of labelled objects, or of
        connected components of a binary mask).
    labels : (H, W) int array or None
        True cells as instance labels (ids need not be consecutive); None when the data only has a binary mask
        (BBBC005's masks merge touching cells, so they cannot score detections).
    """

    count: int
    labels: np.ndarray | None


#: Sources whose label files are always instance labels.
INSTANCE_SOURCES = ("dsb2018", "stardist")


def count_objects(labels: np.ndarray) -> int:
    """Number of distinct non-zero labels (ids need not be consecutive)."""
    return int(np.count_nonzero(np.bincount(np.asarray(labels).ravel())[1:]))


def object_diameter(labels: np.ndarray) -> float:
    """Median equivalent-circle diameter ``sqrt(4 area / pi)`` of the labelled objects (0.0 when there are none)."""
    sizes = np.bincount(np.asarray(labels).ravel())[1:]
    sizes = sizes[sizes > 0]
    return float(np.median(np.sqrt(4.0 * sizes / np.pi))) if sizes.size else 0.0


def read_reference(sample: Sample) -> Reference:
    """Read the true count and, where the data has them, the true cells of a sample.

    Label files of DSB2018 and the StarDist example are instance labels; BBBC005's cells are derived from its
    masks (:func:`training.instances.bbbc005_instances`); in a generic folder a file with more than two distinct
    values is instance labels, otherwise a binary mask whose cells are not known.

    Raises
    ------
    ValueError
        If the sample has no mask or label file, or the file is not 2-D.
    """
    if sample.target_path is None:
        raise ValueError(f"Sample {sample.id} ({sample.image_path}) has no mask or label image; evaluation and "
                         "threshold tuning need one beside every image.")
    if sample.source == "bbbc005":
        return Reference(count=sample.count, labels=bbbc005_instances(sample.target_path))
    target = read_raw(sample.target_path)
    if target.ndim != 2 or not np.issubdtype(target.dtype, np.integer) and target.dtype != bool:
        raise ValueError(f"Label image {sample.target_path} is a {target.dtype} array of shape {target.shape}; a "
                         "2-D integer mask or label image is needed.")
    instances = sample.source in INSTANCE_SOURCES or np.unique(target).size > 2
    if instances:
        labels = target.astype(np.int32)
        count = count_objects(labels)
    else:
        labels = None
        count = ndi.label(target > 0)[1]
    return Reference(count=int(sample.count if sample.count is not None else count), labels=labels)


def _stardist_example(root: Path) -> list[Sample]:
    """The single StarDist example image (``img2d.tif`` with instance labels ``mask2d.tif``)."""
    image, labels = root / "img2d.tif", root / "mask2d.tif"
    for path in (image, labels):
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist; --dataset stardist expects the folder holding "
                                    "img2d.tif and mask2d.tif.")
    return [Sample("stardist_img2d", "stardist", image, labels, None, {})]


def default_split(dataset: str) -> str:
    """``"val"`` for the datasets with a validation split (BBBC005, DSB2018), else ``"all"``."""
    return "val" if dataset in ("bbbc005", "dsb2018") else "all"


def select_samples(dataset: str, data, split: str | None = None, labels=None, limit: int | None = None) -> list[Sample]:
    """Read a dataset and keep one split.

    Parameters
    ----------
    dataset : {"bbbc005", "dsb2018", "folder", "stardist"}
        Layout of ``data``: BBBC005, the DSB2018 layout (``images/`` + ``labels/``), a generic folder of images
        (with ``labels``: the folder of masks or label images of the same names; without: ``data/images`` and
        ``data/labels``), or the StarDist example folder.
    data : str or Path
        Data folder.
    split : {"val", "train", "all"}, optional
        The deterministic validation split of :mod:`training.datasets`, its training part, or everything.
        Default: ``"val"`` for BBBC005 and DSB2018, ``"all"`` for a folder and the StarDist example.
    labels : str or Path, optional
        Label folder for ``dataset="folder"``.
    limit : int, optional
        Keep at most this many samples, evenly spaced over the sorted list (so every group stays represented).

    Returns
    -------
    list of Sample
    """
    if dataset not in DATASETS:
        raise ValueError(f"Unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}.")
    split = split or default_split(dataset)
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; choose one of {', '.join(SPLITS)}.")
    data = Path(data)
    if dataset == "bbbc005":
        samples = read_bbbc005(data)
    elif dataset == "dsb2018":
        samples = read_labelled_folder(data)
    elif dataset == "stardist":
        samples = _stardist_example(data)
    elif labels is not None:
        samples = read_pairs(data, labels)
    else:
        samples = read_labelled_folder(data, source="folder")
    if split != "all":
        train, validation = split_samples(samples)
        samples = validation if split == "val" else train
    if not samples:
        raise ValueError(f"The {split!r} split of {data} is empty; use --split all for a folder without a split.")
    if limit is not None and limit < len(samples):
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        samples = [samples[i] for i in np.linspace(0, len(samples) - 1, limit).round().astype(int)]
    return samples


# ----------------------------------------------------------------------------------------------- the F1 curve
@dataclass
class DetectionCurve:
    """Detections summed over images at each threshold; the ratios are micro-averages (c-ResUnet's way)."""

    thresholds: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray

    def _ratio(self, numerator, denominator) -> np.ndarray:
        numerator, denominator = np.asarray(numerator, float), np.asarray(denominator, float)
        return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)

    @property
    def precision(self) -> np.ndarray:
        return self._ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> np.ndarray:
        return self._ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> np.ndarray:
        return self._ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    @property
    def accuracy(self) -> np.ndarray:
        return self._ratio(self.tp, self.tp + self.fp + self.fn)

    def to_dict(self) -> dict:
        """Lists of thresholds, tp, fp, fn, precision, recall, f1 and accuracy (JSON-ready, 4 decimals)."""
        record = {"thresholds": [round(float(t), 4) for t in self.thresholds]}
        record.update({name: [int(v) for v in getattr(self, name)] for name in ("tp", "fp", "fn")})
        record.update({name: [round(float(v), 4) for v in getattr(self, name)]
                       for name in ("precision", "recall", "f1", "accuracy")})
        return record


def image_detections(probability: np.ndarray, true_labels: np.ndarray, thresholds: Sequence[float], *,
                     radius: float | None = None, **postprocess) -> np.ndarray:
    """Count the detections of one probability map at each threshold.

    Parameters
    ----------
    probability : (H, W) array
        Probability map within 0..1.
    true_labels : (H, W) int array
        True cells.
    thresholds : sequence of float
        Thresholds within 0..1.
    radius : float, optional
        Largest centroid distance of a match; default the true cells' median diameter (:func:`object_diameter`).
    **postprocess
        Keyword arguments of :func:`cellcount_core.objects.segmentation.labels_from_probability` (``diameter``,
        ``min_size``, ...).

    Returns
    -------
    (len(thresholds), 3) int array
        tp, fp, fn per threshold.
    """
    from cellcount_core.objects.segmentation import labels_from_probability

    if radius is None:
        radius = object_diameter(true_labels) or 1.0
    counts = np.zeros((len(thresholds), 3), np.int64)
    for row, threshold in enumerate(thresholds):
        result = labels_from_probability(probability, threshold_method="manual", threshold_value=float(threshold),
                                         **postprocess)
        scores = match_detections(true_labels, result.labels, radius)
        counts[row] = scores.tp, scores.fp, scores.fn
    return counts


def detection_curve(pairs: Iterable[tuple[np.ndarray, np.ndarray]], thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
                    *, radius: float | None = None, progress: bool = True, total: int | None = None,
                    **postprocess) -> DetectionCurve:
    """Sum :func:`image_detections` over ``(probability, true_labels)`` pairs into a :class:`DetectionCurve`.

    ``pairs`` may be a generator, so each probability map is computed once, used for every threshold and freed.
    """
    thresholds = np.asarray(thresholds, float)
    if thresholds.ndim != 1 or thresholds.size == 0 or thresholds.min() < 0 or thresholds.max() > 1:
        raise ValueError(f"thresholds must be a non-empty list of values within 0..1, got {thresholds!r}")
    totals = np.zeros((thresholds.size, 3), np.int64)
    for probability, true_labels in tqdm(pairs, total=total, desc="F1 over thresholds", disable=not progress):
        totals += image_detections(probability, true_labels, thresholds, radius=radius, **postprocess)
    return DetectionCurve(thresholds, totals[:, 0], totals[:, 1], totals[:, 2])


# ------------------------------------------------------------------------------------------ choosing a value
def argmax_threshold(thresholds: Sequence[float], f1: Sequence[float]) -> float:
    """The threshold of the highest F1 (the lowest such threshold on a tie)."""
    return float(np.asarray(thresholds, float)[int(np.argmax(f1))])


def kneedle_threshold(thresholds: Sequence[float], f1: Sequence[float], sensitivity: float = 1.0) -> float | None:
    """The knee of the rising part of the F1 curve by the Kneedle method (``kneed.KneeLocator``).

    F1 typically rises with the threshold, flattens, then falls. The knee of the part up to the maximum (a
    concave, increasing curve) is the threshold where raising it further stops paying off. None when that part
    has fewer than three points or no knee (e.g. F1 is highest at the lowest threshold).
    """
    from kneed import KneeLocator

    thresholds, f1 = np.asarray(thresholds, float), np.asarray(f1, float)
    if thresholds.shape != f1.shape or thresholds.ndim != 1:
        raise ValueError(f"thresholds and f1 must be 1-D and of the same length, got {thresholds.shape} and "
                         f"{f1.shape}")
    peak = int(np.argmax(f1))
    if peak < 2 or np.ptp(f1[: peak + 1]) == 0:
        return None
    locator = KneeLocator(thresholds[: peak + 1], f1[: peak + 1], S=sensitivity, curve="concave",
                          direction="increasing")
    return None if locator.knee is None else float(locator.knee)


def threshold_choices(curve: DetectionCurve) -> dict:
    """``{"kneedle": value or None, "argmax": value}`` of a curve's F1."""
    return {"kneedle": kneedle_threshold(curve.thresholds, curve.f1),
            "argmax": argmax_threshold(curve.thresholds, curve.f1)}


def choose_threshold(choices: dict, method: str = "kneedle") -> tuple[float, str]:
    """Pick ``"kneedle"`` or ``"argmax"`` from :func:`threshold_choices`.

    Returns
    -------
    (value, method)
        ``method`` is the one actually used: Kneedle falls back to ``"argmax"`` when the curve has no knee.
    """
    if method not in CHOICE_METHODS:
        raise ValueError(f"Unknown threshold choice {method!r}; choose one of {', '.join(CHOICE_METHODS)}.")
    if method == "kneedle" and choices["kneedle"] is not None:
        return choices["kneedle"], "kneedle"
    return choices["argmax"], "argmax"


# --------------------------------------------------------------------------------------------- the model card
def update_card_threshold(model, value: float, method: str, tuning: dict | None = None) -> Path:
    """Rewrite a model card's ``default_threshold`` (and ``metrics["threshold_tuning"]``) in place.

    Parameters
    ----------
    model : str or Path
        The model file (``X``, ``X.json`` or ``X.safetensors``); only ``X.json`` is written.
    value : float
        Threshold within 0..1.
    method : str
        How it was chosen (e.g. ``"kneedle"``).
    tuning : dict, optional
        Stored as ``metrics["threshold_tuning"]`` (curve, data, command).

    Returns
    -------
    Path
        The card file.
    """
    from cellcount_core.models.model_files import update_card

    return update_card(model, {"default_threshold": {"value": round(float(value), 4), "method": method}},
                       None if tuning is None else {"threshold_tuning": tuning})


# ------------------------------------------------------------------------------------------------------ CLI
def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--dataset``, ``--data``, ``--labels``, ``--split`` and ``--limit`` (shared with ``evaluate``)."""
    parser.add_argument("--dataset", required=True, choices=DATASETS, help="layout of --data")
    parser.add_argument("--data", required=True, type=Path, help="data folder")
    parser.add_argument("--labels", type=Path, default=None,
                        help="folder of masks or label images for --dataset folder (default DATA/labels)")
    parser.add_argument("--split", choices=SPLITS, default=None,
                        help="validation split, training split or all images (default: val for bbbc005 and "
                             "dsb2018, all for folder and stardist)")
    parser.add_argument("--limit", type=int, default=None, help="at most this many images, evenly spaced")


def add_inference_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--device``, ``--tile-size``, ``--batch-size`` and ``--diameter`` (shared with ``evaluate``)."""
    parser.add_argument("--device", default="Auto", help="Auto, CPU or GPU (default %(default)s)")
    parser.add_argument("--tile-size", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--diameter", type=float, default=None,
                        help="cell diameter for post-processing in pixels (default: estimated per image)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``cellcount-train tune-threshold``."""
    parser.add_argument("--model", required=True, help="segmenter model file (X.json or X.safetensors) to tune")
    add_dataset_arguments(parser)
    add_inference_arguments(parser)
    parser.add_argument("--thresholds", type=float, nargs="+", default=list(DEFAULT_THRESHOLDS),
                        help="threshold grid (default 0.05 to 0.95 by 0.05)")
    parser.add_argument("--choose", choices=CHOICE_METHODS, default="kneedle",
                        help="how to choose the threshold written to the card (default %(default)s)")
    parser.add_argument("--out", type=Path, required=True, help="folder for f1_vs_threshold.png and .csv")
    parser.add_argument("--dry-run", action="store_true", help="report the choice without rewriting the card")


def write_curve(curve: DetectionCurve, choices: dict, out_dir: Path, title: str) -> tuple[Path, Path]:
    """Write ``f1_vs_threshold.csv`` and ``f1_vs_threshold.png`` into ``out_dir``; return both paths."""
    from .plots import plot_f1_curve

    out_dir.mkdir(parents=True, exist_ok=True)
    table = out_dir / "f1_vs_threshold.csv"
    record = curve.to_dict()
    columns = list(record)
    lines = [",".join(columns)] + [",".join(str(record[c][i]) for c in columns) for i in range(len(curve.thresholds))]
    table.write_text("\n".join(lines) + "\n", encoding="utf-8")
    figure = plot_f1_curve(curve.thresholds, curve.f1, out_dir / "f1_vs_threshold.png", precision=curve.precision,
                           recall=curve.recall, choices=choices, title=title)
    return table, figure


def tune(samples: Sequence[Sample], model, thresholds=DEFAULT_THRESHOLDS, *, device="Auto", tile_size=512,
         batch_size=4, diameter=None, progress=True) -> tuple[DetectionCurve, int]:
    """Compute the F1 curve of ``model`` on the samples that have instance labels.

    Returns
    -------
    (DetectionCurve, int)
        The curve and the number of images it used.

    Raises
    ------
    ValueError
        If no sample has instance labels (e.g. BBBC005, whose masks merge touching cells).
    """
    from cellcount_core.running.inference import predict_probability

    labelled = [(sample, reference.labels) for sample in samples
                for reference in [read_reference(sample)] if reference.labels is not None]
    if not labelled:
        raise ValueError("None of the images has instance labels, which F1 needs (BBBC005 masks merge touching "
                         "cells); tune on dsb2018, the stardist example or a folder of label images.")
    pairs = ((predict_probability(read_image(sample.image_path), model, device=device, tile_size=tile_size,
                                  batch_size=batch_size), labels) for sample, labels in labelled)
    curve = detection_curve(pairs, thresholds, progress=progress, total=len(labelled), diameter=diameter)
    return curve, len(labelled)


def run(args: argparse.Namespace) -> str:
    """Run ``tune-threshold``: compute the curve, choose, plot, and rewrite the card unless ``--dry-run``."""
    from cellcount_core.models.bundled import resolve_model
    from cellcount_core.models.model_files import read_card

    model = resolve_model(args.model)
    card = read_card(model)
    if card.kind != "segmenter":
        raise ValueError(f"Model {model} is a {card.kind}; tune-threshold needs a segmenter model file.")
    split = args.split or default_split(args.dataset)
    samples = select_samples(args.dataset, args.data, split, args.labels, args.limit)
    curve, images = tune(samples, model, args.thresholds, device=args.device, tile_size=args.tile_size,
                         batch_size=args.batch_size, diameter=args.diameter)
    choices = threshold_choices(curve)
    value, method = choose_threshold(choices, args.choose)
    table, figure = write_curve(curve, choices, args.out, f"{card.name}: F1 against threshold ({args.dataset} "
                                f"{split}, {images} images)")
    best = int(np.argmax(curve.f1))
    summary = (f"{card.name}: {method} threshold {value:.2f} (F1 {np.interp(value, curve.thresholds, curve.f1):.3f}); "
               f"best F1 {curve.f1[best]:.3f} at {curve.thresholds[best]:.2f}; curve {table}, plot {figure}")
    if args.dry_run:
        return summary + " (dry run: card unchanged)"
    tuning = {
        "data": {"dataset": args.dataset, "path": str(args.data), "split": split, "images": images},
        "matching": "centroids within the true cells' median diameter; tp/fp/fn summed over images",
        "command": getattr(args, "command_line", None),
        "kneedle": choices["kneedle"], "argmax": choices["argmax"],
        "curve": curve.to_dict(),
    }
    card_path = update_card_threshold(model, value, method, tuning)
    return f"{summary}; wrote {card_path}"
