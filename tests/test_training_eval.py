"""Threshold tuning, evaluation tables and plots, and the classical baselines (training/)."""

import hashlib
import json
import shutil

import numpy as np
import pytest
import tifffile

from cellcount_core.images.synthetic import synthetic_cells
from training import evaluate, threshold_tuning
from training.baseline import baseline_labels
from training.cli import main as train_main
from training.evaluate import Models, count_range, evaluate_samples, markdown_table, summarize, write_outputs
from training.threshold_tuning import (DetectionCurve, argmax_threshold, choose_threshold, detection_curve,
                                       kneedle_threshold, select_samples, threshold_choices,
                                       update_card_threshold)

GRID = np.round(np.arange(0.05, 0.951, 0.05), 2)


def knee_curve():
    """F1 rising linearly 0.2 -> 0.8 up to 0.30, then slowly to 0.82 at 0.70, then falling."""
    return np.interp(GRID, [0.05, 0.30, 0.70, 0.95], [0.20, 0.80, 0.82, 0.40])


def separated_cells(seed, n_cells=8):
    """Small image of well separated cells with known labels."""
    return synthetic_cells((128, 128), n_cells, (12, 16), irregularity=0.1, clustering=0.0, touching=0.0,
                           noise=0.0, seed=seed)


def test_kneedle_finds_the_knee_and_argmax_the_peak():
    f1 = knee_curve()
    assert kneedle_threshold(GRID, f1) == pytest.approx(0.30)
    assert argmax_threshold(GRID, f1) == pytest.approx(0.70)


def test_kneedle_without_a_rising_part_falls_back_to_argmax():
    tp = np.linspace(90, 30, GRID.size).round().astype(int)  # recall and F1 fall as the threshold rises
    curve = DetectionCurve(GRID, tp, np.zeros(GRID.size, int), 100 - tp)
    choices = threshold_choices(curve)
    assert choices == {"kneedle": None, "argmax": pytest.approx(0.05)}
    assert choose_threshold(choices, "kneedle") == (pytest.approx(0.05), "argmax")
    with pytest.raises(ValueError, match="Unknown threshold choice"):
        choose_threshold(choices, "median")


def test_choose_threshold_prefers_the_knee():
    tp = np.rint(knee_curve() * 1000).astype(int)  # fp = fn = 1000 - tp: F1 = tp / 1000
    curve = DetectionCurve(GRID, tp, 1000 - tp, 1000 - tp)
    assert choose_threshold(threshold_choices(curve), "kneedle") == (pytest.approx(0.30), "kneedle")
    assert choose_threshold(threshold_choices(curve), "argmax") == (pytest.approx(0.70), "argmax")


def test_argmax_takes_the_lowest_of_tied_thresholds():
    assert argmax_threshold([0.1, 0.2, 0.3], [0.5, 0.9, 0.9]) == pytest.approx(0.2)


def test_detection_curve_ratios_are_summed_over_images():
    curve = DetectionCurve(np.array([0.5]), np.array([6]), np.array([2]), np.array([4]))
    assert curve.precision[0] == pytest.approx(0.75)
    assert curve.recall[0] == pytest.approx(0.6)
    assert curve.f1[0] == pytest.approx(2 * 6 / (12 + 2 + 4))
    assert curve.accuracy[0] == pytest.approx(0.5)
    assert curve.to_dict()["tp"] == [6]


def test_true_masks_as_probabilities_give_f1_one_at_every_threshold():
    cells = [separated_cells(seed) for seed in range(2)]
    pairs = (((c.labels > 0).astype(np.float32), c.labels) for c in cells)
    curve = detection_curve(pairs, [0.2, 0.5, 0.8], progress=False)
    assert curve.f1 == pytest.approx([1.0, 1.0, 1.0])
    assert list(curve.tp) == [sum(c.count for c in cells)] * 3


def file_digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def copy_model(weights, folder):
    """Copy a model file (weights + card) into folder; return the new weights path."""
    for path in (weights, weights.with_suffix(".json")):
        shutil.copy2(path, folder / path.name)
    return folder / weights.name


