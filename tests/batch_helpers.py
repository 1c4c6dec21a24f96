"""Helpers of the `cellcount batch` tests: DSB2018 images, plain headless runs, tables compared with a tolerance."""

import csv
import json
import math
import shutil
import subprocess
import sys

from cellcount_cellprofiler.plugin_folder import plugins_dir


def copy_images(shared_data, folder, count):
    """The first ``count`` 256 x 256 DSB2018 images (fast to run) copied into ``folder``."""
    with open(shared_data / "dsb2018_fluo" / "counts.csv", newline="") as handle:
        small = [row["id"] for row in csv.DictReader(handle) if row["height"] == row["width"] == "256"]
    folder.mkdir(parents=True)
    for name in sorted(small)[:count]:
        shutil.copy(shared_data / "dsb2018_fluo" / "images" / f"{name}.png", folder)
    return folder


def write_classical_pipeline(path, create_batch_files=False):
    """Images -> IdentifyPrimaryObjects -> ExportToSpreadsheet (fast, classical only) [-> CreateBatchFiles]."""
    from cellcount_cellprofiler.pipeline_builder import (classical_module, export_module, input_modules, new_module,
                                                         pipeline_text)

    last = [new_module("CreateBatchFiles")] if create_batch_files else []
    path.write_text(pipeline_text(input_modules() + [classical_module(), export_module()] + last))
    return path


def plain_run(pipeline, images, output):
    completed = subprocess.run([sys.executable, "-m", "cellprofiler", "-c", "-r", "-p", str(pipeline), "-i",
                                str(images), "-o", str(output), "--plugins-directory", str(plugins_dir())],
                               capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0 and (output / "Image.csv").exists(), completed.stderr[-3000:]
    return output


def table(path, ignore=()):
    """Rows of a table without the columns that differ from run to run (execution times) and those in ``ignore``."""
    with open(path, newline="") as handle:
        return [{key: value for key, value in row.items() if not key.startswith("ExecutionTime_") and key not in ignore}
                for row in csv.DictReader(handle)]


def same_value(left, right):
    """Equal text, or numbers equal to 1e-5: torch's sums depend on its thread count (one per worker here)."""
    if left == right:
        return True
    try:
        return math.isclose(float(left), float(right), rel_tol=1e-5, abs_tol=1e-7)
    except ValueError:
        return False


def assert_same_tables(batch_output, reference, names=("Image.csv", "Nuclei.csv"), ignore=()):
    for name in names:
        merged, expected = table(batch_output / name, ignore), table(reference / name, ignore)
        assert len(merged) == len(expected), f"{name}: {len(merged)} rows, the plain run has {len(expected)}"
        for index, (row, expected_row) in enumerate(zip(merged, expected)):
            assert row.keys() == expected_row.keys(), f"{name}: other columns than the plain run's"
            differing = {key: (row[key], expected_row[key]) for key in row if not same_value(row[key], expected_row[key])}
            assert not differing, f"{name} row {index} differs from the plain run: {differing}"


def manifest_chunks(output):
    return {(chunk["first"], chunk["last"]): chunk for chunk in json.loads((output / "manifest.json").read_text())["chunks"]}
