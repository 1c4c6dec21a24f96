"""Training of counting networks.

- ``density_counter`` (input ``"image"``): a fully convolutional network regresses a density map whose sum is the
  count, trained on random crops; it works on any image size. Targets spread each cell's unit mass over its
  pixels (instance labels, derived for BBBC005 by :mod:`training.instances`), or, where the objects do not
  match the known count, that count uniformly over the foreground.
- ``dcc_counter`` (input ``"mask"``): DeepCellCount's regressor on whole masks resized to its fixed input size.
  With ``--segmenter`` the masks are the segmenter's thresholded output, as in the paper; otherwise the true masks.
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np
import torch
from tqdm import tqdm

from cellcount_core.models.model_files import ModelCard, save_model
from cellcount_core.images.normalization import normalize_percentile

from .batches import TensorBatches
from .crops import Record, batches, fixed_crops
from .datasets import Sample, read_image, read_labels
from .device_crops import DeviceCrops
from .instances import read_instances
from .loop import seed_everything, train
from .losses import count_loss, density_loss
from .options import (COUNTER_DIAMETER_BAND, add_crop_arguments, add_data_arguments, add_inference_arguments,
                      add_loop_arguments, augmentation_record, build_model, crop_settings, inference_card_fields,
                      loop_config, photometric_settings, read_split, training_record)
from .segmenter import NORMALIZATION
from .validation import write_validation_metrics


def density_target(labels: np.ndarray, count: int | None = None) -> np.ndarray:
    """Density map summing to the number of cells.

    Each labelled object spreads a mass of 1 uniformly over its pixels. If ``count`` is given and differs from the
    number of objects (touching cells merged into one label), ``count`` is spread uniformly over the foreground.
    """
    from scipy import ndimage

    labels = np.asarray(labels)
    n = int(labels.max())
    foreground = labels > 0
    if count is not None and len(np.unique(labels[foreground])) != count:
        if count and not foreground.any():
            raise ValueError(f"The mask is empty but the image has {count} cells; the density target needs a mask.")
        return (foreground * (count / max(int(foreground.sum()), 1))).astype(np.float32)
    areas = ndimage.sum_labels(np.ones(labels.shape), labels, index=np.arange(n + 1))
    areas[0] = np.inf
    return (1.0 / areas)[labels].astype(np.float32)


def _true_count(sample: Sample, labels: np.ndarray) -> int:
    return sample.count if sample.count is not None else len(np.unique(labels[labels > 0]))


def load_density_records(samples: list[Sample], desc: str = "loading") -> list[Record]:
    """Normalized images with their ``density`` target (samples without a mask are skipped)."""
    records, cache = [], {}
    for sample in tqdm(samples, desc=desc, mininterval=5.0):
        if sample.target_path is None:
            continue
        key = (sample.target_path, sample.count)
        if key not in cache:
            labels = read_instances(sample)
            cache[key] = {"density": density_target(labels, _true_count(sample, labels))}
        image = normalize_percentile(read_image(sample.image_path), NORMALIZATION["low"], NORMALIZATION["high"])
        records.append(Record(sample.id, image.astype(np.float16), cache[key]))
    if not records:
        raise ValueError("None of the samples has a mask; density training needs masks or label images.")
    return records


def init_density_bias(model: torch.nn.Module, mean_density: float) -> None:
    """Set the last convolution's bias so that the initial softplus density equals ``mean_density``.

    Without it a fresh density counter predicts about 0.7 per pixel, tens of thousands of cells per crop, and
    the count term dominates the first epochs.
    """
    last = [module for module in model.modules() if isinstance(module, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        last.bias.fill_(float(np.log(np.expm1(max(mean_density, 1e-6)))))


def _resize(mask: np.ndarray, input_size) -> np.ndarray:
    """Binary mask -> float32 resized to ``input_size`` with area averaging, exactly as inference does."""
    height, width = input_size
    return cv2.resize((mask > 0).astype(np.float32), (width, height), interpolation=cv2.INTER_AREA)


def _thresholded(sample: Sample, segmenter) -> np.ndarray:
    """The segmenter's mask of a sample, thresholded at its card's default value."""
    from cellcount_core.running.inference import predict_probability
    from cellcount_core.objects.segmentation import model_default_threshold
    from cellcount_core.objects.thresholds import apply_threshold

    probability = predict_probability(read_image(sample.image_path), model=segmenter, device="Auto")
    return apply_threshold(probability, "manual", value=model_default_threshold(segmenter))[0]


def load_mask_records(samples: list[Sample], input_size, segmenter=None, desc: str = "loading") -> list[Record]:
    """Resized masks with their ``count``: the true masks, or a segmenter's thresholded output when given."""
    records = []
    for sample in tqdm(samples, desc=desc, mininterval=5.0):
        labels = read_labels(sample.target_path) if sample.target_path is not None else None
        if labels is None and (segmenter is None or sample.count is None):
            continue
        count = sample.count if labels is None else _true_count(sample, labels)
        mask = _thresholded(sample, segmenter) if segmenter else labels > 0
        records.append(Record(sample.id, _resize(mask, input_size), {"count": np.float32(count)}))
    return records


def mask_batches(records: list[Record], batch_size: int, seed: int) -> TensorBatches:
    """Whole resized masks with their counts; square masks get random flips/rotations."""
    tensors = _mask_tensors(records)
    square = tensors["image"].shape[-1] == tensors["image"].shape[-2]
    return TensorBatches(tensors, batch_size, seed, dihedral=("image",) if square else ())


