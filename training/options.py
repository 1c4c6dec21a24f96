"""Command-line options shared by the training commands, and what they record in a model card."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from .datasets import SPLIT_RULE, VALIDATION_FRACTION, read_source, split_samples
from .loop import TrainConfig
from .negatives import KINDS as NEGATIVE_KINDS


def parse_params(items) -> dict:
    """Turn ``["base_filters=8", "depth=3"]`` into ``{"base_filters": 8, "depth": 3}`` (values parsed as JSON)."""
    params = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"Network parameter {item!r} must look like NAME=VALUE, e.g. base_filters=8.")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--data`` (repeatable ``KIND=PATH``) and ``--validation-fraction``."""
    parser.add_argument("--data", action="append", required=True, metavar="KIND=PATH",
                        help="training data: bbbc005=PATH, dsb2018=PATH or pairs=IMAGES:MASKS (repeatable)")
    parser.add_argument("--validation-fraction", type=float, default=VALIDATION_FRACTION,
                        help="fraction of non-BBBC005 ids held out by stable hash (default %(default)s)")


def add_loop_arguments(parser: argparse.ArgumentParser, *, lr: float, batch_size: int) -> None:
    """Add the optimisation, output and device options of :class:`training.loop.TrainConfig`."""
    parser.add_argument("--out", type=Path, required=True, help="run folder (checkpoint, metrics, model)")
    parser.add_argument("--name", required=True, help="model name; writes OUT/NAME.safetensors and OUT/NAME.json")
    parser.add_argument("--architecture", required=True, help="network name for create_model")
    parser.add_argument("--param", action="append", metavar="NAME=VALUE", help="network parameter (repeatable)")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--lr", type=float, default=lr)
    parser.add_argument("--lr-factor", type=float, default=0.7, help="learning-rate factor on a plateau")
    parser.add_argument("--lr-patience", type=int, default=4, help="plateau length in epochs")
    parser.add_argument("--early-stop", type=int, default=20, help="epochs without improvement before stopping")
    parser.add_argument("--steps-per-epoch", type=int, default=None, help="cap on optimizer steps per epoch")
    parser.add_argument("--time-limit", type=float, default=None, help="stop after this many minutes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ema", type=float, metavar="DECAY",
                        help="validate and keep an exponential moving average of the weights with this decay per "
                             "step, e.g. 0.995 (default: the weights themselves)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--no-amp", action="store_true", help="disable mixed precision on CUDA")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    parser.add_argument("--init-from", type=Path, metavar="MODEL",
                        help="start from this model file's weights (same architecture and parameters)")
    parser.add_argument("--transfer-from", type=Path, metavar="MODEL",
                        help="start the U-Net body from this model file's (e.g. the segmenter's, for a density "
                             "counter of the same width and depth); the output head starts new")
    parser.add_argument("--no-score", action="store_true",
                        help="skip scoring the saved model on the whole validation images")
    parser.add_argument("--limit", type=int, default=None,
                        help="use at most this many training and validation images per source (quick trials)")


def add_crop_arguments(parser: argparse.ArgumentParser, *, crop_size: int, crops_per_image: int,
                       elastic_p: float) -> None:
    """Add the options of the augmented crops (:class:`training.device_crops.CropSettings`)."""
    parser.add_argument("--crop-size", type=int, default=crop_size, help="crop side in pixels (default %(default)s)")
    parser.add_argument("--crops-per-image", type=int, default=crops_per_image,
                        help="crops per image and epoch (default %(default)s)")
    parser.add_argument("--scale-p", type=float, default=0.5, help="probability of a random zoom (default %(default)s)")
    parser.add_argument("--scale-range", type=float, nargs=2, default=(0.25, 4.0), metavar=("MIN", "MAX"),
                        help="zoom range, log-uniform; 2 = cells twice as large (default 0.25 4)")
    parser.add_argument("--elastic-p", type=float, default=elastic_p,
                        help="probability of an elastic deformation (default %(default)s)")
    parser.add_argument("--negative-p", type=float, default=0.1,
                        help="share of empty crops: real background, noise, constant, out-of-focus (default %(default)s)")
    parser.add_argument("--negative-kinds", nargs="+", default=list(NEGATIVE_KINDS), choices=NEGATIVE_KINDS,
                        metavar="KIND", help="kinds of empty crops drawn, equally often (default: all of "
                                             f"{' '.join(NEGATIVE_KINDS)})")
    parser.add_argument("--photometric", action="append", default=[], metavar="NAME=VALUE",
                        help="an intensity change's setting, e.g. texture_p=0 (repeatable; names and defaults: "
                             "training.photometric.Photometric)")


#: The inference settings of the bundled cards (docs/RESULTS.md, "Images unlike the training data"): images whose
#: cells are estimated larger than this band of diameters (px) also run reduced into it, and the percentile range is
#: kept at least this many noise standard deviations wide, so that an empty field is not stretched into cells.
#: The bundled segmenter's band, and the bundled counter's (docs/RESULTS.md, "The counter's own diameter band").
DIAMETER_BAND = (8.0, 24.0)
COUNTER_DIAMETER_BAND = (8.0, 48.0)
MIN_RANGE_OVER_NOISE = 40.0


def add_inference_arguments(parser: argparse.ArgumentParser, diameter_band=DIAMETER_BAND) -> None:
    """Add the card's inference settings for a model that sees images (``--diameter-band``, noise floor)."""
    low, high = diameter_band
    parser.add_argument("--diameter-band", type=float, nargs=2, default=diameter_band, metavar=("MIN", "MAX"),
                        help="estimated cell diameters in px the model handles; inference brings larger cells into "
                             f"this band (card's diameter_band; default {low:g} {high:g}, as the bundled card)")
    parser.add_argument("--min-range-over-noise", type=float, default=MIN_RANGE_OVER_NOISE,
                        help="noise floor of the percentile normalization, in noise standard deviations (card's "
                             "normalization.min_range_over_noise; 0 for none; default %(default)s)")


