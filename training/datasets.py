"""Readers for the training data and the deterministic train/validation split.

Three layouts are read into one list of :class:`Sample` records:

- BBBC005 (``images/*.TIF``, ``masks/*.png``, ``labels.csv``): the count and blur level come from the file
  name, the in-focus (F1) mask is shared by every blur level of a well column, site and stain.
- A labelled folder in the DSB2018 layout (``images/<id>.png``, ``labels/<id>.tif`` instance labels,
  ``counts.csv``).
- Generic image/mask pairs: two folders whose files share a stem; masks may be binary or instance labels.

Validation is BBBC005 sites 7-8 and, elsewhere, a fraction of the ids chosen by a stable hash of the id, so the
split never changes between runs or machines and training never sees a validation image.
"""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cellcount_core.images.image_io import IMAGE_SUFFIXES
from cellcount_core.images.image_io import read_image as read_raw

BBBC005_PATTERN = re.compile(r"_(?P<well>[A-P]\d\d)_C(?P<count>\d+)_F(?P<blur>\d+)_s(?P<site>\d+)_w(?P<stain>\d)")
BBBC005_VALIDATION_SITES = (7, 8)
VALIDATION_FRACTION = 0.15
SPLIT_RULE = (
    f"validation = BBBC005 sites {BBBC005_VALIDATION_SITES} and {VALIDATION_FRACTION:.0%} of other ids chosen by "
    "sha256(id) (first 8 bytes / 2**64 < fraction); training = the rest"
)


@dataclass(frozen=True)
class Sample:
    """One training image and its ground truth.

    Attributes
    ----------
    id : str
        Unique name (file stem).
    source : str
        ``"bbbc005"``, ``"dsb2018"`` or ``"pairs"``.
    image_path : Path
        The image file.
    target_path : Path or None
        Binary mask or instance-label image; None when only the count is known.
    count : int or None
        True number of cells; None when it must be taken from instance labels.
    meta : dict
        Source-specific fields (BBBC005: well, blur, site, stain).
    """

    id: str
    source: str
    image_path: Path
    target_path: Path | None
    count: int | None
    meta: dict = field(default_factory=dict, compare=False, hash=False)


def _check_dir(path: Path, what: str) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{what} folder {path} does not exist; pass the folder that holds the data.")
    return path


def parse_bbbc005_name(name: str) -> dict:
    """Return well, count, blur, site and stain encoded in a BBBC005 file name.

    Raises
    ------
    ValueError
        If ``name`` does not follow ``..._<well>_C<count>_F<blur>_s<site>_w<stain>...``.
    """
    match = BBBC005_PATTERN.search(name)
    if match is None:
        raise ValueError(f"{name!r} is not a BBBC005 file name (expected ..._A01_C18_F1_s01_w1.TIF).")
    fields = match.groupdict()
    return {"well": fields["well"], **{key: int(fields[key]) for key in ("count", "blur", "site", "stain")}}


def read_bbbc005(root) -> list[Sample]:
    """Read BBBC005: every image with its count from the name and its shared F1 mask.

    The mask comes from ``labels.csv`` (column ``mask_filename``) when present, else from the F1 name.
    """
    root = _check_dir(root, "BBBC005")
    images = _check_dir(root / "images", "BBBC005 images")
    mask_names = {}
    table = root / "labels.csv"
    if table.is_file():
        with open(table, newline="") as handle:
            mask_names = {row["filename"]: row["mask_filename"] for row in csv.DictReader(handle)}
    samples = []
    for path in sorted(images.iterdir()):
        if path.suffix.lower() not in (".tif", ".tiff"):
            continue
        meta = parse_bbbc005_name(path.name)
        mask_name = mask_names.get(path.name) or re.sub(r"_F\d+_", "_F1_", path.stem) + ".png"
        mask_path = root / "masks" / mask_name
        samples.append(Sample(path.stem, "bbbc005", path, mask_path if mask_path.is_file() else None,
                              meta["count"], meta))
    if not samples:
        raise FileNotFoundError(f"No BBBC005 .TIF images in {images}.")
    return samples


