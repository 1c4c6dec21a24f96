"""Score a segmenter, a counter and classical baselines on the same images, in one run.

For every image: the segmenter's probability map (computed once) is thresholded at the model's default threshold
and post-processed into cells; the counter counts the thresholded mask (or the image, if it was trained on images);
each baseline segments the image. Counts are compared with the true counts (MAE, MedAE, MPE, MAPE); cells are
matched to the true cells by centroid distance within the true cells' median diameter (precision, recall, F1,
accuracy, summed over images). The same probability maps give the F1 against threshold curve.

``cellcount-train evaluate`` writes, into ``--out``: ``per_image.csv``, ``overall.csv``, for BBBC005 also
``by_blur.csv``, ``by_stain.csv`` and ``by_count_range.csv``, each with a ``.md`` twin; ``report.md`` (all tables);
``summary.json``; the plots ``counts.png``, ``bland_altman.png`` and ``f1_vs_threshold.png``.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from cellcount_core.counts.metrics import count_errors, match_detections

from .baseline import BASELINES, baseline_labels
from .datasets import Sample, read_image
from .threshold_tuning import (DetectionCurve, Reference, add_dataset_arguments, add_inference_arguments, default_split,
                               image_detections, object_diameter, read_reference, select_samples, threshold_choices,
                               write_curve)

__all__ = ["COUNT_RANGES", "GROUPS", "COUNTER_MASKS", "Models", "count_range", "evaluate_image", "evaluate_samples",
           "summarize",
           "markdown_table", "write_outputs", "add_arguments", "model_option", "run"]

#: Count ranges for grouping, (low, high) inclusive; BBBC005 holds 1..100 cells per image.
COUNT_RANGES = ((1, 25), (26, 50), (51, 75), (76, 100))
#: Grouping columns of the per-image rows, per dataset.
GROUPS = {"bbbc005": ("blur", "stain", "count_range")}
#: Thresholds that make the mask a mask-input counter counts (DeepCellCount compared simple, adaptive and Otsu).
COUNTER_MASKS = ("model default", "simple", "adaptive", "otsu")
EVALUATION_THRESHOLDS = tuple(float(t) for t in np.round(np.arange(0.1, 0.91, 0.1), 2))
DETECTION_COLUMNS = ("tp", "fp", "fn")


def count_range(count: float) -> str:
    """Name of the :data:`COUNT_RANGES` bin holding ``count`` (``"0"`` or ``">100"`` outside them)."""
    for low, high in COUNT_RANGES:
        if low <= count <= high:
            return f"{low}-{high}"
    return "0" if count < COUNT_RANGES[0][0] else f">{COUNT_RANGES[-1][1]}"


@dataclass
class Models:
    """What to run on each image.

    Attributes
    ----------
    segmenter, counter : str or Path or None
        Model names or files (None to leave one out).
    baselines : sequence of str
        Names from :data:`training.baseline.BASELINES`.
    counter_masks : sequence of str
        Threshold methods (:data:`COUNTER_MASKS`) of the segmenter's masks that a mask-input counter counts, one
        method column ``count:<name>@<threshold>`` each.
    device, tile_size, batch_size : as in :func:`cellcount_core.running.inference.predict_probability`.
    diameter : float or None
        Cell diameter for the post-processing and the baselines; estimated per image when None.
    true_diameter : bool
        Use each image's true median cell diameter instead (needs instance labels): an upper bound that shows
        how much the diameter estimate costs.
    cell_size : "auto", "off" or float
        How images are brought to the networks' cell size (see
        :func:`cellcount_core.running.inference.predict_probability_at_cell_scale`).
    """

    segmenter: str | Path | None = "default"
    counter: str | Path | None = None
    baselines: Sequence[str] = ("classical",)
    counter_masks: Sequence[str] = ("model default",)
    device: str = "Auto"
    tile_size: int = 512
    batch_size: int = 4
    diameter: float | None = None
    true_diameter: bool = False
    cell_size: str | float = "auto"
    cards: dict = field(default_factory=dict, init=False)

    def load_cards(self) -> None:
        """Read and check the model cards (fails early, before any image is processed)."""
        from cellcount_core.models.bundled import DEFAULT_COUNTER, DEFAULT_SEGMENTER, resolve_model
        from cellcount_core.models.model_files import read_card

        for role, name, default in (("segmenter", self.segmenter, DEFAULT_SEGMENTER),
                                    ("counter", self.counter, DEFAULT_COUNTER)):
            if name is None:
                continue
            path = resolve_model(name, default=default)
            card = read_card(path)
            if card.kind != role:
                raise ValueError(f"--{role} {name} is a {card.kind} model; give a {role} model file or name.")
            self.cards[role] = (path, card)
        counter = self.cards.get("counter")
        if counter and counter[1].input == "mask" and "segmenter" not in self.cards:
            raise ValueError(f"Counter {counter[1].name} counts masks; give a --segmenter to make them.")
        unknown = [name for name in self.counter_masks if name not in COUNTER_MASKS]
        if unknown or not self.counter_masks:
            raise ValueError(f"counter masks must be one or more of {', '.join(COUNTER_MASKS)}, got "
                             f"{list(self.counter_masks)!r}")
        if self.true_diameter and self.diameter is not None:
            raise ValueError("Give a fixed diameter or the true diameter, not both.")
        for name in self.baselines:
            if name not in BASELINES:
                raise ValueError(f"Unknown baseline {name!r}; choose from {', '.join(BASELINES)}.")

    def method_names(self) -> list[str]:
        """Column prefixes of the methods run, in table order."""
        names = []
        if "segmenter" in self.cards:
            names.append(f"seg:{self.cards['segmenter'][1].name}")
        if "counter" in self.cards:
            card = self.cards["counter"][1]
            names += ([f"count:{card.name}@{mask}" for mask in self.counter_masks] if card.input == "mask"
                      else [f"count:{card.name}"])
        return names + list(self.baselines)


def _detections(prefix: str, true_labels, labels, radius: float) -> dict:
    scores = match_detections(true_labels, labels, radius)
    return {f"{prefix}_tp": scores.tp, f"{prefix}_fp": scores.fp, f"{prefix}_fn": scores.fn}


def _evaluate_one(sample: Sample, models: Models, thresholds) -> tuple[dict, np.ndarray | None]:
    """Per-image row and, when ``thresholds`` are given, the tp/fp/fn of each threshold."""
    row = {"id": sample.id, **{key: sample.meta[key] for key in ("blur", "stain") if key in sample.meta}}
    return evaluate_image(read_image(sample.image_path), read_reference(sample), models, thresholds, row)


def evaluate_image(image: np.ndarray, reference: Reference, models: Models, thresholds=None,
                   row: dict | None = None) -> tuple[dict, np.ndarray | None]:
    """Run every method of `models` (cards loaded) on one image; its row and the tp/fp/fn of each threshold.

    `row` holds the columns that name the image (``id``, grouping columns); counts and detections are added.
    """
    from cellcount_core.running.inference import predict_count, predict_count_at_cell_scale
    from cellcount_core.running.inference import predict_probability_at_cell_scale
    from cellcount_core.objects.segmentation import labels_from_probability
    from cellcount_core.objects.thresholds import apply_threshold

    labelled = reference.labels is not None
    true_diameter = object_diameter(reference.labels) if labelled else 0.0
    radius = (true_diameter or 1.0) if labelled else None
    row = {**(row or {}), "true_count": reference.count, "count_range": count_range(reference.count)}
    if labelled:
        row["match_radius"] = round(radius, 2)
    diameter = models.diameter
    if models.true_diameter:
        if not labelled:
            raise ValueError(f"{row.get('id', 'this image')}: the true diameter needs instance labels, and this image has only "
                             "a count or a binary mask; evaluate without --true-diameter.")
        diameter = true_diameter or None
    curve, probability, masks = None, None, {}
    if "segmenter" in models.cards:
        path, card = models.cards["segmenter"]
        name = f"seg:{card.name}"
        probability, _ = predict_probability_at_cell_scale(image, path, device=models.device,
                                                           tile_size=models.tile_size, batch_size=models.batch_size,
                                                           cell_size=models.cell_size)
        result = labels_from_probability(probability, threshold_method="model default",
                                         threshold_value=card.default_threshold["value"], diameter=diameter)
        row[f"{name}_count"] = result.count
        if labelled:
            row.update(_detections(name, reference.labels, result.labels, radius))
        masks["model default"] = result.mask
        if thresholds is not None and labelled:
            curve = image_detections(probability, reference.labels, thresholds, radius=radius,
                                     diameter=diameter)
    if "counter" in models.cards:
        path, card = models.cards["counter"]
        options = dict(device=models.device, tile_size=models.tile_size, batch_size=models.batch_size)
        if card.input == "mask":
            for method in models.counter_masks:
                mask = masks[method] if method in masks else apply_threshold(probability, method)[0]
                row[f"count:{card.name}@{method}_count"] = round(predict_count(mask, path, **options), 3)
        else:
            segmenter = models.cards["segmenter"][0] if "segmenter" in models.cards else "default"
            count, _ = predict_count_at_cell_scale(image, path, cell_size=models.cell_size, segmenter=segmenter,
                                                   **options)
            row[f"count:{card.name}_count"] = round(count, 3)
    for name in models.baselines:
        result = baseline_labels(image, name, diameter=diameter)
        row[f"{name}_count"] = result.count
        if labelled:
            row.update(_detections(name, reference.labels, result.labels, radius))
    return row, curve


def evaluate_samples(samples: Sequence[Sample], models: Models, thresholds=EVALUATION_THRESHOLDS, *,
                     progress: bool = True) -> tuple[list[dict], DetectionCurve | None]:
    """Run every method on every sample.

    Parameters
    ----------
    samples : sequence of Sample
        Images with masks or label images (see :func:`training.threshold_tuning.select_samples`).
    models : Models
        What to run; its cards are loaded here if they are not yet.
    thresholds : sequence of float or None
        Grid of the segmenter's F1 against threshold curve; None to skip it.
    progress : bool
        Show a progress bar.

    Returns
    -------
    rows : list of dict
        One per image: ``id``, ``true_count``, grouping columns, ``<method>_count`` and for segmenting methods
        ``<method>_tp``, ``_fp``, ``_fn``.
    curve : DetectionCurve or None
    """
    if not models.cards:
        models.load_cards()
    if not models.method_names():
        raise ValueError("Nothing to evaluate: give a segmenter, a counter or a baseline.")
    rows, totals = [], None
    if "segmenter" not in models.cards:
        thresholds = None
    for sample in tqdm(samples, desc="evaluating", disable=not progress):
        row, detections = _evaluate_one(sample, models, thresholds)
        rows.append(row)
        if detections is not None:
            totals = detections if totals is None else totals + detections
    curve = None
    if totals is not None:
        curve = DetectionCurve(np.asarray(thresholds, float), totals[:, 0], totals[:, 1], totals[:, 2])
    return rows, curve


def _method_summary(rows: list[dict], method: str) -> dict:
    counted = [row for row in rows if row["true_count"] > 0]
    summary = {"method": method, "images": len(rows)}
    if counted:
        errors = count_errors([row["true_count"] for row in counted], [row[f"{method}_count"] for row in counted])
        summary.update({key: round(value, 3) for key, value in errors.items()})
    matched = [row for row in rows if f"{method}_tp" in row]
    if matched:
        tp, fp, fn = (sum(row[f"{method}_{key}"] for row in matched) for key in DETECTION_COLUMNS)
        pooled = DetectionCurve(np.zeros(1), np.array([tp]), np.array([fp]), np.array([fn]))
        summary["matched_images"] = len(matched)
        summary.update({name: round(float(getattr(pooled, name)[0]), 4)
                        for name in ("precision", "recall", "f1", "accuracy")})
        summary.update({"tp": tp, "fp": fp, "fn": fn})
    return summary


def _group_order(value) -> tuple:
    """Sort numbers by value and labels such as ``"26-50"`` or ``">100"`` by their first number."""
    if isinstance(value, str):
        match = re.search(r"\d+", value)
        return (1, int(match.group()) if match else 0, value)
    return (0, value, "")


def summarize(rows: list[dict], methods: Sequence[str], group: str | None = None) -> list[dict]:
    """Count errors and summed detections per method, overall or per value of the column ``group``.

    Images whose true count is 0 are left out of the count errors (percentages are undefined) but not of the
    detections.
    """
    if not rows:
        raise ValueError("No evaluated images to summarize.")
    if group is None:
        return [_method_summary(rows, method) for method in methods]
    values = sorted({row[group] for row in rows}, key=_group_order)
    return [{group: value, **_method_summary([row for row in rows if row[group] == value], method)}
            for value in values for method in methods]


def markdown_table(rows: list[dict], columns: Sequence[str] | None = None) -> str:
    """A GitHub markdown table of ``rows`` (floats with up to 3 decimals; missing cells empty)."""
    columns = list(columns or dict.fromkeys(key for row in rows for key in row))

    def cell(value):
        if isinstance(value, float):
            return f"{value:.3f}".rstrip("0").rstrip(".") if value == value else "nan"
        return "" if value is None else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(row.get(column)) for column in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _write_table(rows: list[dict], out_dir: Path, name: str) -> str:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(out_dir / f"{name}.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    text = markdown_table(rows, columns)
    (out_dir / f"{name}.md").write_text(text, encoding="utf-8")
    return text


def write_outputs(rows: list[dict], curve: DetectionCurve | None, models: Models, out_dir, *, dataset: str,
                  title: str, command: str | None = None, default_threshold: float | None = None) -> dict:
    """Write the tables, plots, ``report.md`` and ``summary.json`` of an evaluation; return the summary."""
    from .plots import plot_bland_altman, plot_counts

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    methods = models.method_names()
    tables = {"overall": summarize(rows, methods)}
    for group in GROUPS.get(dataset, ()):
        tables[f"by_{group}"] = summarize(rows, methods, group)
    labelled = sum("match_radius" in row for row in rows)
    scope = (f"{labelled} of {len(rows)} images have instance labels: detections (precision, recall, F1, accuracy: "
             "centroids matched within the true cells' median diameter, summed over images) and the F1 curve come "
             "from those" if labelled else f"{len(rows)} images without instance labels (binary masks merge "
             "touching cells): count errors only")
    diameter = ("each image's true median cell diameter (an upper bound, not a result)" if models.true_diameter
                else f"{models.diameter} px" if models.diameter else "estimated per image")
    report = [f"# {title}\n\n", f"Command: `{command}`\n\n" if command else "",
              f"{scope}; count errors (MPE, MAPE in %) from all images with cells. Cell diameter for the "
              f"post-processing and the baselines: {diameter}.\n"]
    for name, table in tables.items():
        report += [f"\n## {name.replace('_', ' ')}\n\n", _write_table(table, out_dir, name)]
    _write_table(rows, out_dir, "per_image")
    true_counts = [row["true_count"] for row in rows]
    predicted = {method: [row[f"{method}_count"] for row in rows] for method in methods}
    plot_counts(true_counts, predicted, out_dir / "counts.png", title=f"{title}: predicted against true counts")
    plot_bland_altman(true_counts, predicted, out_dir / "bland_altman.png", title=f"{title}: Bland-Altman")
    summary = {"title": title, "command": command, "dataset": dataset, "images": len(rows),
               "models": {role: {"path": str(path), "name": card.name, "default_threshold": card.default_threshold}
                          for role, (path, card) in models.cards.items()},
               "baselines": list(models.baselines), "counter_masks": list(models.counter_masks),
               "diameter": "true" if models.true_diameter else models.diameter, "tables": tables}
    if curve is not None:
        choices = {**threshold_choices(curve), "model default": default_threshold}
        write_curve(curve, choices, out_dir, f"{title}: F1 against threshold")
        summary["f1_curve"] = {**curve.to_dict(), "choices": choices}
        curve_rows = [{"threshold": t, "precision": p, "recall": r, "f1": f} for t, p, r, f in
                      zip(*(summary["f1_curve"][k] for k in ("thresholds", "precision", "recall", "f1")))]
        report += ["\n## F1 against threshold (segmenter)\n\n",
                   f"Kneedle: {choices['kneedle']}, argmax: {choices['argmax']}, model default: "
                   f"{default_threshold}.\n\n", markdown_table(curve_rows)]
    (out_dir / "report.md").write_text("".join(report), encoding="utf-8")
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``cellcount-train evaluate``."""
    parser.add_argument("--segmenter", default="default", help="segmenter name or file, or 'none' (default: "
                        "the bundled default segmenter)")
    parser.add_argument("--counter", default="none", help="counter name or file, 'default' for the bundled "
                        "counter, or 'none' (default)")
    parser.add_argument("--counter-mask", nargs="+", choices=COUNTER_MASKS, default=["model default"],
                        help="thresholds of the segmenter masks a mask-input counter counts, one result column "
                             "each (default: model default)")
    parser.add_argument("--baselines", nargs="*", choices=BASELINES, default=["classical"],
                        help="classical baselines to run too (default: classical)")
    add_dataset_arguments(parser)
    add_inference_arguments(parser)
    parser.add_argument("--thresholds", type=float, nargs="*", default=list(EVALUATION_THRESHOLDS),
                        help="grid of the F1 against threshold curve (default 0.1 to 0.9 by 0.1); no values to skip")
    parser.add_argument("--true-diameter", action="store_true",
                        help="post-process each image with its true cells' median diameter instead of an estimate "
                             "(needs instance labels): shows how much the diameter estimate costs")
    parser.add_argument("--cell-size", default="auto", metavar="auto|off|PIXELS",
                        help="bring cells to the networks' size: estimated (auto, the default), not at all (off), "
                             "or from this typical cell diameter in pixels")
    parser.add_argument("--out", type=Path, required=True, help="output folder for tables and plots")
    parser.add_argument("--title", default=None, help="title of the report (default: dataset and split)")


