"""``cellcount count``: segment and count images without CellProfiler; one CSV row per image."""

from cellcount_core.bundled import DEFAULT_COUNTER, DEFAULT_SEGMENTER

THRESHOLD_CHOICES = ("model default", "simple", "manual", "otsu", "adaptive")


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "count",
        help="count cells in images or folders of images (no CellProfiler needed)",
        description="Segment and count cells with the deep models; write one CSV row per image: image, count "
                    "(objects after DeepThreshold's default post-processing), regression_count (DeepCount).",
    )
    parser.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER")
    parser.add_argument("--model", default=DEFAULT_SEGMENTER, help="segmenter: bundled name or model file path")
    parser.add_argument("--counter", default=DEFAULT_COUNTER, help="counter: bundled name or model file path")
    parser.add_argument("--csv", metavar="OUT", help="write the CSV here (default: standard output)")
    parser.add_argument("--labels", metavar="DIR", help="also write a label image per input into DIR")
    parser.add_argument("--overlays", metavar="DIR", help="also write an outline overlay PNG per input into DIR")
    parser.add_argument("--device", default="Auto", choices=("Auto", "CPU", "GPU"))
    parser.add_argument("--tile-size", type=int, default=512)
    parser.add_argument("--threshold-method", default="model default", choices=THRESHOLD_CHOICES)
    parser.add_argument("--threshold", type=float, help="the threshold for --threshold-method manual")
    parser.add_argument("--diameter", type=float, help="typical cell diameter in pixels (default: estimated)")
    parser.add_argument("--exclude-border", action="store_true", help="discard objects touching the border")
    parser.set_defaults(run=run)


def run(args):
    from cellcount_core.batch_count import count_files, write_rows
    from cellcount_core.image_io import list_images

    if args.threshold_method == "manual" and args.threshold is None:
        raise SystemExit("cellcount count: --threshold-method manual needs --threshold VALUE (0 to 1).")
    rows = count_files(
        list_images(args.inputs),
        segmenter=args.model,
        counter=args.counter,
        device=args.device,
        tile_size=args.tile_size,
        labels_dir=args.labels,
        overlays_dir=args.overlays,
        threshold_method=args.threshold_method,
        threshold_value=args.threshold,
        diameter=args.diameter,
        exclude_border=args.exclude_border,
    )
    write_rows(rows, args.csv)
    return 0
