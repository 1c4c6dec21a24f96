"""``cellcount-train density-rule``: measure below which density diameter a counter should count an image enlarged.

A density counter spreads each cell's unit mass over a disk wider than the cell; on cells smaller than it counts
well that disk shrinks too, and the counter under-counts. Its own map tells (`cell_scale.density_diameter`), and
where the card's ``small_density_diameter`` is set, DeepCount counts such an image enlarged
(`cell_scale.counter_enlargement`). The threshold belongs to the counter: it depends on how wide it spreads mass.

This command counts training images at their own size and reduced (x0.5 by default, where the cells are
smallest), records for each the diameter the rule sees and the counts at the image's size and enlarged, and
tabulates the counting error (MAPE) that each candidate threshold would give. ``--choose PIXELS`` writes the chosen
threshold and the table into the card.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .count_calibration import add_counting_arguments, read_samples

__all__ = ["THRESHOLDS", "measure_image", "measure_samples", "rule_table", "add_arguments", "run"]

THRESHOLDS = (24.0, 26.0, 28.0, 30.0, 32.0, 34.0, 36.0, 38.0, 40.0)
SCALES = (0.5, 1.0)


def measure_image(image: np.ndarray, model, segmenter="default", device="Auto") -> dict:
    """The density diameter the counter's enlargement rule sees on `image` and the two counts it chooses between.

    Returns ``{"diameter", "count", "enlarged_count"}``: the count as DeepCount gives it with the rule off, and
    the count of the image enlarged; ``diameter`` is None (and ``enlarged_count`` the count) where no threshold
    would enlarge it: the segmenter's probes resize the image, find an empty field or measure cells too large to
    enlarge, or the enlarged image would be too large.
    """
    from cellcount_core.running import inference
    from cellcount_core.running.cell_scale import DENSITY_ENLARGEMENT, counter_enlargement, resize_image

    count, scale = inference.predict_count_at_cell_scale(image, model, device=device, segmenter=segmenter,
                                                         enlarge_small_cells=False)
    largest = inference.get_model(model, device, default=inference.DEFAULT_COUNTER)[1].diameter_band[1]
    if counter_enlargement(scale.density_diameter, image.shape[:2], math.inf, scale.diameter, largest) == 1.0:
        return {"diameter": None, "count": count, "enlarged_count": count}
    enlarged = inference.predict_count(resize_image(image, DENSITY_ENLARGEMENT), model, device=device)
    return {"diameter": scale.density_diameter, "count": count, "enlarged_count": enlarged}


def measure_samples(samples, model, scales=SCALES, segmenter="default", device="Auto") -> list[dict]:
    """One row per sample and scale: id, source, scale, true count and :func:`measure_image`'s numbers."""
    from training.datasets import read_image
    from training.robustness import resize_pair
    from training.threshold_tuning import read_reference

    rows = []
    for sample in tqdm(samples, desc="measuring", mininterval=5.0):
        image = read_image(sample.image_path)
        truth = sample.count if sample.count is not None else read_reference(sample).count
        for scale in scales:
            resized, _ = resize_pair(image, np.zeros(image.shape[:2], np.uint8), scale)
            measured = measure_image(resized, model, segmenter, device)
            rows.append({"id": sample.id, "source": sample.source, "scale": scale, "true_count": truth,
                         **{key: None if value is None else round(value, 3) for key, value in measured.items()}})
    return rows


def _is_enlarged(row: dict, threshold: float | None) -> bool:
    return threshold is not None and row["diameter"] is not None and 0.0 < row["diameter"] < threshold


def _chosen_count(row: dict, threshold: float | None) -> float:
    return row["enlarged_count"] if _is_enlarged(row, threshold) else row["count"]


def rule_table(rows: list[dict], thresholds=THRESHOLDS) -> list[dict]:
    """MAPE (%) and the number of images enlarged, per source and scale, with the rule off and at each threshold.

    Images without cells are left out of the MAPE (their percentage error is undefined).
    """
    table = []
    for threshold in (None, *thresholds):
        entry = {"threshold": "off" if threshold is None else threshold}
        for source, scale in sorted({(row["source"], row["scale"]) for row in rows}):
            chosen = [row for row in rows if (row["source"], row["scale"]) == (source, scale) and row["true_count"]]
            errors = [abs(_chosen_count(row, threshold) - row["true_count"]) / row["true_count"] for row in chosen]
            enlarged = sum(_is_enlarged(row, threshold) for row in chosen)
            entry[f"{source} x{scale:g} MAPE"] = round(100 * float(np.mean(errors)), 2) if errors else None
            entry[f"{source} x{scale:g} enlarged"] = enlarged
        table.append(entry)
    return table


def _write_outputs(rows: list[dict], table: list[dict], out: Path) -> str:
    """Write per_image.csv, rule.md and the plot into `out`; return the table as Markdown."""
    from training.evaluate import markdown_table
    from training.plots import plot_lines

    out.mkdir(parents=True, exist_ok=True)
    with open(out / "per_image.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    markdown = markdown_table(table)
    (out / "rule.md").write_text(markdown, encoding="utf-8")
    measured = [entry for entry in table if entry["threshold"] != "off"]
    curves = {name.removesuffix(" MAPE"): [entry[name] for entry in measured]
              for name in table[0] if name.endswith("MAPE")}
    plot_lines([entry["threshold"] for entry in measured], curves, out / "mape_by_threshold.png",
               xlabel="small density diameter (px)", ylabel="counter MAPE (%)",
               title="Counting error if images below the threshold are counted enlarged")
    return markdown


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``cellcount-train density-rule``."""
    add_counting_arguments(parser, "measure on", limit=80)
    parser.add_argument("--scales", type=float, nargs="+", default=list(SCALES),
                        help="resize factors of the images (default 0.5 1)")
    parser.add_argument("--thresholds", type=float, nargs="+", default=list(THRESHOLDS),
                        help="candidate thresholds in pixels")
    parser.add_argument("--out", type=Path, required=True,
                        help="folder for per_image.csv, rule.md and mape_by_threshold.png")
    parser.add_argument("--choose", type=float, default=None, metavar="PIXELS",
                        help="write this threshold into the card's small_density_diameter (default: measure only)")


def run(args: argparse.Namespace) -> str:
    """Measure the images, tabulate the thresholds and (with ``--choose``) write the card."""
    from cellcount_core.models.model_files import read_card, update_card

    card = read_card(args.model)
    if card.kind != "counter" or card.architecture != "density_counter":
        raise ValueError(f"{args.model} is a {card.architecture} {card.kind}; density-rule needs a density counter.")
    samples = read_samples(args.data, args.split, args.limit)
    if not samples:
        raise ValueError(f"--data {' '.join(args.data)} has no {args.split} images to measure.")
    rows = measure_samples(samples, args.model, args.scales, args.segmenter, args.device)
    table = rule_table(rows, args.thresholds)
    markdown = _write_outputs(rows, table, args.out)
    summary = {"table": table, "data": args.data, "split": args.split, "images": len(samples),
               "command": getattr(args, "command_line", None)}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    if args.choose is not None:
        update_card(args.model, {"small_density_diameter": args.choose},
                    {"small_density_rule": {**summary, "chosen": args.choose}})
    return markdown
