"""The validation numbers written into a freshly trained model's card.

A thin layer over :mod:`training.evaluate`: the saved model runs on the whole validation images (segmenters
through threshold and post-processing, counters through ``predict_count``), and the summaries are kept per
source, for BBBC005 also per blur level and per stain.
"""

from __future__ import annotations

import json

from .datasets import Sample
from .evaluate import Models, evaluate_samples, summarize

_KEPT = ("images", "mae", "medae", "mpe", "mape", "precision", "recall", "f1", "accuracy")
_GROUPS = {"bbbc005": ("blur", "stain")}


def _kept(summary: dict) -> dict:
    return {key: summary[key] for key in _KEPT if key in summary}


def validation_metrics(samples: list[Sample], *, segmenter=None, counter=None, device: str = "Auto") -> dict:
    """Score a segmenter and/or a counter on validation samples.

    Parameters
    ----------
    samples : list of Sample
        Validation samples with masks or label images.
    segmenter, counter : str or Path, optional
        Model files. A mask-input counter counts the segmenter's thresholded mask.
    device : str
        Inference device.

    Returns
    -------
    dict
        ``{source: {method: {"overall": {...}, "by_blur": {...}, ...}}}`` with count errors (MAE, MedAE, MPE,
        MAPE) and, for segmenters, detection scores (precision, recall, F1, accuracy).
    """
    models = Models(segmenter=segmenter, counter=counter, baselines=(), device=device)
    models.load_cards()
    methods = models.method_names()
    metrics = {}
    for source in dict.fromkeys(sample.source for sample in samples):
        rows, _ = evaluate_samples([s for s in samples if s.source == source], models, thresholds=None)
        tables = {"overall": summarize(rows, methods)}
        tables.update({f"by_{group}": summarize(rows, methods, group) for group in _GROUPS.get(source, ())})
        metrics[source] = {method.split(":")[0]: method_metrics(tables, method, source) for method in methods}
    return metrics


def method_metrics(tables: dict, method: str, source: str) -> dict:
    """One method's card entry, ``{"overall": {...}, "by_blur": {...}, ...}``, from `summarize` tables.

    `tables` maps ``"overall"`` and ``"by_<group>"`` to :func:`training.evaluate.summarize` rows (as in an
    ``evaluate`` run's ``summary.json``); the groups kept are those of :data:`_GROUPS` for `source`.
    """
    overall = [row for row in tables["overall"] if row["method"] == method]
    if not overall:
        raise ValueError(f"No results of {method} in these tables (methods: "
                         f"{', '.join(row['method'] for row in tables['overall'])}).")
    entry = {"overall": _kept(overall[0])}
    for group in _GROUPS.get(source, ()):
        entry[f"by_{group}"] = {str(row[group]): _kept(row) for row in tables[f"by_{group}"]
                                if row["method"] == method}
    return entry


def write_validation_metrics(model, samples: list[Sample], *, segmenter=None, device: str = "Auto",
                             command: str | None = None) -> dict:
    """Score ``model`` (a segmenter or counter file) and store the result in its card as ``metrics["validation"]``.

    Only the card (``X.json``) is rewritten; the weights are untouched. A mask-input counter counts the masks of
    ``segmenter`` (the bundled one by default). Returns the metrics.
    """
    from cellcount_core.models.model_files import read_card

    card = read_card(model)
    if card.kind == "segmenter":
        metrics = validation_metrics(samples, segmenter=model, device=device)
    else:
        masks_from = (segmenter or "default") if card.input == "mask" else None
        metrics = validation_metrics(samples, segmenter=masks_from, counter=model, device=device)
    store_validation_metrics(model, metrics, command)
    return metrics


def store_validation_metrics(model, metrics: dict, command: str | None = None, note: str | None = None) -> None:
    """Write ``metrics`` into the card of ``model`` as ``metrics["validation"]``, with the command that measured
    them and a note (how and when); only the card (``X.json``) is rewritten, the weights are untouched."""
    from cellcount_core.models.model_files import update_card

    notes = {key: value for key, value in (("validation_command", command), ("validation_note", note)) if value}
    update_card(model, metrics={"validation": metrics, **notes})


def add_arguments(parser) -> None:
    """Options of ``cellcount-train score``."""
    from .options import add_data_arguments

    parser.add_argument("--model", required=True, help="model file (X, X.json or X.safetensors)")
    add_data_arguments(parser)
    parser.add_argument("--segmenter", help="segmenter whose masks a mask-input counter counts (default: bundled)")
    parser.add_argument("--device", default="Auto", help="Auto, CPU or GPU")
    parser.add_argument("--limit", type=int, default=None, help="use at most this many images per source")


def run(args) -> str:
    """Score the model on the validation split of ``--data`` and write the numbers into its card."""
    from .options import read_split

    _, validation = read_split(args)
    metrics = write_validation_metrics(args.model, validation, segmenter=args.segmenter, device=args.device,
                                       command=getattr(args, "command_line", None))
    return json.dumps(metrics, indent=1)
