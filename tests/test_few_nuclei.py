"""Crops of a few nuclei, enlarged: which crops are taken, their truth range and the error table."""

import json

import numpy as np
import pytest

from training.few_nuclei import NUCLEI, error_table, few_nuclei_crops, main


def test_crops_hold_a_few_nuclei_and_count_those_mostly_inside():
    labels = np.zeros((160, 160), np.int32)
    for index, (y, x) in enumerate([(20, 20), (20, 60), (60, 20), (60, 60), (100, 100), (130, 40)], start=1):
        labels[y - 8:y + 8, x - 8:x + 8] = index
    image = labels.astype(np.float32)
    crops = list(few_nuclei_crops(image, labels, fraction=1.0))
    assert crops
    for name, crop, crop_labels, inside in crops:
        top, left, side = map(int, name.split(","))
        assert np.array_equal(crop, image[top:top + side, left:left + side])
        ids = np.unique(crop_labels[crop_labels > 0])
        assert NUCLEI[0] <= len(ids) <= NUCLEI[1]
        assert inside == sum((crop_labels == i).sum() >= 0.5 * (labels == i).sum() for i in ids)
    assert any(inside < len(np.unique(crop_labels)) - 1 for _, _, crop_labels, inside in crops)  # some are cut


def test_a_count_is_off_by_how_far_it_falls_outside_the_range():
    rows = [{"inside": 2, "true_count": 4, "seg_count": count} for count in (1, 3, 8, 4.5)]
    [row] = error_table(rows, ["seg"])
    assert row == {"method": "seg", "crops": 4, "off by more than 2": 1, "median error": 0.75, "largest error": 4.0}


@pytest.mark.data
@pytest.mark.slow
def test_few_nuclei_runs_the_counter_alone(shared_data, tiny_counter, tmp_path):
    main(["--data", str(shared_data / "stardist_example"), "--segmenter", "none", "--counter", str(tiny_counter),
          "--baselines", "--factors", "4", "--fraction", "0.05", "--device", "CPU", "--out", str(tmp_path)])
    summary = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    assert summary["crops"] > 0
    assert [row["method"] for row in summary["errors"]] == ["count:tiny-counter"]
    assert (tmp_path / "crops.csv").read_text(encoding="utf-8").count("\n") == summary["crops"] + 1
    assert (tmp_path / "counts.png").stat().st_size > 0
