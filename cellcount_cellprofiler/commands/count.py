"""``cellcount count``: segment and count images without CellProfiler; one CSV row per image."""

import sys

from cellcount_core.models.bundled import DEFAULT_COUNTER, DEFAULT_SEGMENTER

THRESHOLD_CHOICES = ("model default", "simple", "manual", "otsu", "adaptive")


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "count",
        help="count cells in images or folders of images (no CellProfiler needed)",
        description="Segment and count cells with the deep models; write one CSV row per image: image, count "
                    "(objects after DeepThreshold's default post-processing), regression_count (DeepCount). An "
                    "image that cannot be read or counted gets a row with the reason in its error column, the "
                    "other images are counted, and the command exits 1 at the end.",
    )
    parser.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER")
    parser.add_argument("--model", default=DEFAULT_SEGMENTER, help="segmenter: bundled name or model file path")
    parser.add_argument("--counter", default=DEFAULT_COUNTER, help="counter: bundled name or model file path")
    parser.add_argument("--csv", metavar="OUT", help="write the CSV here (default: standard output)")
    parser.add_argument("--labels", metavar="DIR", help="also write a label image per input into DIR")
    parser.add_argument("--overlays", metavar="DIR", help="also write an outline overlay PNG per input into DIR")
    parser.add_argument("--device", default="Auto", choices=("Auto", "CPU", "GPU"))
    parser.add_argument("--tile-size", default="auto", metavar="auto|PIXELS",
                        help="tile side for the networks: auto (the default) takes the tile and batch sizes measured "
                             "fastest for the device (one 2048-pixel tile at a time on a CPU); smaller tiles use "
                             "less memory")
    parser.add_argument("--threshold-method", default="model default", choices=THRESHOLD_CHOICES)
    parser.add_argument("--threshold", type=float, help="the threshold for --threshold-method manual")
    parser.add_argument("--diameter", type=float, help="typical cell diameter in pixels (default: estimated)")
    parser.add_argument("--cell-size", default="auto", metavar="auto|off|PIXELS",
                        help="bring the cells to the models' size before the networks: estimated (auto, the "
                             "default), not at all (off), or from this typical cell diameter in pixels")
    parser.add_argument("--exclude-border", action="store_true", help="discard objects touching the border")
    parser.add_argument("--fail-fast", action="store_true",
                        help="stop at the first image that cannot be read or counted (exit 2) instead of recording "
                             "it in the error column and going on")
    parser.set_defaults(run=run)


def run(args):
    from cellcount_core.counts.batch_count import count_files, write_rows
    from cellcount_core.images.image_io import list_images

    _check_settings(args)
    rows = count_files(
        list_images(args.inputs),
        segmenter=args.model,
        counter=args.counter,
        device=args.device,
        tile_size=_tile_size(args.tile_size),
        cell_size=args.cell_size,
        labels_dir=args.labels,
        overlays_dir=args.overlays,
        threshold_method=args.threshold_method,
        threshold_value=args.threshold,
        diameter=args.diameter,
        exclude_border=args.exclude_border,
        fail_fast=args.fail_fast,
    )
    rows = write_rows(rows, args.csv)
    failed = [row for row in rows if row["error"]]
    for row in failed:
        print(f"cellcount count: {row['image']} failed: {row['error']}", file=sys.stderr)
    if failed:
        print(f"cellcount count: {len(failed)} of {len(rows)} image(s) failed (see the error column); the "
              "others were counted.", file=sys.stderr)
    return 1 if failed else 0


def _check_settings(args):
    """Refuse impossible settings before any image is read (they would fail every image)."""
    from cellcount_core.running.inference import parse_cell_size

    try:
        parse_cell_size(args.cell_size)
    except ValueError as error:
        raise ValueError(f"--cell-size: {error}") from None
    _tile_size(args.tile_size)
    if args.threshold_method == "manual" and args.threshold is None:
        raise ValueError("--threshold-method manual needs --threshold VALUE (0 to 1).")
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise ValueError(f"--threshold {args.threshold} is not a probability; give a value from 0 to 1.")
    if args.diameter is not None and not args.diameter > 0:
        raise ValueError(f"--diameter {args.diameter} must be a positive number of pixels.")


def _tile_size(text):
    """``--tile-size``: "auto" or a whole number of pixels (at least 64), else a ValueError naming the option."""
    from cellcount_core.running.tiling import MIN_TILE_SIZE

    if text.strip().lower() == "auto":
        return "auto"
    if not text.strip().isdigit() or int(text) < MIN_TILE_SIZE:
        raise ValueError(f"--tile-size {text} is too small or not a number; use auto (the default) or a whole "
                         f"number of at least {MIN_TILE_SIZE} pixels.")
    return int(text)