def _mask_tensors(records: list[Record]) -> dict:
    return {"image": torch.from_numpy(np.stack([r.image for r in records]))[:, None],
            "count": torch.tensor([float(r.targets["count"]) for r in records])}


def density_validator(crops: dict, loss_fn, batch_size: int = 8):
    """``validate(model, device)``: density loss and count errors on fixed validation crops."""

    def validate(model, device) -> dict:
        loss, abs_error, rel_error = 0.0, 0.0, 0.0
        for part in batches(crops, batch_size, device):
            density = model(part["image"]).float()
            loss += float(loss_fn(density, part)) * len(density)
            predicted, true = density.sum(dim=(1, 2, 3)), part["density"].sum(dim=(1, 2, 3))
            abs_error += float((predicted - true).abs().sum())
            rel_error += float(((predicted - true).abs() / true.clamp(min=1.0)).sum())
        n = len(crops["image"])
        return {"val_loss": loss / n, "val_crop_mae": abs_error / n, "val_crop_mape": 100 * rel_error / n}

    return validate


def mask_validator(records: list[Record], batch_size: int = 16):
    """``validate(model, device)``: relative count loss and MAPE on the validation masks."""
    tensors = _mask_tensors(records)

    def validate(model, device) -> dict:
        predicted = torch.cat([model(part["image"]).float().reshape(-1).cpu()
                               for part in batches(tensors, batch_size, device)])
        true = tensors["count"]
        return {"val_loss": float(count_loss(predicted, true)),
                "val_mape": float(100 * ((predicted - true).abs() / true.clamp(min=1.0)).mean())}

    return validate


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``cellcount-train train-counter``."""
    add_data_arguments(parser)
    add_loop_arguments(parser, lr=1e-4, batch_size=4)
    parser.add_argument("--input", choices=("image", "mask"), default="image",
                        help="what the counter sees: the image (density_counter) or a mask (dcc_counter)")
    parser.add_argument("--segmenter", help="model file whose thresholded output gives the training masks "
                                            "(--input mask; default: the true masks)")
    add_crop_arguments(parser, crop_size=256, crops_per_image=4, elastic_p=0.3)  # density counters only
    add_inference_arguments(parser, COUNTER_DIAMETER_BAND)  # density counters only
    parser.add_argument("--density-scale", type=float, default=100.0, help="scale of densities in the pixel MSE")
    parser.add_argument("--count-weight", type=float, default=1.0, help="weight of the relative count error")
    parser.add_argument("--description", default="", help="model description for the card")


def run(args: argparse.Namespace):
    """Train a counter as the options say; write ``OUT/NAME.{safetensors,json}`` and return the weights path."""
    seed_everything(args.seed)
    photometric = photometric_settings(args)  # wrong options fail before the data is read
    image_input = args.input == "image"
    inference = inference_card_fields(args, NORMALIZATION) if image_input else {"normalization": NORMALIZATION}
    train_samples, validation_samples = read_split(args)
    model, params = build_model(args)
    input_size = getattr(model, "input_size", None)
    if (args.input == "mask") != (input_size is not None):
        raise ValueError(f"--input {args.input} does not fit architecture {args.architecture!r}: use a fixed-size "
                         "counter (dcc_counter) with --input mask, a density counter with --input image.")
    if args.input == "mask":
        records = load_mask_records(train_samples, input_size, args.segmenter, desc="training masks")
        validation = load_mask_records(validation_samples, input_size, args.segmenter, desc="validation masks")
        dataset, validate = mask_batches(records, args.batch_size, args.seed), mask_validator(validation)

        def loss_fn(output, batch):
            return count_loss(output, batch["count"])
    else:
        records = load_density_records(train_samples, desc="training images")
        validation = load_density_records(validation_samples, desc="validation images")
        if args.init_from is None:
            init_density_bias(model, float(np.mean([r.targets["density"].mean() for r in records])))
        settings = crop_settings(args, model.size_divisor)
        dataset = DeviceCrops(records, {"density": "mass"}, {"density": 0.0}, args.batch_size, settings,
                              photometric, crops_per_image=args.crops_per_image, seed=args.seed,
                              target_dtype=torch.float32)

        def loss_fn(output, batch):
            return density_loss(output, batch["density"], args.density_scale, args.count_weight)

        validate = density_validator(fixed_crops(validation, settings.crop_size), loss_fn)
    result = train(model, dataset, loss_fn, loop_config(args), validate)
    if not result.is_main:
        return args.out / args.name
    model.load_state_dict(result.best_state)
    card = ModelCard(
        name=args.name, kind="counter", architecture=args.architecture, params=params, input=args.input,
        input_size=list(input_size) if input_size else None, **inference,
        training={**training_record(args, train_samples, validation_samples), "best_epoch": result.best_epoch,
                  "epochs_run": len(result.history), "stop_reason": result.stop_reason,
                  **({"augmentation": augmentation_record(dataset)} if image_input else {}),
                  "targets": (f"masks thresholded from {args.segmenter}" if args.segmenter else "true masks")
                  if args.input == "mask" else "density: unit mass per cell spread over its pixels",
                  "loss": "relative L1 count error" if args.input == "mask" else
                          f"density MSE (scale {args.density_scale}) + {args.count_weight} x relative count error"},
        metrics={key: round(value, 5) for key, value in result.best_metrics.items() if key.startswith("val_")},
        description=args.description or f"{args.architecture} counter ({args.input} input) trained on "
                                        f"{', '.join(args.data)}.",
    )
    weights_path, _ = save_model(model, card, args.out / args.name)
    if not args.no_score:
        write_validation_metrics(weights_path, validation_samples, segmenter=args.segmenter)
    return weights_path
