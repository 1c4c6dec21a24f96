"""What a headless CellProfiler 5 run does when a deep module fails on one image set (run, not assumed).

Without ``--always-continue`` the run stops at the failing image set, exits 1 and writes no spreadsheet, not even
for the image sets measured before it. With ``--always-continue`` every other image set is measured and exported,
the failed one keeps a row with empty measurements from the failing module on, and the run exits 0. Either way
the log names the module, the image set and its file. A missing model file fails every image set, and with
``--always-continue`` the run still exits 0.
"""

import csv
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from cellcount_cellprofiler.plugin_folder import plugins_dir
from cellcount_core.images.synthetic import synthetic_cells

pytestmark = [pytest.mark.cellprofiler, pytest.mark.slow]

PIPELINE = Path(__file__).resolve().parents[1] / "pipelines" / "deep_count.cppipe"
TRUE_COUNTS = {"cells_0.png": 15, "cells_1.png": 40}


@pytest.fixture(scope="module")
def images_with_one_too_small(tmp_path_factory):
    """Two images of synthetic cells and, between them in file order, a 4 x 4 image DeepSegment refuses."""
    folder = tmp_path_factory.mktemp("images")
    for seed, (name, count) in enumerate(TRUE_COUNTS.items()):
        iio.imwrite(folder / name, synthetic_cells((256, 256), count, (12, 18), seed=seed).image)
    iio.imwrite(folder / "cells_0b_tiny.png", np.full((4, 4), 100, np.uint8))
    return folder


def run_cellprofiler(images, output, *extra):
    return subprocess.run([sys.executable, "-m", "cellprofiler", "-c", "-r", "-p", str(PIPELINE), "-i", str(images),
                           "-o", str(output), "--plugins-directory", str(plugins_dir()), *extra],
                          capture_output=True, text=True, timeout=600)


def expected_error(images):
    return (f"DeepSegment (module 5) failed on image set 2 (DNA: {images}/cells_0b_tiny.png): image 'DNA' is 4 x 4 "
            "pixels; the smallest image cellcount segments or counts is 8 x 8 pixels")


def test_without_always_continue_the_run_stops_and_exports_nothing(images_with_one_too_small, tmp_path):
    completed = run_cellprofiler(images_with_one_too_small, tmp_path)
    assert completed.returncode == 1
    assert expected_error(images_with_one_too_small) in completed.stderr
    assert not (tmp_path / "Image.csv").exists()


def test_with_always_continue_the_other_image_sets_are_measured_and_exported(images_with_one_too_small, tmp_path):
    completed = run_cellprofiler(images_with_one_too_small, tmp_path, "--always-continue")
    assert completed.returncode == 0  # CellProfiler's choice: the failure shows only in the log and the table
    assert expected_error(images_with_one_too_small) in completed.stderr
    rows = {row["FileName_DNA"]: row for row in csv.DictReader(open(tmp_path / "Image.csv", newline=""))}
    assert sorted(rows) == ["cells_0.png", "cells_0b_tiny.png", "cells_1.png"]
    failed = rows.pop("cells_0b_tiny.png")
    assert (failed["Count_DeepNuclei"], failed["DeepCount_Nuclei"], failed["ModuleError_05DeepSegment"]) == ("", "", "")
    for name, row in rows.items():
        assert row["ModuleError_05DeepSegment"] == "0"
        assert abs(int(row["Count_DeepNuclei"]) - TRUE_COUNTS[name]) <= max(2, 0.15 * TRUE_COUNTS[name]), row
        assert float(row["DeepCount_Nuclei"]) > 0
    objects = list(csv.DictReader(open(tmp_path / "DeepNuclei.csv", newline="")))
    assert sorted({row["ImageNumber"] for row in objects}) == ["1", "3"]


def test_a_missing_model_file_fails_every_image_set_and_always_continue_hides_it(cellprofiler, tmp_path):
    """Why `cellcount check-pipeline` comes first: with --always-continue a pipeline-wide problem still exits 0."""
    from test_check_pipeline import deep_pipeline_text

    images = tmp_path / "images"
    images.mkdir()
    for seed, (name, count) in enumerate(TRUE_COUNTS.items()):
        iio.imwrite(images / name, synthetic_cells((128, 128), count // 4, (12, 18), seed=seed).image)
    pipeline = tmp_path / "missing_model.cppipe"
    pipeline.write_text(deep_pipeline_text(tmp_path / "absent.safetensors", tmp_path / "absent-counter.safetensors"))
    completed = subprocess.run([sys.executable, "-m", "cellprofiler", "-c", "-r", "-p", str(pipeline), "-i",
                                str(images), "-o", str(tmp_path / "out"), "--plugins-directory", str(plugins_dir()),
                                "--always-continue"], capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0
    for number, name in enumerate(TRUE_COUNTS, start=1):
        assert (f"DeepSegment (module 6) failed on image set {number} (DNA: {images}/{name}): Model card "
                f"{tmp_path / 'absent.json'} not found") in completed.stderr
    rows = list(csv.DictReader(open(tmp_path / "out" / "Image.csv", newline="")))
    assert len(rows) == 2 and all(float(row["Count_Nuclei"]) > 0 for row in rows)  # the modules before DeepSegment
    assert not {"Count_DeepNuclei", "DeepCount_Nuclei"} & set(rows[0])  # no image set made them: no column
