"""``cellcount-train``: train segmenters and counters, tune thresholds and evaluate models.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and ``run(args)``; modules are imported
only when their subcommand runs, so ``cellcount-train --help`` is fast and a missing optional module only disables
its own subcommand.
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys

SUBCOMMANDS = {
    "train-segmenter": ("training.segmenter", "train a segmentation network (weighted BCE on augmented crops)"),
    "train-counter": ("training.counter", "train a counting network (density map or DeepCellCount regressor)"),
    "tune-threshold": ("training.threshold_tuning", "choose a segmenter's default threshold by Kneedle"),
    "evaluate": ("training.evaluate", "score models on the validation split"),
    "calibrate-count": ("training.count_calibration", "scale a counter's counts to be right on average on training "
                                                      "images"),
    "density-rule": ("training.density_rule", "measure below which density diameter a counter counts images "
                                              "enlarged"),
    "score": ("training.validation", "write whole-image validation metrics into a model card"),
    "record-metrics": ("training.card_metrics", "write the validation metrics of evaluate runs into a model card"),
}


def _module(name: str):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name != name:
            raise
        return None


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """The argument parser; only the subcommand named in ``argv`` (if any) has its module imported."""
    parser = argparse.ArgumentParser(prog="cellcount-train", description="Train segmenters and counters, tune thresholds "
                                     "and evaluate models.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command, (module_name, help_text) in SUBCOMMANDS.items():
        sub = commands.add_parser(command, help=help_text, description=help_text)
        if command in argv:
            module = _module(module_name)
            if module is None:
                parser.error(f"{command} needs {module_name}, which is not installed in this checkout.")
            module.add_arguments(sub)
            sub.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``cellcount-train`` and ``python -m training``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    args.command_line = shlex.join(["cellcount-train", *argv])
    result = args.run(args)
    if result is not None:
        print(result)
    return 0
