"""Calibrating a counter's counts: the MAPE-optimal scale, its summary and the command that writes it."""

import json

import numpy as np
import pytest

from training.count_calibration import calibration, mape_scale, percentage_errors


def test_a_counter_short_by_a_fixed_fraction_gets_that_fraction_back():
    true = np.array([5, 10, 40, 80, 100])
    assert mape_scale(true, true / 1.08) == pytest.approx(1.08)


def test_the_scale_minimises_the_mean_absolute_percentage_error():
    rng = np.random.default_rng(0)
    true = rng.integers(1, 120, 300)
    counted = true * rng.lognormal(-0.05, 0.15, 300)
    best = mape_scale(true, counted)
    error = lambda k: percentage_errors(true, k * counted)["mape"]  # noqa: E731
    assert all(error(best) <= error(k) for k in np.linspace(0.8, 1.3, 101))
    assert best > 1.0  # counts drawn low


def test_images_without_cells_or_without_a_count_are_left_out():
    assert mape_scale([0, 10, 20, 7], [3, 5, 10, 0]) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="needs images with cells"):
        mape_scale([0, 0], [1, 2])


def test_the_summary_multiplies_the_current_scale_and_reports_each_source():
    rows = [{"source": "a", "true_count": 10, "count": 8.0}, {"source": "a", "true_count": 20, "count": 16.0},
            {"source": "b", "true_count": 50, "count": 40.0}]
    summary = calibration(rows, current_scale=1.1)
    assert summary["count_scale"] == pytest.approx(1.1 * 1.25)
    assert summary["a"]["before"] == {"mape": 20.0, "mpe": -20.0} and summary["a"]["after"]["mape"] == 0.0
    assert summary["all"]["images"] == 3 and summary["b"]["images"] == 1


@pytest.mark.data
def test_the_command_writes_the_scale_into_a_copy_of_the_card(shared_data, tmp_path):
    import shutil

    from cellcount_core.models.bundled import DEFAULT_COUNTER, resolve_model
    from cellcount_core.models.model_files import model_paths, read_card
    from training.cli import main as train_main

    for path in model_paths(resolve_model("default", default=DEFAULT_COUNTER)):
        shutil.copy(path, tmp_path / f"counter{path.suffix}")
    before = read_card(tmp_path / "counter.json").count_scale
    train_main(["calibrate-count", "--model", str(tmp_path / "counter.json"), "--data",
                f"bbbc005={shared_data / 'bbbc005'}", "--limit", "3", "--out", str(tmp_path / "out")])
    summary = json.loads((tmp_path / "out" / "calibration.json").read_text())
    card = read_card(tmp_path / "counter.json")
    assert card.count_scale == summary["count_scale"] and card.metrics["count_calibration"] == summary
    assert summary["bbbc005"]["images"] == 3 and summary["split"] == "train"
    assert summary["all"]["after"]["mape"] <= summary["all"]["before"]["mape"]
    assert len((tmp_path / "out" / "counts.csv").read_text().splitlines()) == 4
    assert (tmp_path / "out" / "bland_altman.png").stat().st_size > 0
    counts = [line.split(",") for line in (tmp_path / "out" / "counts.csv").read_text().splitlines()[1:]]
    factor = mape_scale([float(row[2]) for row in counts], [float(row[3]) for row in counts])
    assert card.count_scale == pytest.approx(before * factor, abs=1e-4)
