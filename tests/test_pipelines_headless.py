"""End to end: the shipped pipelines, run by headless CellProfiler on PNG images with known counts."""

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from cellcount_cellprofiler.demo import write_synthetic_images
from cellcount_cellprofiler.plugin_folder import plugins_dir

pytestmark = [pytest.mark.cellprofiler, pytest.mark.slow]
PIPELINES = Path(__file__).resolve().parents[1] / "pipelines"


@pytest.fixture(scope="module")
def synthetic_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    return folder, write_synthetic_images(folder)


def run_headless(pipeline, images, output):
    completed = subprocess.run(
        [sys.executable, "-m", "cellprofiler", "-c", "-r", "-p", str(pipeline), "-i", str(images), "-o", str(output),
         "--plugins-directory", str(plugins_dir())],
        capture_output=True, text=True, timeout=900,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert (output / "Image.csv").exists(), f"no Image.csv; CellProfiler said:\n{completed.stderr[-3000:]}"
    with open(output / "Image.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def relative_error(predicted, true):
    return abs(float(predicted) - true) / true


def test_shipped_pipelines_match_the_builder(cellprofiler):
    from cellcount_cellprofiler.pipeline_builder import shipped_pipelines

    for name, text in shipped_pipelines().items():
        assert (PIPELINES / name).read_text() == text, f"{name} is stale: python -m cellcount_cellprofiler.pipeline_builder"


def test_compare_counts_pipeline_exports_classical_and_deep_counts(synthetic_folder, tmp_path):
    images, true_counts = synthetic_folder
    rows = run_headless(PIPELINES / "compare_counts.cppipe", images, tmp_path)
    assert sorted(row["FileName_DNA"] for row in rows) == sorted(true_counts)
    for row in rows:
        true = true_counts[row["FileName_DNA"]]
        assert {"Count_Nuclei", "Count_DeepNuclei", "DeepCount_Nuclei"} <= set(row)
        assert relative_error(row["Count_DeepNuclei"], true) < 0.15, row
    # The bundled counter undercounts these synthetic cells (see docs/RESULTS.md); its counts must still rise
    # with the true count, image after image.
    by_truth = sorted(rows, key=lambda row: true_counts[row["FileName_DNA"]])
    regression = [float(row["DeepCount_Nuclei"]) for row in by_truth]
    assert all(0 < count for count in regression) and regression == sorted(regression), regression
    deep_objects = list(csv.DictReader(open(tmp_path / "DeepNuclei.csv", newline="")))
    assert len(deep_objects) == sum(int(float(row["Count_DeepNuclei"])) for row in rows)
    assert {"Location_Center_X", "Location_Center_Y"} <= set(deep_objects[0])
    assert (tmp_path / "Nuclei.csv").exists()


def test_deep_count_pipeline_runs_without_the_classical_module(synthetic_folder, tmp_path):
    images, true_counts = synthetic_folder
    rows = run_headless(PIPELINES / "deep_count.cppipe", images, tmp_path)
    assert len(rows) == len(true_counts)
    assert "Count_Nuclei" not in rows[0] and "Count_DeepNuclei" in rows[0]
