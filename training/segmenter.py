"""Training of segmentation networks: crops with c-ResUnet weight maps, weighted BCE, a model file at the end."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cellcount_core.models.model_files import ModelCard, save_model
from cellcount_core.images.normalization import normalize_percentile

from .crops import Record, batches, fixed_crops, read_oversampling
from .datasets import Sample, read_image
from .device_crops import DeviceCrops
from .instances import contact_band, read_instances, separate_touching
from .loop import seed_everything, train
from .losses import segmentation_loss
from .options import (add_crop_arguments, add_data_arguments, add_inference_arguments, add_loop_arguments,
                      augmentation_record, build_model, crop_settings, inference_card_fields, loop_config,
                      photometric_settings, read_split, training_record)
from .validation import write_validation_metrics
from .weight_maps import BACKGROUND_WEIGHT, weight_map

NORMALIZATION = {"method": "percentile", "low": 1.0, "high": 99.8}
#: How the crops resample each target of a record (see :mod:`training.device_crops`), and its value in empty crops.
TARGET_RESAMPLING = {"mask": "binary", "weight": "smooth", "gaps": "gaps"}
EMPTY_TARGETS = {"mask": 0.0, "weight": BACKGROUND_WEIGHT}  # gaps are cut out of the mask, never returned


def load_records(samples: list[Sample], w0: float = 5.0, sigma: float = 3.0, contact_gaps: bool = True,
                 desc: str = "loading") -> list[Record]:
    """Read and normalize images with their 0/1 ``mask`` and ``weight`` map (a shared mask is computed once).

    With ``contact_gaps`` the pixels where two cells touch are background in the mask (see
    :func:`training.instances.separate_touching`), and a 0/1 ``gaps`` target holds them with the background notches
    at their ends (:func:`training.instances.contact_band`), so that zoomed-out crops keep them apart
    (:mod:`training.device_crops`).
    """
    records, cache = [], {}
    for sample in tqdm(samples, desc=desc, mininterval=5.0):
        if sample.target_path is None:
            continue
        if sample.target_path not in cache:
            labels = read_instances(sample)
            gaps = {}
            if contact_gaps:
                gaps["gaps"] = contact_band(labels).astype(np.uint8)
                labels = separate_touching(labels)
            cache[sample.target_path] = {"mask": (labels > 0).astype(np.uint8),
                                         "weight": weight_map(labels, w0=w0, sigma=sigma).astype(np.float16), **gaps}
        targets = cache[sample.target_path]
        image = normalize_percentile(read_image(sample.image_path), NORMALIZATION["low"], NORMALIZATION["high"])
        if image.shape != targets["mask"].shape:
            raise ValueError(f"Image {sample.image_path} is {image.shape} but its mask {sample.target_path} is "
                             f"{targets['mask'].shape}; fix the data so both have the same size.")
        records.append(Record(sample.id, image.astype(np.float16), targets))
    if not records:
        raise ValueError("None of the samples has a mask; segmentation training needs masks or label images.")
    return records


def crop_validator(crops: dict, loss_fn, batch_size: int = 8):
    """Return ``validate(model, device)`` giving the loss and Dice (threshold 0.5) on fixed validation crops."""

    def validate(model, device) -> dict:
        loss, inter, total = 0.0, 0.0, 0.0
        for part in batches(crops, batch_size, device):
            logits = model(part["image"]).float()
            loss += float(loss_fn(logits, part)) * len(logits)
            predicted, valid = (logits > 0).float(), (part["weight"] > 0).float()
            inter += float((predicted * part["mask"] * valid).sum())
            total += float((predicted * valid).sum() + (part["mask"] * valid).sum())
        return {"val_loss": loss / len(crops["image"]), "val_dice": 2 * inter / max(total, 1.0)}

    return validate


def diameter_range(records, low: float = 2.0, high: float = 98.0) -> list[float]:
    """Percentiles ``low``/``high`` of the equivalent diameters of the connected objects in the masks."""
    from skimage.measure import label, regionprops

    masks = {id(record.targets["mask"]): record.targets["mask"] for record in records}
    diameters = [region.equivalent_diameter_area for mask in masks.values() for region in regionprops(label(mask))]
    return [round(float(value), 1) for value in np.percentile(diameters, [low, high])]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``cellcount-train train-segmenter``."""
    add_data_arguments(parser)
    add_loop_arguments(parser, lr=0.006, batch_size=4)
    add_crop_arguments(parser, crop_size=512, crops_per_image=12, elastic_p=0.3)  # c-ResUnet: 512, 12 per image
    add_inference_arguments(parser)
    parser.add_argument("--w0", type=float, default=5.0, help="weight-map border weight")
    parser.add_argument("--sigma", type=float, default=3.0, help="weight-map decay length in pixels")
    parser.add_argument("--no-contact-gaps", dest="contact_gaps", action="store_false",
                        help="keep touching cells touching in the training masks (default: a gap between them)")
    parser.add_argument("--dice-weight", type=float, default=0.0, help="add this times the soft Dice loss")
    parser.add_argument("--oversample", type=Path, help="file of image ids to repeat (id or id,times per line)")
    parser.add_argument("--oversample-times", type=int, default=4, help="default repeats for --oversample ids")
    parser.add_argument("--description", default="", help="model description for the card")


