"""The augmentation check: the bundled counter on training crops, clean and empty."""

from dataclasses import replace

import pytest

pytestmark = pytest.mark.data


def test_the_bundled_counter_trained_on_empty_crops_counts_them_as_empty(shared_data):
    from cellcount_core.models.bundled import DEFAULT_COUNTER, resolve_model
    from cellcount_core.models.model_files import load_model
    from training.augmentation_check import NO_INTENSITY, PLAIN, count_errors
    from training.count_calibration import read_samples
    from training.counter import load_density_records

    model, _ = load_model(resolve_model("default", default=DEFAULT_COUNTER))
    records = load_density_records(read_samples([f"bbbc005={shared_data / 'bbbc005'}"], "train", 3))
    clean = count_errors(model.eval().float(), records, PLAIN, NO_INTENSITY)
    empty = count_errors(model, records, replace(PLAIN, negative_p=1.0), NO_INTENSITY)
    assert clean["crops"] == empty["crops"] == 12
    assert clean["absolute %"] < 25.0  # 8.3 % on 480 crops
    # counter v5, trained without empty crops, counted noise stretched to full contrast as cells (over 100 %)
    assert abs(empty["signed %"]) < 10.0


def test_the_check_prints_one_row_per_augmentation(shared_data, capsys):
    from cellcount_core.models.bundled import DEFAULT_COUNTER, resolve_model
    from training.augmentation_check import augmentations, main

    table = main(["--model", str(resolve_model("default", default=DEFAULT_COUNTER)), "--data",
                  f"bbbc005={shared_data / 'bbbc005'}", "--limit", "1"])
    assert len(table.splitlines()) == 2 + len(augmentations(40.0))
    assert "| none (4) |" in capsys.readouterr().out
