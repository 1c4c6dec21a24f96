"""Counts on images unlike the training data: the same images resized, and fields without any cell.

Users try their own images first, and theirs differ from ours in cell size and in how many cells there are (an
empty well is common in a screen). This scores every method of :class:`training.evaluate.Models` on

- validation images resized by each factor of :data:`SCALES` (cubic to enlarge, area averaging to shrink; the
  true labels by nearest neighbour), counts against the true count and detections against the resized labels;
- empty fields (:func:`empty_fields`): noise, constant images, real background crops of the same images far
  from any nucleus, those crops out of focus as a camera records them, and smoothed noise-free floats;
  every object found there is a false one.

``python -m training.robustness --data ../shared/data/dsb2018_fluo --out DIR`` (validation images; or
``--dataset stardist --data ../shared/data/stardist_example``) writes ``scales.md``,
``empty_fields.md``, their CSVs, ``counts_by_scale.png`` and ``summary.json`` into DIR. ``--segmenter none``
or ``--counter none`` leaves that model out, as in ``python -m training evaluate``.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np
from scipy import ndimage as ndi
from tqdm import tqdm

from cellcount_core.images.normalization import noise_sigma, to_grayscale

from .datasets import read_image
from .evaluate import Models, evaluate_image, markdown_table, model_option, summarize
from .threshold_tuning import Reference, default_split, read_reference, select_samples

__all__ = ["SCALES", "resize_pair", "background_crops", "empty_fields", "scale_rows", "empty_rows", "write_csv",
           "add_model_arguments", "models_and_samples", "run"]

SCALES = (0.5, 1.0, 2.0, 3.0, 4.0)
#: A background crop keeps at least this many pixels between its border and the nearest true nucleus.
BACKGROUND_MARGIN = 8
#: Background crops are squares of at least this side.
MIN_CROP_SIDE = 64


def resize_pair(image: np.ndarray, labels: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """An image resized by `factor` (cubic to enlarge, area to shrink) and its labels (nearest neighbour)."""
    if factor == 1.0:
        return image, labels
    size = (max(1, round(image.shape[1] * factor)), max(1, round(image.shape[0] * factor)))
    resized = cv2.resize(image, size, interpolation=cv2.INTER_CUBIC if factor > 1 else cv2.INTER_AREA)
    return resized, cv2.resize(labels.astype(np.int32), size, interpolation=cv2.INTER_NEAREST)


def background_crops(image: np.ndarray, labels: np.ndarray, side: int = MIN_CROP_SIDE) -> Iterator[np.ndarray]:
    """The largest square of `image` at least `side` pixels wide and `BACKGROUND_MARGIN` away from any label.

    Yields nothing when the image has no such square.
    """
    free = ~ndi.binary_dilation(labels > 0, iterations=BACKGROUND_MARGIN)
    half = ndi.distance_transform_cdt(np.pad(free, 1), metric="chessboard")[1:-1, 1:-1] - 1
    if half.max() * 2 < side:
        return
    y, x = np.unravel_index(np.argmax(half), half.shape)
    radius = int(half[y, x])
    yield image[y - radius:y + radius, x - radius:x + radius]


def empty_fields(samples, seed: int = 0, side: int = 256) -> list[tuple[str, np.ndarray]]:
    """Fields without cells: synthetic ones and background crops of labelled samples.

    Parameters
    ----------
    samples : sequence of Sample
        Images with instance labels (DSB2018 validation) to crop backgrounds from.
    seed : int
        Seed of the noise images.
    side : int
        Side of the synthetic images.

    Returns
    -------
    list of (kind, image)
        Kinds: ``noise`` (Gaussian on float32, uint8 and uint16), ``constant`` (zeros and a grey level),
        ``background`` (real crops), ``out of focus`` (those crops as a camera records a defocused field: blurred
        by a Gaussian of 8 px, the crop's own noise added back and rounded to its grey levels) and ``smoothed
        float`` (the blurred crop without noise or grey levels, as a smoothing filter would leave it).
    """
    rng = np.random.default_rng(seed)
    shape = (side, side)
    fields = [("noise", rng.normal(100.0, 10.0, shape).astype(np.float32)),
              ("noise", np.clip(rng.normal(30.0, 8.0, shape), 0, 255).astype(np.uint8)),
              ("noise", rng.poisson(400.0, shape).astype(np.uint16)),
              ("constant", np.zeros(shape, np.uint16)),
              ("constant", np.full(shape, 40, np.uint8))]
    for sample in samples:
        labels = read_reference(sample).labels
        for crop in background_crops(read_image(sample.image_path), labels):
            blurred = _blurred(crop, 8.0)
            fields.append(("background", crop))
            fields.append(("out of focus", _as_recorded(blurred, noise_sigma(to_grayscale(crop)), rng)))
            fields.append(("smoothed float", blurred))
    return fields


def _blurred(image: np.ndarray, sigma: float) -> np.ndarray:
    """`image` as float32 blurred by a Gaussian of `sigma` pixels in its plane (colour channels kept apart)."""
    sigmas = (sigma, sigma) + (0.0,) * (image.ndim - 2)
    return ndi.gaussian_filter(image.astype(np.float32), sigmas)


def _as_recorded(image: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    """`image` with Gaussian sensor noise of standard deviation `noise` added and rounded to whole grey levels."""
    return np.clip(np.round(image + rng.normal(0.0, noise, image.shape)), 0, None).astype(np.float32)


def scale_rows(samples, models: Models, scales: Sequence[float] = SCALES, progress: bool = True) -> list[dict]:
    """One row per sample and scale (:func:`training.evaluate.evaluate_image` columns plus ``scale``)."""
    rows = []
    for sample in tqdm(samples, desc="resized images", disable=not progress):
        image, reference = read_image(sample.image_path), read_reference(sample)
        for factor in scales:
            resized, labels = resize_pair(image, reference.labels, factor)
            row, _ = evaluate_image(resized, Reference(count=reference.count, labels=labels), models,
                                    row={"id": sample.id, "scale": factor})
            rows.append(row)
    return rows


def empty_rows(fields, models: Models, progress: bool = True) -> list[dict]:
    """One row per empty field: its kind and what every method counted there."""
    rows = []
    for index, (kind, image) in enumerate(tqdm(fields, desc="empty fields", disable=not progress)):
        empty = Reference(count=0, labels=np.zeros(image.shape[:2], np.int32))
        row, _ = evaluate_image(image, empty, models, row={"id": f"{kind}-{index}", "kind": kind})
        rows.append(row)
    return rows


def _mean_counts(rows: list[dict], methods: Sequence[str]) -> list[dict]:
    """Per kind of empty field: how many fields and the mean count of each method."""
    table = []
    for kind in dict.fromkeys(row["kind"] for row in rows):
        chosen = [row for row in rows if row["kind"] == kind]
        table.append({"kind": kind, "fields": len(chosen),
                      **{method: round(float(np.mean([row[f"{method}_count"] for row in chosen])), 2)
                         for method in methods}})
    return table


def _plot_counts_by_scale(rows: list[dict], methods: Sequence[str], path: Path) -> None:
    """Median count / true count against the scale, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scales = sorted({row["scale"] for row in rows})
    figure, axes = plt.subplots(figsize=(6, 4.5))
    for method in methods:
        ratios = [np.median([row[f"{method}_count"] / max(row["true_count"], 1) for row in rows
                             if row["scale"] == scale]) for scale in scales]
        axes.plot(scales, ratios, marker="o", label=method)
    axes.axhline(1.0, color="grey", linewidth=0.8)
    axes.set_xscale("log", base=2)
    axes.set(xlabel="resize factor", ylabel="median count / true count", title="Counts on resized images")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_csv(rows: list[dict], path: Path) -> None:
    """`rows` as a CSV file, one column for every key of any row."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def add_model_arguments(parser: argparse.ArgumentParser, dataset: str) -> None:
    """The options that choose the data set (`dataset` by default) and the methods to score."""
    parser.add_argument("--dataset", choices=("dsb2018", "stardist"), default=dataset)
    parser.add_argument("--data", required=True, help="the data set's folder (DSB2018: images/, labels/)")
    parser.add_argument("--segmenter", default="default", help="segmenter name or file, or 'none' (default: bundled)")
    parser.add_argument("--counter", default="default", help="counter name or file, or 'none' (default: bundled)")
    parser.add_argument("--baselines", nargs="*", default=["classical", "cellprofiler"])
    parser.add_argument("--device", default="Auto")
    parser.add_argument("--cell-size", default="auto", metavar="auto|off|PIXELS")
    parser.add_argument("--limit", type=int, default=None, help="at most this many images of the split")


def models_and_samples(args: argparse.Namespace) -> tuple[Models, list]:
    """The methods (cards loaded) and the images (the data set's default split) that `args` choose."""
    models = Models(segmenter=model_option(args.segmenter), counter=model_option(args.counter),
                    baselines=tuple(args.baselines), device=args.device, cell_size=args.cell_size)
    models.load_cards()
    return models, select_samples(args.dataset, args.data, default_split(args.dataset), limit=args.limit)


def run(args: argparse.Namespace) -> dict:
    """Score resized validation images and empty fields; write the tables and the plot into ``args.out``."""
    models, samples = models_and_samples(args)
    methods = models.method_names()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scaled = scale_rows(samples, models, args.scales)
    scale_table = summarize(scaled, methods, group="scale")
    empty = empty_rows(empty_fields(samples), models)
    empty_table = _mean_counts(empty, methods)
    for name, rows in (("scales_per_image", scaled), ("empty_fields_per_field", empty)):
        write_csv(rows, out / f"{name}.csv")
    (out / "scales.md").write_text(markdown_table(scale_table), encoding="utf-8")
    (out / "empty_fields.md").write_text(markdown_table(empty_table), encoding="utf-8")
    _plot_counts_by_scale(scaled, methods, out / "counts_by_scale.png")
    summary = {"images": len(samples), "scales": list(args.scales), "cell_size": args.cell_size,
               "by_scale": scale_table, "empty_fields": empty_table}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m training.robustness", description=__doc__.split("\n")[0])
    add_model_arguments(parser, "dsb2018")
    parser.add_argument("--scales", type=float, nargs="+", default=list(SCALES))
    parser.add_argument("--out", required=True)
    summary = run(parser.parse_args(argv))
    print(markdown_table(summary["by_scale"]))
    print(markdown_table(summary["empty_fields"]))


if __name__ == "__main__":
    main()
