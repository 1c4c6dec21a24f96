"""Which augmentation a trained counter stumbles on: its count error on training crops, one augmentation at a time.

    python -m training.augmentation_check --model cellcount_core/models/weights/nuclei-counter.json \
        --data bbbc005=../shared/data/bbbc005 --data dsb2018=../shared/data/dsb2018_fluo [--limit 60]

A fine-tune with an augmentation the network handles badly starts far from its optimum and gives up accuracy on
clean images first (docs/RESULTS.md, "What the counter's fine-tunes were up against"). The counter runs in eval
mode on the same training crops (``--limit`` images per data set, 4 crops each) with every augmentation off,
with each one alone, and with segmenter v4's recipe; the table gives the mean absolute and signed count error
relative to ``truth + 1``, the count term of the training loss.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import torch

from .counter import load_density_records
from .count_calibration import read_samples
from .device_crops import CropSettings, DeviceCrops
from .photometric import Photometric

NO_INTENSITY = Photometric(texture_p=0, gamma_p=0, gradient_p=0, debris_p=0, blur_p=0, brightness=0, contrast=0,
                           noise_p=0)
PLAIN = CropSettings(crop_size=256, scale_p=0, elastic_p=0, negative_p=0)


def augmentations(min_range_over_noise: float) -> dict:
    """Name -> (crop settings, intensity changes): none, each augmentation alone, and segmenter v4's recipe."""
    return {
        "none": (PLAIN, NO_INTENSITY),
        "elastic 0.3": (replace(PLAIN, elastic_p=0.3), NO_INTENSITY),
        "zoom 0.7-1.4": (replace(PLAIN, scale_p=0.5, scale_range=(0.7, 1.4)), NO_INTENSITY),
        "debris 0.1": (PLAIN, replace(NO_INTENSITY, debris_p=0.1)),
        "gamma": (PLAIN, replace(NO_INTENSITY, gamma_p=0.3)),
        "gradient": (PLAIN, replace(NO_INTENSITY, gradient_p=0.3)),
        "brightness and contrast": (PLAIN, replace(NO_INTENSITY, brightness=0.1, contrast=0.2)),
        "noise": (PLAIN, replace(NO_INTENSITY, noise_p=0.5)),
        "empty crops 0.1, no noise floor": (replace(PLAIN, negative_p=0.1), NO_INTENSITY),
        "empty crops 0.1": (replace(PLAIN, negative_p=0.1, min_range_over_noise=min_range_over_noise), NO_INTENSITY),
        "empty crops 0.1, no out-of-focus": (replace(PLAIN, negative_p=0.1,
                                                     negative_kinds=("background", "noise", "constant"),
                                                     min_range_over_noise=min_range_over_noise), NO_INTENSITY),
        "segmenter v4's recipe": (CropSettings(crop_size=256, scale_p=0.5, scale_range=(0.7, 1.4), elastic_p=0.3,
                                               negative_p=0.1, min_range_over_noise=min_range_over_noise),
                                  Photometric(texture_p=0, blur_p=0, debris_p=0.1)),
    }


def count_errors(model, records, settings: CropSettings, photometric: Photometric, seed: int = 0) -> dict:
    """Mean ``|count - truth| / (truth + 1)`` and ``(count - truth) / (truth + 1)`` (%) over one epoch of crops."""
    crops = DeviceCrops(records, {"density": "mass"}, {"density": 0.0}, 8, settings, photometric,
                        crops_per_image=4, seed=seed, target_dtype=torch.float32)
    absolute, signed, n = 0.0, 0.0, 0
    with torch.inference_mode():
        for batch in crops.epoch(0):
            counted = model(batch["image"]).float().sum(dim=(1, 2, 3))
            truth = batch["density"].sum(dim=(1, 2, 3))
            relative = (counted - truth) / (truth + 1.0)
            absolute += float(relative.abs().sum())
            signed += float(relative.sum())
            n += len(counted)
    return {"crops": n, "absolute %": round(100 * absolute / n, 2), "signed %": round(100 * signed / n, 2)}


def main(argv=None) -> str:
    """Print (and return) the table of count errors by augmentation."""
    from cellcount_core.models.model_files import load_model

    parser = argparse.ArgumentParser(prog="python -m training.augmentation_check", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="density counter model file")
    parser.add_argument("--data", action="append", required=True, metavar="KIND=PATH",
                        help="bbbc005=PATH or dsb2018=PATH (repeatable)")
    parser.add_argument("--limit", type=int, default=60, help="training images per data set, evenly spaced")
    args = parser.parse_args(argv)
    model, card = load_model(args.model)
    if card.kind != "counter" or card.input != "image":
        raise SystemExit(f"{args.model} is not a counter of images; the check needs a density counter.")
    model.eval().float()
    records = load_density_records(read_samples(args.data, "train", args.limit))
    floor = card.normalization.get("min_range_over_noise", 0.0)
    lines = ["| crops | count error | signed |", "|---|---|---|"]
    for name, (settings, photometric) in augmentations(floor).items():
        errors = count_errors(model, records, settings, photometric)
        lines.append(f"| {name} ({errors['crops']}) | {errors['absolute %']} % | {errors['signed %']:+} % |")
        print(lines[-1], flush=True)
    return "\n".join(lines)


if __name__ == "__main__":
    main()
