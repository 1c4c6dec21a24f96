"""``cellcount compare``: a report on classical against deep counts from a comparison run's spreadsheets."""

from pathlib import Path

from cellcount_cellprofiler.comparison_report import DEFAULT_OVERLAYS


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "compare",
        help="report how classical and deep counts of a CellProfiler run agree (tables, plots, HTML)",
        description="Read the ExportToSpreadsheet tables of a comparison run (Image.csv with Count_<Name>, "
                    "Count_Deep<Name>, DeepCount_<Name>; object tables with Location_Center_X/Y) and write a "
                    "report: per-image counts, agreement (mean difference, MAE, Bland-Altman limits), errors "
                    "against true counts when given, scatter and Bland-Altman plots, overlays of both object "
                    "sets on the images that disagree most, and one self-contained HTML page.",
    )
    parser.add_argument("output_dir", metavar="OUTPUT_DIR", type=Path, help="the CellProfiler run's output folder")
    parser.add_argument("--report", type=Path, metavar="DIR", help="report folder (default: OUTPUT_DIR/comparison)")
    parser.add_argument("--prefix", help="ExportToSpreadsheet's file name prefix (default: found)")
    parser.add_argument("--classical", metavar="COLUMN", help="classical count column, e.g. Count_Nuclei")
    parser.add_argument("--deep", metavar="COLUMN", help="deep objects' count column, e.g. Count_DeepNuclei")
    parser.add_argument("--regression", metavar="COLUMN", help="DeepCount column, e.g. DeepCount_Nuclei")
    truth = parser.add_mutually_exclusive_group()
    truth.add_argument("--truth", type=Path, metavar="CSV", help="true counts: a CSV with columns image,true_count")
    truth.add_argument("--truth-column", metavar="COLUMN", help="an Image.csv column holding true counts")
    parser.add_argument("--image-name", help="the image to draw objects on and name images by (default: the "
                                             "nuclear stain, else the first FileName_ column)")
    parser.add_argument("--overlays", type=int, default=DEFAULT_OVERLAYS, metavar="N",
                        help=f"how many images to draw, worst disagreement first (default {DEFAULT_OVERLAYS})")
    parser.set_defaults(run=run)


def run(args):
    from cellcount_cellprofiler.comparison_report import write_report
    from cellcount_cellprofiler.comparison_tables import find_methods, image_column, read_exports
    from cellcount_cellprofiler.comparison_tables import truth_from_csv

    exports = read_exports(args.output_dir, args.prefix)
    comparisons = find_methods(exports.columns, args.classical, args.deep, args.regression)
    image_name = image_column(exports.columns, args.image_name)
    truth = None
    if args.truth_column:
        if args.truth_column not in exports.columns:
            raise ValueError(f"Image.csv has no column {args.truth_column}.")
        truth = exports.values(args.truth_column)
    elif args.truth:
        if image_name is None:
            raise ValueError("Image.csv has no FileName_ column to match the truth table's image names with.")
        truth = truth_from_csv(args.truth, [row.get(f"FileName_{image_name}", "") for row in exports.rows])
    if truth is None and any(len(methods) < 2 for methods in comparisons.values()):
        raise ValueError("Name two count columns to compare (--classical, --deep, --regression), or give true "
                         "counts with --truth or --truth-column.")
    report = write_report(exports, comparisons, args.report or args.output_dir / "comparison", truth=truth,
                          image_name=image_name, overlays=args.overlays)
    for line in report.summary:
        print(line)
    print(f"Report: {report.html} (per-image counts: {report.table}, {len(report.images)} plots)")
    return 0
