"""The ``cellcount`` command: ``cellcount SUBCOMMAND --help`` explains each subcommand."""

import argparse
import sys

from cellcount_cellprofiler.commands import batch, check_pipeline, compare, count, plugins_dir, swap
from cellcount_core.images.image_checks import InsufficientMemoryError
from cellcount_core.models.model_files import ModelFileError

SUBCOMMANDS = (count, check_pipeline, swap, compare, plugins_dir, batch)


def build_parser():
    parser = argparse.ArgumentParser(prog="cellcount", description="Deep-learning cell counting for CellProfiler.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")
    for command in SUBCOMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (FileNotFoundError, ValueError, ModelFileError, InsufficientMemoryError) as error:
        print(f"cellcount {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