def read_labelled_folder(root, source: str = "dsb2018") -> list[Sample]:
    """Read a DSB2018-style folder: ``images/<id>.*``, ``labels/<id>.tif`` and optional ``counts.csv``."""
    root = _check_dir(root, "Labelled")
    images = _check_dir(root / "images", "Labelled images")
    counts = {}
    table = root / "counts.csv"
    if table.is_file():
        with open(table, newline="") as handle:
            counts = {row["id"]: int(row["count"]) for row in csv.DictReader(handle)}
    labels = {path.stem: path for path in (root / "labels").glob("*") if path.suffix.lower() in IMAGE_SUFFIXES}
    samples = [
        Sample(path.stem, source, path, labels.get(path.stem), counts.get(path.stem), {})
        for path in sorted(images.iterdir())
        if path.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not samples:
        raise FileNotFoundError(f"No images in {images}.")
    return samples


def read_pairs(image_dir, mask_dir) -> list[Sample]:
    """Read image/mask pairs from two folders, matched by file stem (a mask may end in ``_mask``)."""
    image_dir, mask_dir = _check_dir(image_dir, "Image"), _check_dir(mask_dir, "Mask")
    masks = {}
    for path in mask_dir.iterdir():
        if path.suffix.lower() in IMAGE_SUFFIXES:
            masks[path.stem.removesuffix("_mask")] = path
    samples = [
        Sample(path.stem, "pairs", path, masks[path.stem], None, {})
        for path in sorted(image_dir.iterdir())
        if path.suffix.lower() in IMAGE_SUFFIXES and path.stem in masks
    ]
    if not samples:
        raise FileNotFoundError(f"No image in {image_dir} has a mask with the same name in {mask_dir}.")
    return samples


def read_source(spec: str) -> list[Sample]:
    """Read samples from ``KIND=PATH`` (``bbbc005=...``, ``dsb2018=...``, ``pairs=IMAGES:MASKS``)."""
    kind, sep, path = spec.partition("=")
    if not sep:
        raise ValueError(f"Data source {spec!r} must look like bbbc005=PATH, dsb2018=PATH or pairs=IMAGES:MASKS.")
    if kind == "bbbc005":
        return read_bbbc005(path)
    if kind == "dsb2018":
        return read_labelled_folder(path)
    if kind == "pairs":
        image_dir, _, mask_dir = path.partition(":")
        return read_pairs(image_dir, mask_dir)
    raise ValueError(f"Unknown data source kind {kind!r} in {spec!r}; use bbbc005, dsb2018 or pairs.")


def stable_fraction(key: str) -> float:
    """Map ``key`` to [0, 1) by its sha256 digest: the same on every machine and Python version."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") / 2.0**64


def split_of(sample: Sample, validation_fraction: float = VALIDATION_FRACTION) -> str:
    """Return ``"validation"`` or ``"train"`` for one sample (see :data:`SPLIT_RULE`)."""
    if sample.source == "bbbc005":
        return "validation" if sample.meta["site"] in BBBC005_VALIDATION_SITES else "train"
    return "validation" if stable_fraction(sample.id) < validation_fraction else "train"


def split_samples(samples, validation_fraction: float = VALIDATION_FRACTION):
    """Split samples into ``(train, validation)`` lists, deterministically."""
    train, validation = [], []
    for sample in samples:
        (validation if split_of(sample, validation_fraction) == "validation" else train).append(sample)
    return train, validation


def read_image(path) -> np.ndarray:
    """Read an image file as a 2D float32 array (colour reduced to gray)."""
    from cellcount_core.images.normalization import to_grayscale

    return np.asarray(to_grayscale(read_raw(path)), dtype=np.float32)


def read_labels(path) -> np.ndarray:
    """Read a mask or label image as int32 instance labels (a binary mask is split into connected parts)."""
    from skimage.measure import label

    array = read_raw(path)
    if array.ndim != 2:
        raise ValueError(f"Mask {path} has shape {array.shape}; a 2D binary mask or label image is needed.")
    values = np.unique(array)
    if len(values) <= 2:
        return label(array > values.min()).astype(np.int32) if len(values) == 2 else np.zeros(array.shape, np.int32)
    return array.astype(np.int32)
