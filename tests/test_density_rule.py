"""The counter's small-density threshold: the table of candidate thresholds and the command that writes one."""

import csv
import json

import numpy as np
import pytest

from training.density_rule import rule_table


def _row(source, scale, truth, diameter, count, enlarged):
    return {"id": f"{source}{scale}{truth}", "source": source, "scale": scale, "true_count": truth,
            "diameter": diameter, "count": count, "enlarged_count": enlarged}


def test_each_threshold_counts_the_images_below_it_enlarged():
    rows = [_row("dsb2018", 0.5, 10, 20.0, 5.0, 10.0), _row("dsb2018", 0.5, 20, 30.0, 10.0, 20.0),
            _row("dsb2018", 1.0, 10, 35.0, 10.0, 15.0), _row("dsb2018", 1.0, 40, None, 44.0, 44.0)]
    table = {entry["threshold"]: entry for entry in rule_table(rows, thresholds=(25.0, 32.0, 40.0))}
    assert table["off"]["dsb2018 x0.5 MAPE"] == 50.0 and table["off"]["dsb2018 x0.5 enlarged"] == 0
    assert table[25.0]["dsb2018 x0.5 MAPE"] == 25.0 and table[25.0]["dsb2018 x0.5 enlarged"] == 1
    assert table[32.0]["dsb2018 x0.5 MAPE"] == 0.0 and table[32.0]["dsb2018 x1 MAPE"] == 5.0
    # above 35 px the x1 image is enlarged too; the image the rule never sees (None) keeps its count
    assert table[40.0]["dsb2018 x1 MAPE"] == 30.0 and table[40.0]["dsb2018 x1 enlarged"] == 1


def test_images_without_cells_are_left_out_of_the_error():
    rows = [_row("bbbc005", 1.0, 0, 20.0, 3.0, 6.0), _row("bbbc005", 1.0, 10, 50.0, 9.0, 12.0)]
    assert rule_table(rows, thresholds=(30.0,))[1]["bbbc005 x1 MAPE"] == 10.0


def test_the_command_refuses_a_counter_that_reads_masks(tmp_path):
    from cellcount_core.models.model_files import ModelCard
    from training.cli import main as train_main

    card = ModelCard(name="dcc", kind="counter", architecture="dcc_counter", input="mask", input_size=[64, 64])
    (tmp_path / "dcc.json").write_text(card.to_json(), encoding="utf-8")
    with pytest.raises(ValueError, match="dcc.json is a dcc_counter counter; density-rule needs a density counter"):
        train_main(["density-rule", "--model", str(tmp_path / "dcc.json"), "--data", "dsb2018=unused",
                    "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


@pytest.mark.data
def test_the_command_measures_and_writes_the_chosen_threshold(shared_data, tmp_path):
    import shutil

    from cellcount_core.models.bundled import DEFAULT_COUNTER, resolve_model
    from cellcount_core.models.model_files import model_paths, read_card
    from cellcount_core.running.inference import predict_count_at_cell_scale
    from training.cli import main as train_main
    from training.datasets import read_image
    from training.robustness import resize_pair
    from training.threshold_tuning import select_samples

    for path in model_paths(resolve_model("default", default=DEFAULT_COUNTER)):
        shutil.copy(path, tmp_path / f"counter{path.suffix}")
    model = tmp_path / "counter.json"
    train_main(["density-rule", "--model", str(model), "--data", f"dsb2018={shared_data / 'dsb2018_fluo'}",
                "--limit", "2", "--thresholds", "28", "60", "--choose", "60", "--out", str(tmp_path / "out")])
    rows = list(csv.DictReader(open(tmp_path / "out" / "per_image.csv", encoding="utf-8")))
    assert [row["scale"] for row in rows] == ["0.5", "1.0", "0.5", "1.0"]
    card = read_card(model)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert card.small_density_diameter == 60.0 and card.metrics["small_density_rule"]["chosen"] == 60.0
    assert card.metrics["small_density_rule"]["table"] == summary["table"]
    assert (tmp_path / "out" / "mape_by_threshold.png").stat().st_size > 0
    # with the threshold in the card, DeepCount gives the enlarged count wherever the diameter is below it
    sample = select_samples("dsb2018", shared_data / "dsb2018_fluo", "train", limit=2)[0]
    image = read_image(sample.image_path)
    reduced, _ = resize_pair(image, np.zeros(image.shape[:2], np.uint8), 0.5)
    measured = next(row for row in rows if row["id"] == sample.id and row["scale"] == "0.5")
    assert measured["diameter"] and float(measured["diameter"]) < 60.0
    count, scale = predict_count_at_cell_scale(reduced, model)
    assert scale.factor == 2.0 and count == pytest.approx(float(measured["enlarged_count"]), abs=1e-3)
    assert scale.density_diameter == pytest.approx(float(measured["diameter"]), abs=1e-3)
    # with the rule off, the image is counted at its own size and the diameter the rule would see is reported
    own_count, own_scale = predict_count_at_cell_scale(reduced, model, enlarge_small_cells=False)
    assert own_scale.factor == 1.0 and own_count == pytest.approx(float(measured["count"]), abs=1e-3)
    assert own_scale.density_diameter == scale.density_diameter
