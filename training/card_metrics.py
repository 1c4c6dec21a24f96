"""``cellcount-train record-metrics``: a model card's validation metrics from ``evaluate`` runs already made.

``evaluate`` runs a segmenter and a counter (and baselines) on a data set in one pass and keeps every summary in
``OUT/summary.json``; ``score`` runs the networks again. Refreshing the cards after a change of the
post-processing or the inference therefore costs one ``evaluate`` per data set, then

    cellcount-train record-metrics --model cellcount_core/models/weights/nuclei-segmenter \\
        --evaluation runs/eval/bbbc005 runs/eval/dsb2018 --note "measured 2026-12-01 at commit ..."

writes ``metrics["validation"]`` in the card as ``score`` would (per data set; for BBBC005 by blur and stain),
with the evaluations' commands as ``validation_command`` and the note.
"""

from __future__ import annotations

import json
from pathlib import Path

from .validation import method_metrics, store_validation_metrics


def read_summary(folder) -> dict:
    """The ``summary.json`` of an ``evaluate`` output folder."""
    path = Path(folder) / "summary.json"
    if not path.is_file():
        raise FileNotFoundError(f"{folder} has no summary.json; give the --out folder of a `cellcount-train "
                                "evaluate` run.")
    return json.loads(path.read_text(encoding="utf-8"))


def card_method(summary: dict, card) -> str:
    """The method name under which an evaluation summary holds the results of the model `card`."""
    evaluated = summary["models"].get(card.kind)
    if evaluated is None or evaluated["name"] != card.name:
        found = ", ".join(f"{role} {entry['name']}" for role, entry in summary["models"].items()) or "no model"
        raise ValueError(f"The evaluation {summary['title']!r} ran {found}, not the {card.kind} {card.name}; give "
                         f"evaluations of this model.")
    if card.kind == "segmenter":
        return f"seg:{card.name}"
    if card.input == "mask":
        return f"count:{card.name}@model default"
    return f"count:{card.name}"


def metrics_from_evaluations(summaries: list[dict], card) -> dict:
    """``{data set: {"seg" or "count": {"overall": ..., "by_blur": ...}}}`` of `card`'s model, one data set per
    summary (the format :func:`training.validation.validation_metrics` writes)."""
    metrics = {}
    for summary in summaries:
        dataset = summary["dataset"]
        if dataset in metrics:
            raise ValueError(f"Two evaluations of {dataset}; give one per data set.")
        method = card_method(summary, card)
        metrics[dataset] = {method.split(":")[0]: method_metrics(summary["tables"], method, dataset)}
    return metrics


def add_arguments(parser) -> None:
    """Options of ``cellcount-train record-metrics``."""
    parser.add_argument("--model", required=True, help="model file (X, X.json or X.safetensors) whose card to update")
    parser.add_argument("--evaluation", nargs="+", required=True, metavar="DIR",
                        help="output folders of `cellcount-train evaluate` runs of this model, one per data set")
    parser.add_argument("--note", help="how and when the evaluations were made (code version, machine, date)")


def run(args) -> str:
    """Write the evaluations' numbers of the model into its card; return them as JSON."""
    from cellcount_core.models.model_files import read_card

    card = read_card(args.model)
    summaries = [read_summary(folder) for folder in args.evaluation]
    metrics = metrics_from_evaluations(summaries, card)
    commands = [summary["command"] for summary in summaries if summary.get("command")]
    store_validation_metrics(args.model, metrics, command="; ".join(commands) or None, note=args.note)
    return json.dumps(metrics, indent=1)