def inference_card_fields(args: argparse.Namespace, normalization: dict) -> dict:
    """The card's ``normalization`` (`normalization` and the noise floor) and ``diameter_band``, as the options say."""
    low, high = args.diameter_band
    if not 0 < low < high:
        raise SystemExit(f"--diameter-band {low:g} {high:g}: give two diameters in px, the smaller first, e.g. 8 24.")
    if args.min_range_over_noise < 0:
        raise SystemExit(f"--min-range-over-noise {args.min_range_over_noise:g}: give 0 (no floor) or more.")
    floor = {"min_range_over_noise": args.min_range_over_noise} if args.min_range_over_noise else {}
    return {"normalization": {**normalization, **floor}, "diameter_band": [low, high]}


def crop_settings(args: argparse.Namespace, size_divisor: int):
    """The :class:`training.device_crops.CropSettings` the options ask for (crop side rounded down to the network's
    size divisor; empty crops normalized with the card's noise floor)."""
    from .device_crops import CropSettings

    return CropSettings(crop_size=args.crop_size - args.crop_size % size_divisor, scale_p=args.scale_p,
                        scale_range=tuple(args.scale_range), elastic_p=args.elastic_p, negative_p=args.negative_p,
                        negative_kinds=tuple(args.negative_kinds), min_range_over_noise=args.min_range_over_noise)


def photometric_settings(args: argparse.Namespace):
    """The :class:`training.photometric.Photometric` the ``--photometric NAME=VALUE`` options ask for."""
    from dataclasses import fields

    from .photometric import Photometric

    kinds = {field.name: type(getattr(Photometric(), field.name)) for field in fields(Photometric)}
    values = {}
    for option in args.photometric:
        name, _, value = option.partition("=")
        if name not in kinds or not value:
            raise SystemExit(f"--photometric {option!r}: give NAME=VALUE with NAME one of {', '.join(kinds)}.")
        try:
            values[name] = kinds[name](value)
        except ValueError:
            raise SystemExit(f"--photometric {option!r}: {value!r} is not a {kinds[name].__name__}.") from None
    return Photometric(**values)


def augmentation_record(crops) -> dict:
    """The card's ``training.augmentation``: the crops' settings and intensity changes."""
    from dataclasses import asdict

    return {"crops": asdict(crops.settings), "photometric": asdict(crops.photometric),
            "crops_per_image": crops.crops_per_image}


def build_model(args: argparse.Namespace):
    """The network named by ``--architecture``/``--param``, with ``--init-from``'s weights or ``--transfer-from``'s
    U-Net body when given.

    Returns ``(model, params)``.
    """
    from cellcount_core.models.model_files import load_model
    from cellcount_core.models.networks import create_model

    from .transfer import transfer_unet

    if args.init_from is not None and args.transfer_from is not None:
        raise ValueError("Give --init-from or --transfer-from, not both.")
    params = parse_params(args.param)
    model = create_model(args.architecture, **params)
    if args.init_from is not None:
        start, card = load_model(args.init_from)
        if card.architecture != args.architecture or card.params != params:
            raise ValueError(f"--init-from {args.init_from} is a {card.architecture} with {card.params}, but this run "
                             f"trains a {args.architecture} with {params}; pass the same --architecture and --param.")
        model.load_state_dict(start.state_dict())
    if args.transfer_from is not None:
        source, _ = load_model(args.transfer_from)
        print(f"--transfer-from {args.transfer_from}: {transfer_unet(source, model).summary()}", flush=True)
    return model, params


def loop_config(args: argparse.Namespace, monitor: str = "val_loss") -> TrainConfig:
    """Build the :class:`TrainConfig` from parsed options."""
    return TrainConfig(out_dir=args.out, epochs=args.epochs, lr=args.lr,
                       lr_factor=args.lr_factor, lr_patience=args.lr_patience, early_stop=args.early_stop,
                       seed=args.seed, steps_per_epoch=args.steps_per_epoch,
                       time_limit=args.time_limit, device=args.device, amp=not args.no_amp, resume=args.resume,
                       monitor=monitor, ema=args.ema)


def _limit(samples, limit):
    if limit is None:
        return samples
    kept, per_source = [], {}
    for sample in samples:
        per_source[sample.source] = per_source.get(sample.source, 0) + 1
        if per_source[sample.source] <= limit:
            kept.append(sample)
    return kept


def read_split(args: argparse.Namespace):
    """Read every ``--data`` source and split it; return ``(train, validation)`` sample lists."""
    samples = [sample for spec in args.data for sample in read_source(spec)]
    train, validation = split_samples(samples, args.validation_fraction)
    if not train or not validation:
        raise ValueError(f"The split of {', '.join(args.data)} gave {len(train)} training and {len(validation)} "
                         "validation images; both must be non-empty (add images or change --validation-fraction).")
    return _limit(train, args.limit), _limit(validation, args.limit)


def training_record(args: argparse.Namespace, train, validation) -> dict:
    """The card's ``training`` field: data, exact command, seed and split."""
    sources = sorted({sample.source for sample in train})
    return {
        "data": [str(spec) for spec in args.data],
        "sources": sources,
        "command": getattr(args, "command_line", None) or shlex.join(["cellcount-train", *sys.argv[1:]]),
        "seed": args.seed,
        "split": {"rule": SPLIT_RULE.replace(f"{VALIDATION_FRACTION:.0%}", f"{args.validation_fraction:.0%}"),
                  "train_images": len(train), "validation_images": len(validation)},
    }
