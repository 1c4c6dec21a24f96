"""``cellcount swap``: rewrite a pipeline with DeepSegment + DeepThreshold in place of IdentifyPrimaryObjects."""

from pathlib import Path

from cellcount_core.models.bundled import DEFAULT_COUNTER, DEFAULT_SEGMENTER

CELLPROFILER_5_REVISION = 500


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "swap",
        help="rewrite a pipeline: IdentifyPrimaryObjects -> DeepSegment + DeepThreshold",
        description="Read IN (saved by CellProfiler 4.2 or 5; CellProfiler upgrades its settings), replace "
                    "every IdentifyPrimaryObjects by DeepSegment + DeepThreshold making objects of the same name "
                    "with the same size, border and hole options, and write OUT, so every downstream module "
                    "keeps working. With --compare, IdentifyPrimaryObjects stays and the deep modules (and "
                    "DeepCount) are added beside it for `cellcount compare`.",
    )
    parser.add_argument("input", metavar="IN", type=Path, help="the pipeline to swap (.cppipe, .json or .h5)")
    parser.add_argument("output", metavar="OUT", type=Path, help="the .cppipe file to write")
    parser.add_argument("--compare", action="store_true",
                        help="keep IdentifyPrimaryObjects and add the deep modules beside it under new names")
    parser.add_argument("--prefix", default="Deep", help="prefix of the deep objects' names with --compare")
    parser.add_argument("--model", default=DEFAULT_SEGMENTER,
                        help="DeepSegment's model: a bundled name or a .safetensors file")
    parser.add_argument("--counter", default=DEFAULT_COUNTER,
                        help="DeepCount's model with --compare: a bundled name or a .safetensors file")
    parser.add_argument("--plugins-directory", type=Path, metavar="DIR",
                        help="plugin folder holding the pipeline's other plugins and cellcount's (default: "
                             "cellcount's own)")
    parser.add_argument("--verbose", action="store_true", help="show CellProfiler's own log messages")
    parser.set_defaults(run=run)


def run(args):
    from cellcount_cellprofiler.pipeline_loading import headless_cellprofiler, load_pipeline_strict
    from cellcount_cellprofiler.pipeline_loading import quiet_cellprofiler, require_file
    from cellcount_cellprofiler.pipeline_swap import swap_pipeline

    if args.output.suffix != ".cppipe":
        raise ValueError(f"OUT {args.output} must be a .cppipe file.")
    if args.output.resolve() == args.input.resolve():
        raise ValueError("OUT is IN: write the swapped pipeline to a new file, so the original stays.")
    require_file(args.input)
    with quiet_cellprofiler(args.verbose), headless_cellprofiler(args.plugins_directory) as plugin_folder:
        loaded = load_pipeline_strict(args.input, plugin_folder)
        result = swap_pipeline(loaded.pipeline, compare=args.compare, prefix=args.prefix, segmenter=args.model,
                               counter=args.counter)
        with open(args.output, "w", encoding="utf-8") as handle:
            loaded.pipeline.dump(handle)
    for note in result.notes:
        print(note)
    _print_columns("Measurements no longer made", result.removed_columns)
    _print_columns("New measurements", result.added_columns)
    _print_format_note(loaded.saved_revision, args.input)
    print(f"Wrote {args.output} ({len(loaded.pipeline.modules(False))} modules). Check it before a cluster run: "
          f"cellcount check-pipeline {args.output}")
    return 0


def _print_columns(title, columns):
    if columns:
        print(f"{title}: " + ", ".join(f"{table}.{feature}" for table, feature in columns))


def _print_format_note(revision, path):
    from cellprofiler_core import __version__

    if revision is not None and revision < CELLPROFILER_5_REVISION <= _revision_of(__version__):
        print(f"Note: {path} was saved by CellProfiler {revision // 100}.{revision // 10 % 10}; the swapped pipeline "
              f"is written in the format of the CellProfiler running this command ({__version__}), which "
              "CellProfiler 4 loads with a warning about the newer version. For a file in CellProfiler 4's own "
              "format, run `cellcount swap` where CellProfiler 4 is installed.")


def _revision_of(version):
    major, minor, micro = (int("".join(c for c in part if c.isdigit()) or 0) for part in version.split(".")[:3])
    return major * 100 + minor * 10 + micro