def model_option(value: str | None) -> str | None:
    """A ``--segmenter`` or ``--counter`` value: None for ``none`` (leave that model out), else the value."""
    return None if value is None or value.strip().lower() == "none" else value


def run(args: argparse.Namespace) -> str:
    """Run ``evaluate`` and write its outputs; return a one-paragraph summary."""
    models = Models(segmenter=model_option(args.segmenter), counter=model_option(args.counter),
                    baselines=tuple(args.baselines), counter_masks=tuple(args.counter_mask), device=args.device,
                    tile_size=args.tile_size, batch_size=args.batch_size, diameter=args.diameter,
                    true_diameter=args.true_diameter, cell_size=args.cell_size)
    models.load_cards()
    split = args.split or default_split(args.dataset)
    samples = select_samples(args.dataset, args.data, split, args.labels, args.limit)
    rows, curve = evaluate_samples(samples, models, args.thresholds or None)
    title = args.title or f"{args.dataset} {split} ({len(samples)} images)"
    segmenter = models.cards.get("segmenter")
    summary = write_outputs(rows, curve, models, args.out, dataset=args.dataset, title=title,
                            command=getattr(args, "command_line", None),
                            default_threshold=segmenter[1].default_threshold["value"] if segmenter else None)
    lines = [f"{row['method']}: MAE {row.get('mae')}, MAPE {row.get('mape')} %"
             + (f", F1 {row['f1']}" if "f1" in row else "") for row in summary["tables"]["overall"]]
    return f"Evaluated {len(rows)} images into {args.out}\n" + "\n".join(lines)
