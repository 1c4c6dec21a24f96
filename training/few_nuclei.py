"""Counts on crops of a few nuclei, enlarged: what a user zoomed in with a high-magnification objective sees.

Crops of 64, 80 and 100 px of a labelled image that hold 2-7 nuclei are enlarged (x4 and x5 by default: the StarDist
example's nuclei become 80-100 px) and every method of :class:`training.evaluate.Models` counts them. A crop cuts
some nuclei, so its truth is a range: from the nuclei at least half inside it to all that it touches. A count is
off by how far it falls outside that range.

``python -m training.few_nuclei --dataset stardist --data ../shared/data/stardist_example --out DIR`` writes
``crops.csv`` (one row per crop and factor), ``few_nuclei.md`` (per method: crops, how many are off by more than
:data:`TOLERANCE`, median and largest error), ``counts.png`` (every count against the nuclei present) and
``summary.json`` into DIR.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from tqdm import tqdm

from .datasets import read_image
from .evaluate import Models, evaluate_image, markdown_table
from .plots import plot_counts
from .robustness import add_model_arguments, models_and_samples, resize_pair, write_csv
from .threshold_tuning import Reference, read_reference

__all__ = ["FACTORS", "SIDES", "TOLERANCE", "few_nuclei_crops", "crop_rows", "error_table", "run"]

FACTORS = (4.0, 5.0)
SIDES = (64, 80, 100)
#: Crops start every this many rows and columns (coprime steps, so that the crops do not repeat one grid).
STEPS = (37, 53)
NUCLEI = (2, 7)
#: A count this far outside a crop's range or farther is counted as off.
TOLERANCE = 2.0


def few_nuclei_crops(image: np.ndarray, labels: np.ndarray, fraction: float = 0.15, seed: int = 0
                     ) -> Iterator[tuple[str, np.ndarray, np.ndarray, int]]:
    """Crops holding :data:`NUCLEI` nuclei, a random `fraction` of them: ``(name, crop, crop labels, inside)``.

    ``inside`` counts the nuclei with at least half their area in the crop.
    """
    rng = np.random.default_rng(seed)
    areas = np.bincount(labels.ravel())
    for side in SIDES:
        for top in range(0, labels.shape[0] - side, STEPS[0]):
            for left in range(0, labels.shape[1] - side, STEPS[1]):
                window = (slice(top, top + side), slice(left, left + side))
                present = np.bincount(labels[window].ravel(), minlength=len(areas))
                present[0] = 0
                ids = np.flatnonzero(present)
                if NUCLEI[0] <= len(ids) <= NUCLEI[1] and rng.random() < fraction:
                    inside = int(np.count_nonzero(present[ids] >= 0.5 * areas[ids]))
                    yield f"{top},{left},{side}", image[window], labels[window], inside


def crop_rows(samples, models: Models, factors: Sequence[float] = FACTORS, fraction: float = 0.15,
              progress: bool = True) -> list[dict]:
    """One row per crop and factor: the counts of every method, and the crop's range (``inside``, ``true_count``)."""
    crops = [(sample, crop) for sample in samples
             for crop in few_nuclei_crops(read_image(sample.image_path), read_reference(sample).labels, fraction)]
    rows = []
    for sample, (name, image, labels, inside) in tqdm(crops, desc="crops", disable=not progress):
        present = len(np.unique(labels[labels > 0]))
        for factor in factors:
            enlarged, enlarged_labels = resize_pair(image, labels, factor)
            row, _ = evaluate_image(enlarged, Reference(count=present, labels=enlarged_labels), models,
                                    row={"id": f"{sample.id}:{name}", "scale": factor, "inside": inside})
            rows.append(row)
    return rows


def error_table(rows: list[dict], methods: Sequence[str]) -> list[dict]:
    """Per method: crops, those off by more than :data:`TOLERANCE`, median and largest error (cells)."""
    table = []
    for method in methods:
        errors = [max(0.0, row["inside"] - row[f"{method}_count"], row[f"{method}_count"] - row["true_count"])
                  for row in rows]
        table.append({"method": method, "crops": len(errors), f"off by more than {TOLERANCE:g}":
                      int(np.sum(np.asarray(errors) > TOLERANCE)), "median error": round(float(np.median(errors)), 2),
                      "largest error": round(float(np.max(errors)), 2)})
    return table


def run(args: argparse.Namespace) -> dict:
    """Count the enlarged crops with every method; write the tables into ``args.out``."""
    models, samples = models_and_samples(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = crop_rows(samples, models, args.factors, args.fraction)
    table = error_table(rows, models.method_names())
    write_csv(rows, out / "crops.csv")
    (out / "few_nuclei.md").write_text(markdown_table(table), encoding="utf-8")
    plot_counts([row["true_count"] for row in rows],
                {method: [row[f"{method}_count"] for row in rows] for method in models.method_names()},
                out / "counts.png", title="A few nuclei enlarged: count against the nuclei in the crop", symlog=True)
    summary = {"images": len(samples), "crops": len(rows) // len(args.factors), "factors": list(args.factors),
               "fraction": args.fraction, "cell_size": args.cell_size, "errors": table}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m training.few_nuclei", description=__doc__.split("\n")[0])
    add_model_arguments(parser, "stardist")
    parser.add_argument("--factors", type=float, nargs="+", default=list(FACTORS))
    parser.add_argument("--fraction", type=float, default=0.15, help="share of the eligible crops kept (seed 0)")
    parser.add_argument("--out", required=True)
    print(markdown_table(run(parser.parse_args(argv))["errors"]))


if __name__ == "__main__":
    main()