def test_card_rewrite_keeps_weights_untouched(tiny_segmenter, tmp_path):
    weights = copy_model(tiny_segmenter, tmp_path)
    before, mtime = file_digest(weights), weights.stat().st_mtime_ns
    card_path = update_card_threshold(weights, 0.35, "kneedle", {"curve": {"f1": [0.5]}})
    card = json.loads(card_path.read_text())
    assert card["default_threshold"] == {"value": 0.35, "method": "kneedle"}
    assert card["metrics"]["threshold_tuning"] == {"curve": {"f1": [0.5]}}
    assert card["name"] == "tiny-segmenter"
    assert file_digest(weights) == before and weights.stat().st_mtime_ns == mtime


def write_folder(root, cells, image_of=lambda c: c.image):
    """Write a generic dataset folder: images/<id>.tif and labels/<id>.tif."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for index, c in enumerate(cells):
        tifffile.imwrite(root / "images" / f"cells{index}.tif", image_of(c))
        tifffile.imwrite(root / "labels" / f"cells{index}.tif", c.labels.astype(np.uint16))
    return root


def test_tune_threshold_command_rewrites_only_the_card(tiny_segmenter, tmp_path):
    weights = copy_model(tiny_segmenter, tmp_path)
    before = file_digest(weights)
    data = write_folder(tmp_path / "data", [separated_cells(0)])
    train_main(["tune-threshold", "--model", str(weights), "--dataset", "folder", "--data", str(data),
                "--split", "all", "--thresholds", "0.3", "0.5", "0.7", "--out", str(tmp_path / "out")])
    card = json.loads(weights.with_suffix(".json").read_text())
    tuning = card["metrics"]["threshold_tuning"]
    assert card["default_threshold"]["method"] in ("kneedle", "argmax")
    assert card["default_threshold"]["value"] in (0.3, 0.5, 0.7)
    assert tuning["curve"]["thresholds"] == [0.3, 0.5, 0.7]
    assert tuning["data"]["images"] == 1 and tuning["command"].startswith("cellcount-train tune-threshold")
    assert file_digest(weights) == before
    assert (tmp_path / "out" / "f1_vs_threshold.png").stat().st_size > 0


@pytest.fixture
def perfect_models(monkeypatch, tiny_segmenter, tiny_counter, tmp_path):
    """Models whose probability is the true mask (the image is the mask) and whose counter is off by +1."""
    from cellcount_core.running import inference
    from scipy import ndimage as ndi

    counter = copy_model(tiny_counter, tmp_path)
    card_path = counter.with_suffix(".json")
    card = json.loads(card_path.read_text())
    card["input"] = "mask"
    card_path.write_text(json.dumps(card))
    monkeypatch.setattr(inference, "predict_probability", lambda image, *a, **k: (image > 0).astype(np.float32))
    monkeypatch.setattr(inference, "predict_count", lambda mask, *a, **k: float(ndi.label(mask)[1] + 1))
    return Models(segmenter=tiny_segmenter, counter=counter, baselines=("classical",),
                  counter_masks=("model default", "otsu"))


def test_perfect_model_gets_perfect_scores_and_known_count_errors(perfect_models, tmp_path):
    cells = [separated_cells(seed, n) for seed, n in ((0, 5), (1, 8), (2, 10))]
    data = write_folder(tmp_path / "data", cells, image_of=lambda c: ((c.labels > 0) * 1000).astype(np.uint16))
    samples = select_samples("folder", data, "all")
    rows, curve = evaluate_samples(samples, perfect_models, [0.25, 0.5, 0.75], progress=False)
    true = np.array([c.count for c in cells], float)
    assert [row["true_count"] for row in rows] == list(true)

    overall = {row["method"]: row for row in summarize(rows, perfect_models.method_names())}
    segmenter = overall["seg:tiny-segmenter"]
    assert segmenter["mae"] == 0 and segmenter["mape"] == 0
    assert segmenter["f1"] == 1.0 and segmenter["accuracy"] == 1.0 and segmenter["tp"] == true.sum()
    for mask in ("model default", "otsu"):  # both masks are the true mask here
        counter = overall[f"count:tiny-counter@{mask}"]
        assert counter["mae"] == 1.0 and counter["medae"] == 1.0
        assert counter["mpe"] == pytest.approx(np.mean(100.0 / true), abs=1e-3)
        assert "f1" not in counter
    assert overall["classical"]["f1"] == 1.0 and overall["classical"]["mae"] == 0
    assert curve.f1 == pytest.approx([1.0, 1.0, 1.0])

    out = tmp_path / "out"
    summary = write_outputs(rows, curve, perfect_models, out, dataset="folder", title="perfect", command="test")
    for name in ("per_image.csv", "per_image.md", "overall.csv", "overall.md", "report.md", "summary.json",
                 "counts.png", "bland_altman.png", "f1_vs_threshold.png", "f1_vs_threshold.csv"):
        assert (out / name).stat().st_size > 0, name
    assert not (out / "by_blur.csv").exists()
    assert summary["tables"]["overall"][0]["f1"] == 1.0
    assert "| seg:tiny-segmenter | 3 | 0 | 0 | 0 | 0 |" in (out / "overall.md").read_text()


def test_evaluate_command_runs_on_a_folder(perfect_models, tiny_segmenter, tmp_path):
    data = write_folder(tmp_path / "data", [separated_cells(3)], image_of=lambda c: (c.labels > 0).astype(np.uint8))
    train_main(["evaluate", "--segmenter", str(tiny_segmenter), "--dataset", "folder", "--data", str(data),
                "--split", "all", "--thresholds", "0.5", "--out", str(tmp_path / "out")])
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["tables"]["overall"][0]["f1"] == 1.0
    assert summary["command"].startswith("cellcount-train evaluate")


def test_binary_masks_count_but_do_not_score_detections(perfect_models, tiny_segmenter, tmp_path):
    cells = [separated_cells(seed, 6) for seed in range(2)]
    data = tmp_path / "data"
    write_folder(data, cells, image_of=lambda c: ((c.labels > 0) * 1000).astype(np.uint16))
    for index, c in enumerate(cells):  # overwrite the labels by binary masks
        tifffile.imwrite(data / "labels" / f"cells{index}.tif", ((c.labels > 0) * 255).astype(np.uint8))
    samples = select_samples("folder", data, "all")
    reference = threshold_tuning.read_reference(samples[0])
    assert reference.labels is None and reference.count == cells[0].count
    rows, curve = evaluate_samples(samples, perfect_models, [0.5], progress=False)
    assert curve is None and all("seg:tiny-segmenter_tp" not in row for row in rows)
    overall = summarize(rows, perfect_models.method_names())
    assert overall[0]["mae"] == 0 and "f1" not in overall[0]
    with pytest.raises(ValueError, match="instance labels"):
        threshold_tuning.tune(samples, tiny_segmenter, [0.5], progress=False)


def test_true_diameter_post_processes_each_image_with_its_cells_diameter(perfect_models, tmp_path, monkeypatch):
    from cellcount_core.objects import segmentation

    cells = [separated_cells(seed, 6) for seed in (4, 5)]
    data = write_folder(tmp_path / "data", cells, image_of=lambda c: ((c.labels > 0) * 1000).astype(np.uint16))
    used = []
    original = segmentation.labels_from_probability
    monkeypatch.setattr(segmentation, "labels_from_probability",
                        lambda probability, **kwargs: used.append(kwargs["diameter"]) or original(probability, **kwargs))
    perfect_models.true_diameter = True
    rows, _ = evaluate_samples(select_samples("folder", data, "all"), perfect_models, None, progress=False)
    expected = [threshold_tuning.object_diameter(c.labels) for c in cells]
    assert used == pytest.approx(expected) and min(expected) > 12
    assert [row["seg:tiny-segmenter_count"] for row in rows] == [c.count for c in cells]
    summary = write_outputs(rows, None, perfect_models, tmp_path / "out", dataset="folder", title="oracle")
    assert summary["diameter"] == "true"
    assert "true median cell diameter" in (tmp_path / "out" / "report.md").read_text()


def test_true_diameter_needs_instance_labels_and_no_fixed_diameter(perfect_models, tmp_path):
    cells = [separated_cells(6, 5)]
    data = write_folder(tmp_path / "data", cells, image_of=lambda c: ((c.labels > 0) * 1000).astype(np.uint16))
    tifffile.imwrite(data / "labels" / "cells0.tif", ((cells[0].labels > 0) * 255).astype(np.uint8))
    perfect_models.true_diameter = True
    with pytest.raises(ValueError, match="cells0: the true diameter needs instance labels"):
        evaluate_samples(select_samples("folder", data, "all"), perfect_models, None, progress=False)
    both = Models(segmenter=perfect_models.segmenter, diameter=20.0, true_diameter=True)
    with pytest.raises(ValueError, match="not both"):
        both.load_cards()


def bbbc005_like_rows():
    rows = []
    for blur, stain, true, predicted in ((1, 1, 10, 11), (1, 2, 60, 54), (48, 1, 90, 99), (48, 2, 20, 20)):
        rows.append({"id": f"b{blur}w{stain}", "true_count": true, "blur": blur, "stain": stain,
                     "count_range": count_range(true), "m_count": predicted,
                     "m_tp": min(true, predicted), "m_fp": max(predicted - true, 0), "m_fn": max(true - predicted, 0)})
    return rows


def test_count_ranges():
    assert [count_range(c) for c in (1, 25, 26, 50, 51, 75, 76, 100, 101, 0)] == \
        ["1-25", "1-25", "26-50", "26-50", "51-75", "51-75", "76-100", "76-100", ">100", "0"]


def test_grouping_by_blur_stain_and_count_range():
    rows = bbbc005_like_rows()
    by_blur = {row["blur"]: row for row in summarize(rows, ["m"], "blur")}
    assert list(by_blur) == [1, 48]
    assert by_blur[1]["mae"] == pytest.approx(3.5) and by_blur[1]["images"] == 2
    assert by_blur[1]["mpe"] == pytest.approx((10.0 - 10.0) / 2)
    assert by_blur[48]["mae"] == pytest.approx(4.5) and by_blur[48]["mape"] == pytest.approx(5.0)
    by_stain = {row["stain"]: row for row in summarize(rows, ["m"], "stain")}
    assert by_stain[2]["medae"] == pytest.approx(3.0)
    assert by_stain[1]["tp"] == 10 + 90 and by_stain[1]["fp"] == 1 + 9
    ranges = [row["count_range"] for row in summarize(rows, ["m"], "count_range")]
    assert ranges == ["1-25", "51-75", "76-100"]


def test_markdown_table():
    text = markdown_table([{"a": 1, "b": 0.12345}, {"a": 2}])
    assert text.splitlines() == ["| a | b |", "|---|---|", "| 1 | 0.123 |", "| 2 |  |"]


def test_classical_baseline_counts_separated_cells():
    cells = separated_cells(5, 12)
    result = baseline_labels(cells.image, "classical")
    assert result.count == cells.count
    from cellcount_core.counts.metrics import match_detections

    assert match_detections(cells.labels, result.labels, cells.diameter).f1 == 1.0


def test_cellprofiler_baseline_counts_separated_cells():
    pytest.importorskip("cellprofiler_library", reason="CellProfiler 5 is not installed")
    cells = separated_cells(6, 12)
    result = baseline_labels(cells.image, "cellprofiler")
    assert abs(result.count - cells.count) <= 1


def test_unknown_inputs_are_named():
    with pytest.raises(ValueError, match="Unknown baseline 'x'"):
        baseline_labels(np.zeros((8, 8)), "x")
    with pytest.raises(ValueError, match="Unknown dataset"):
        select_samples("mnist", ".")


@pytest.mark.data
def test_bbbc005_validation_split_groups(shared_data):
    samples = select_samples("bbbc005", shared_data / "bbbc005", "val")
    assert len(samples) == 288
    assert {s.meta["site"] for s in samples} == {7, 8}
    assert {(s.meta["blur"], s.meta["stain"]) for s in samples} == {(b, w) for b in (1, 23, 48) for w in (1, 2)}
    ranges = [count_range(s.count) for s in samples]
    assert {r: ranges.count(r) for r in set(ranges)} == {"1-25": 72, "26-50": 72, "51-75": 72, "76-100": 72}
    limited = select_samples("bbbc005", shared_data / "bbbc005", "val", limit=12)
    assert len(limited) == 12 and limited[0] == samples[0] and limited[-1] == samples[-1]


@pytest.mark.data
def test_stardist_example_reference(shared_data):
    (sample,) = select_samples("stardist", shared_data / "stardist_example", "all")
    reference = threshold_tuning.read_reference(sample)
    assert reference.count == 125 and threshold_tuning.count_objects(reference.labels) == 125
    assert evaluate.count_range(reference.count) == ">100"


def test_record_metrics_writes_an_evaluations_numbers_into_the_card(perfect_models, tiny_segmenter, tmp_path):
    model = copy_model(tiny_segmenter, tmp_path)
    card_path = model.with_suffix(".json")
    card = json.loads(card_path.read_text())
    card["metrics"] = {"val_dice": 0.5, "validation": {"stale": {}}}
    card_path.write_text(json.dumps(card))
    weights_before = file_digest(model)
    cells = [separated_cells(seed, n) for seed, n in ((0, 5), (1, 8))]
    data = write_folder(tmp_path / "data", cells, image_of=lambda c: ((c.labels > 0) * 1000).astype(np.uint16))
    train_main(["evaluate", "--segmenter", str(model), "--counter", "none", "--baselines", "classical",
                "--dataset", "folder", "--data", str(data), "--split", "all", "--out", str(tmp_path / "eval")])
    train_main(["record-metrics", "--model", str(model), "--evaluation", str(tmp_path / "eval"),
                "--note", "measured in a test"])
    metrics = json.loads(card_path.read_text())["metrics"]
    assert set(metrics["validation"]) == {"folder"}
    overall = metrics["validation"]["folder"]["seg"]["overall"]
    assert overall["images"] == 2 and overall["mae"] == 0 and overall["f1"] == 1.0
    assert set(overall) == {"images", "mae", "medae", "mpe", "mape", "precision", "recall", "f1", "accuracy"}
    assert metrics["validation_command"].startswith("cellcount-train evaluate --segmenter")
    assert metrics["validation_note"] == "measured in a test" and metrics["val_dice"] == 0.5
    assert file_digest(model) == weights_before


def bbbc005_like_summary(name="tiny-segmenter"):
    method = f"seg:{name}"
    rows = [{**{k: v for k, v in row.items() if not k.startswith("m_")},
             **{f"{method}_{k[2:]}": v for k, v in row.items() if k.startswith("m_")}} for row in bbbc005_like_rows()]
    tables = {"overall": summarize(rows, [method])}
    tables.update({f"by_{group}": summarize(rows, [method], group) for group in ("blur", "stain", "count_range")})
    return {"title": "bbbc005 val (4 images)", "dataset": "bbbc005", "command": "cellcount-train evaluate x",
            "models": {"segmenter": {"name": name}}, "tables": tables}


def test_recorded_bbbc005_metrics_keep_blur_and_stain_groups(tiny_segmenter):
    from cellcount_core.models.model_files import read_card
    from training.card_metrics import metrics_from_evaluations

    entry = metrics_from_evaluations([bbbc005_like_summary()], read_card(tiny_segmenter))["bbbc005"]["seg"]
    assert set(entry) == {"overall", "by_blur", "by_stain"}
    assert entry["overall"]["images"] == 4 and entry["overall"]["mae"] == pytest.approx(4.0)
    assert set(entry["by_blur"]) == {"1", "48"} and entry["by_blur"]["1"]["mae"] == pytest.approx(3.5)
    assert entry["by_blur"]["48"]["mape"] == pytest.approx(5.0)
    assert entry["by_stain"]["2"]["medae"] == pytest.approx(3.0)


def test_record_metrics_refuses_another_models_evaluation(tiny_segmenter, tmp_path):
    from cellcount_core.models.model_files import read_card
    from training.card_metrics import metrics_from_evaluations, read_summary

    card = read_card(tiny_segmenter)
    with pytest.raises(ValueError, match="ran segmenter other, not the segmenter tiny-segmenter"):
        metrics_from_evaluations([bbbc005_like_summary("other")], card)
    with pytest.raises(ValueError, match="Two evaluations of bbbc005"):
        metrics_from_evaluations([bbbc005_like_summary()] * 2, card)
    with pytest.raises(FileNotFoundError, match="no summary.json"):
        read_summary(tmp_path)
