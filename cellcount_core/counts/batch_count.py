"""Counting a list of image files without CellProfiler: one row per image, for scripts and quick checks."""

import csv
import sys
from pathlib import Path

from cellcount_core.models.bundled import DEFAULT_COUNTER, DEFAULT_SEGMENTER
from cellcount_core.images.image_io import read_image

CSV_COLUMNS = ("image", "count", "regression_count", "threshold", "diameter", "scale_factor", "height", "width",
               "error")


def count_files(paths, *, segmenter=DEFAULT_SEGMENTER, counter=DEFAULT_COUNTER, device="Auto", tile_size="auto",
                cell_size="auto", labels_dir=None, overlays_dir=None, progress=True, fail_fast=False,
                **postprocess):
    """Segment and count each image file; yield a row (dict with CSV_COLUMNS) per image.

    ``tile_size`` is a tile side in pixels (4 tiles per batch) or "auto", the tile and batch sizes measured
    fastest for the device (:func:`cellcount_core.running.tiling.automatic_tiling`).

    ``count`` is the number of objects after DeepThreshold's default post-processing, ``regression_count``
    the counting network's estimate. Label images (16-bit TIFF) and outline overlays (PNG) are written to
    ``labels_dir`` / ``overlays_dir`` when given. ``postprocess`` is passed to ``segment_image``.

    An image that cannot be read or counted gives a row with only ``image`` and ``error`` (the reason) and the
    next image is counted; with ``fail_fast`` its exception is raised instead. Both models are loaded before
    the first image, so a missing or corrupt model file raises at once whatever ``fail_fast`` says.
    """
    from tqdm import tqdm

    from cellcount_core.running.inference import get_model

    get_model(segmenter, device, default=DEFAULT_SEGMENTER)
    get_model(counter, device, default=DEFAULT_COUNTER)
    for folder in (labels_dir, overlays_dir):
        if folder is not None:
            Path(folder).mkdir(parents=True, exist_ok=True)
    for path in tqdm(list(paths), desc="Counting", unit="image", disable=not progress):
        try:
            yield _count_file(path, segmenter=segmenter, counter=counter, device=device, tile_size=tile_size,
                              cell_size=cell_size, labels_dir=labels_dir, overlays_dir=overlays_dir, **postprocess)
        except Exception as error:  # one bad image must not lose the others: it is recorded in its row
            if fail_fast:
                raise
            yield {"image": str(path), "error": describe_error(error)}


def describe_error(error):
    """An exception as the ``error`` column says it: the message of our own validation errors, else with its type."""
    from cellcount_core.models.model_files import ModelFileError

    if isinstance(error, (ValueError, MemoryError, ModelFileError)) and str(error):
        return str(error)
    return f"{type(error).__name__}: {error}"


def _count_file(path, *, segmenter, counter, device, tile_size, cell_size, labels_dir, overlays_dir,
                **postprocess):
    """The CSV row of one image file."""
    from cellcount_core.images.image_checks import check_image
    from cellcount_core.running.inference import predict_count_at_cell_scale
    from cellcount_core.objects.segmentation import segment_image

    image = read_image(path)
    check_image(image, source=str(path))
    result = segment_image(image, model=segmenter, device=device, tile_size=tile_size, batch_size=None,
                           cell_size=cell_size, **postprocess)
    regression_count, _ = predict_count_at_cell_scale(image, model=counter, device=device, tile_size=tile_size,
                                                      cell_size=cell_size, segmenter=segmenter)
    if labels_dir is not None:
        _write_labels(Path(labels_dir) / f"{Path(path).stem}_labels.tif", result.labels)
    if overlays_dir is not None:
        _write_overlay(Path(overlays_dir) / f"{Path(path).stem}_overlay.png", image, result.labels)
    return {
        "image": str(path),
        "count": int(result.count),
        "regression_count": round(float(regression_count), 2),
        "threshold": round(float(result.threshold), 4),
        "diameter": round(float(result.diameter), 2),
        "scale_factor": round(float(result.scale_factor), 4),
        "height": image.shape[0],
        "width": image.shape[1],
        "error": "",
    }


def write_rows(rows, csv_path=None):
    """Write count rows as CSV to ``csv_path``, or to standard output when it is None; return the rows."""
    written = []
    handle = open(csv_path, "w", newline="") if csv_path else sys.stdout
    try:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
            handle.flush()
            written.append(row)
    finally:
        if csv_path:
            handle.close()
    return written


def _write_labels(path, labels):
    import tifffile

    tifffile.imwrite(path, labels.astype("uint16" if labels.max() < 65536 else "uint32"), compression="zlib")


def _write_overlay(path, image, labels):
    import imageio.v3 as iio

    from cellcount_core.objects.overlays import outline_overlay

    iio.imwrite(path, outline_overlay(image, labels))