def run(args: argparse.Namespace) -> Path:
    """Train a segmenter as the options say; write ``OUT/NAME.{safetensors,json}`` and return the model path."""
    seed_everything(args.seed)
    photometric = photometric_settings(args)  # wrong options fail before the data is read
    inference = inference_card_fields(args, NORMALIZATION)
    train_samples, validation_samples = read_split(args)
    records = load_records(train_samples, args.w0, args.sigma, args.contact_gaps, desc="training images")
    validation = load_records(validation_samples, args.w0, args.sigma, args.contact_gaps, desc="validation images")
    model, params = build_model(args)
    repeats = read_oversampling(args.oversample, args.oversample_times) if args.oversample else {}
    settings = crop_settings(args, model.size_divisor)
    crops = DeviceCrops(records, {name: TARGET_RESAMPLING[name] for name in records[0].targets}, EMPTY_TARGETS,
                        args.batch_size, settings, photometric, crops_per_image=args.crops_per_image,
                        repeats=repeats, seed=args.seed)

    def loss_fn(logits, batch):
        return segmentation_loss(logits, batch, args.dice_weight)

    validate = crop_validator(fixed_crops(validation, settings.crop_size), loss_fn)
    result = train(model, crops, loss_fn, loop_config(args), validate)
    if not result.is_main:
        return args.out / args.name
    model.load_state_dict(result.best_state)
    card = ModelCard(
        name=args.name, kind="segmenter", architecture=args.architecture, params=params, input="image",
        diameter_range=diameter_range(records), **inference,
        default_threshold={"value": 0.5, "method": "simple"},
        training={**training_record(args, train_samples, validation_samples), "best_epoch": result.best_epoch,
                  "epochs_run": len(result.history), "stop_reason": result.stop_reason,
                  "augmentation": augmentation_record(crops),
                  "loss": f"weighted BCE (w0={args.w0}, sigma={args.sigma}, class weights 1/1.5)"
                          + (", gaps between touching cells" if args.contact_gaps else "")
                          + (f" + {args.dice_weight} soft Dice" if args.dice_weight else "")},
        metrics={key: round(value, 5) for key, value in result.best_metrics.items() if key.startswith("val_")},
        description=args.description or f"{args.architecture} segmenter trained on {', '.join(args.data)}.",
    )
    weights_path, _ = save_model(model, card, args.out / args.name)
    if not args.no_score:
        write_validation_metrics(weights_path, validation_samples)
    return weights_path
