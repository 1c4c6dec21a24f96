"""``cellcount-train calibrate-count``: scale a counter's counts so that they are right on average on training images.

A density counter trained with a relative count error, ``|p - t| / (t + 1)``, learns to count low: for an image whose
count it cannot tell exactly, that error is smallest below the median truth. The bundled counter under-counts its
own training images (MPE -3.4 % on BBBC005, -8.1 % on DSB2018). This command counts training images as inference
does (Automatic cell size), finds the factor that minimises their mean absolute percentage error and writes it into
the card's ``count_scale``, by which `predict_count` multiplies every count.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

DATA_KINDS = ("bbbc005", "dsb2018")


def mape_scale(true, predicted) -> float:
    """The factor ``k`` that minimises ``mean(|k p - t| / t)`` over the images with ``t > 0`` and ``p > 0``.

    That error is convex and piecewise linear in ``k`` with breaks at ``t / p``, and its slope is the sum of
    ``sign(k p - t) p / t``: the minimum is the median of ``t / p`` weighted by ``p / t``.

    Raises
    ------
    ValueError
        When no image has both a true and a predicted count above 0.
    """
    true, predicted = np.asarray(true, np.float64), np.asarray(predicted, np.float64)
    usable = (true > 0) & (predicted > 0)
    if not usable.any():
        raise ValueError("No image has cells and a count above 0; a count scale needs images with cells.")
    ratios, weights = true[usable] / predicted[usable], predicted[usable] / true[usable]
    order = np.argsort(ratios)
    cumulative = np.cumsum(weights[order])
    return float(ratios[order][np.searchsorted(cumulative, 0.5 * cumulative[-1])])


def percentage_errors(true, predicted) -> dict:
    """MAPE and MPE (%) over the images with cells."""
    true, predicted = np.asarray(true, np.float64), np.asarray(predicted, np.float64)
    relative = (predicted[true > 0] - true[true > 0]) / true[true > 0]
    return {"mape": round(float(100 * np.abs(relative).mean()), 3), "mpe": round(float(100 * relative.mean()), 3)}


def count_samples(samples, model, segmenter="default", device="Auto", cell_size="auto") -> list[dict]:
    """Each sample's id, source, true count and the counter's count (as inference gives it, card scale included)."""
    from cellcount_core.running.inference import predict_count_at_cell_scale
    from training.datasets import read_image
    from training.threshold_tuning import read_reference

    rows = []
    for sample in tqdm(samples, desc="counting", mininterval=5.0):
        truth = sample.count if sample.count is not None else read_reference(sample).count
        count, _ = predict_count_at_cell_scale(read_image(sample.image_path), model, device=device,
                                               cell_size=cell_size, segmenter=segmenter)
        rows.append({"id": sample.id, "source": sample.source, "true_count": truth, "count": round(count, 3)})
    return rows


def calibration(rows: list[dict], current_scale: float) -> dict:
    """The card's new ``count_scale`` and the errors before and after, overall and per source."""
    factor = mape_scale([row["true_count"] for row in rows], [row["count"] for row in rows])
    summary = {"count_scale": round(current_scale * factor, 4), "images": len(rows)}
    for source in sorted({row["source"] for row in rows}) + [None]:
        chosen = [row for row in rows if source is None or row["source"] == source]
        true, counted = [row["true_count"] for row in chosen], np.array([row["count"] for row in chosen])
        summary[source or "all"] = {"images": len(chosen), "before": percentage_errors(true, counted),
                                    "after": percentage_errors(true, factor * counted)}
    return summary


def plot_calibration(rows: list[dict], factor: float, path: Path) -> Path:
    """Bland-Altman plot of the counts before and after multiplying them by ``factor``."""
    from training.plots import plot_bland_altman

    counted = np.array([row["count"] for row in rows])
    return plot_bland_altman([row["true_count"] for row in rows],
                             {"before": counted, f"times {factor:.4f}": factor * counted}, path,
                             title="Counter on training images: count - truth")


def read_samples(specs: list[str], split: str, limit: int | None) -> list:
    """The samples of every ``KIND=PATH`` data set, ``limit`` evenly spaced images of ``split`` from each."""
    from training.threshold_tuning import select_samples

    samples = []
    for spec in specs:
        kind, _, path = spec.partition("=")
        if kind not in DATA_KINDS or not path:
            raise ValueError(f"--data {spec!r}: give KIND=PATH with KIND one of {', '.join(DATA_KINDS)}.")
        samples += select_samples(kind, path, split, limit=limit)
    return samples


def add_counting_arguments(parser: argparse.ArgumentParser, purpose: str, limit: int) -> None:
    """The options of a command that counts training images with a counter: model, data, split, limit, segmenter
    and device; `purpose` ends the split's help ("images to ...") and `limit` is the default per data set."""
    parser.add_argument("--model", required=True, help="counter model file (X, X.json or X.safetensors)")
    parser.add_argument("--data", action="append", required=True, metavar="KIND=PATH",
                        help="bbbc005=PATH or dsb2018=PATH (repeatable)")
    parser.add_argument("--split", choices=("train", "val", "all"), default="train",
                        help=f"images to {purpose} (default: the training split, so that validation stays unseen)")
    parser.add_argument("--limit", type=int, default=limit, help=f"images per data set, evenly spaced (default {limit})")
    parser.add_argument("--segmenter", default="default", help="segmenter whose probes choose the cell size")
    parser.add_argument("--device", default="Auto", help="Auto, CPU or GPU")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``cellcount-train calibrate-count``."""
    add_counting_arguments(parser, "calibrate on", limit=200)
    parser.add_argument("--out", type=Path, required=True,
                        help="folder for counts.csv, calibration.json and bland_altman.png")
    parser.add_argument("--dry-run", action="store_true", help="report the scale without rewriting the card")


def run(args: argparse.Namespace) -> str:
    """Count the images, fit the scale, write the table and (unless ``--dry-run``) the card."""
    from cellcount_core.models.model_files import read_card, update_card

    card = read_card(args.model)
    if card.kind != "counter":
        raise ValueError(f"{args.model} is a {card.kind}; calibrate-count needs a counter.")
    samples = read_samples(args.data, args.split, args.limit)
    if not samples:
        raise ValueError(f"--data {' '.join(args.data)} has no {args.split} images to calibrate on.")
    rows = count_samples(samples, args.model, args.segmenter, args.device)
    summary = {**calibration(rows, card.count_scale), "data": args.data, "split": args.split,
               "command": getattr(args, "command_line", None)}
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "counts.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (args.out / "calibration.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    plot_calibration(rows, summary["count_scale"] / card.count_scale, args.out / "bland_altman.png")
    if not args.dry_run:
        update_card(args.model, {"count_scale": summary["count_scale"]}, {"count_calibration": summary})
    return json.dumps(summary, indent=1)
