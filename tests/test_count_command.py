"""``cellcount count``: the CSV it writes, its optional outputs, and its errors."""

import csv

import imageio.v3 as iio
import pytest

from cellcount_cellprofiler.cli import main
from cellcount_core.images.synthetic import synthetic_cells


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    counts = {}
    for seed, n_cells in enumerate((15, 40)):
        cells = synthetic_cells((256, 256), n_cells, (12, 18), seed=seed)
        iio.imwrite(folder / f"cells_{seed}.png", cells.image)
        counts[f"cells_{seed}.png"] = cells.count
    return folder, counts


def test_count_writes_one_row_per_image_with_counts_near_the_truth(image_folder, tmp_path):
    folder, counts = image_folder
    out = tmp_path / "counts.csv"
    assert main(["count", str(folder), "--csv", str(out), "--labels", str(tmp_path / "labels"),
                 "--overlays", str(tmp_path / "overlays")]) == 0
    rows = list(csv.DictReader(open(out, newline="")))
    assert [row["image"].rsplit("/", 1)[-1] for row in rows] == sorted(counts)
    for row in rows:
        true = counts[row["image"].rsplit("/", 1)[-1]]
        assert abs(int(row["count"]) - true) <= max(2, 0.15 * true), row
    # 15 then 40 cells: the regression count must grow with them (its accuracy is measured on real data)
    assert 0 < float(rows[0]["regression_count"]) < float(rows[1]["regression_count"]), rows
    assert len(list((tmp_path / "labels").glob("*_labels.tif"))) == 2
    assert len(list((tmp_path / "overlays").glob("*_overlay.png"))) == 2


def test_a_given_tile_size_counts_as_the_automatic_one(image_folder, tmp_path):
    folder, _ = image_folder
    rows = {}
    for tile in ("auto", "128"):
        out = tmp_path / f"{tile}.csv"
        assert main(["count", str(folder), "--csv", str(out), "--tile-size", tile]) == 0
        rows[tile] = [(int(row["count"]), float(row["diameter"])) for row in csv.DictReader(open(out, newline=""))]
    assert len(rows["auto"]) == 2
    for (auto_count, auto_diameter), (count, diameter) in zip(rows["auto"], rows["128"]):
        # 128-px tiles overlap less than the segmenter's receptive field: seams move the diameter a little
        assert auto_count == count and auto_diameter == pytest.approx(diameter, abs=0.5)


def test_count_names_a_missing_input(tmp_path, capsys):
    assert main(["count", str(tmp_path / "nowhere.png")]) == 2
    assert "nowhere.png does not exist" in capsys.readouterr().err


def test_count_names_an_unreadable_image(tmp_path, capsys):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    assert main(["count", str(broken)]) == 1
    assert f"{broken} failed: Could not read {broken} as an image" in capsys.readouterr().err


def test_count_names_an_unknown_model(image_folder, capsys):
    folder, _ = image_folder
    assert main(["count", str(folder), "--model", "no-such-model"]) == 2
    assert "no-such-model" in capsys.readouterr().err


# ---------------------------------------------------------------- a bad image fails alone

@pytest.fixture
def folder_with_a_truncated_image(image_folder, tmp_path):
    """The two images, and between them a PNG cut in half."""
    folder, counts = image_folder
    for name in counts:
        (tmp_path / name).write_bytes((folder / name).read_bytes())
    whole = (folder / "cells_0.png").read_bytes()
    (tmp_path / "cells_0b_truncated.png").write_bytes(whole[: len(whole) // 2])
    return tmp_path, counts


def test_a_bad_image_gets_an_error_row_and_the_others_are_counted(folder_with_a_truncated_image, tmp_path_factory,
                                                                  capsys):
    folder, counts = folder_with_a_truncated_image
    out = tmp_path_factory.mktemp("out") / "counts.csv"
    assert main(["count", str(folder), "--csv", str(out)]) == 1
    rows = {row["image"].rsplit("/", 1)[-1]: row for row in csv.DictReader(open(out, newline=""))}
    assert list(rows) == ["cells_0.png", "cells_0b_truncated.png", "cells_1.png"]
    bad = rows.pop("cells_0b_truncated.png")
    assert bad["count"] == "" and bad["error"].startswith(f"Could not read {folder / 'cells_0b_truncated.png'}")
    for name, row in rows.items():
        assert row["error"] == "" and abs(int(row["count"]) - counts[name]) <= max(2, 0.15 * counts[name]), row
    said = capsys.readouterr().err
    assert "cells_0b_truncated.png failed: Could not read" in said
    assert "1 of 3 image(s) failed (see the error column); the others were counted." in said


def test_fail_fast_stops_at_the_bad_image(folder_with_a_truncated_image, tmp_path_factory, capsys):
    folder, _ = folder_with_a_truncated_image
    out = tmp_path_factory.mktemp("out") / "counts.csv"
    assert main(["count", str(folder), "--csv", str(out), "--fail-fast"]) == 2
    assert [row["image"].rsplit("/", 1)[-1] for row in csv.DictReader(open(out, newline=""))] == ["cells_0.png"]
    assert "cells_0b_truncated.png as an image" in capsys.readouterr().err


@pytest.mark.parametrize("arguments, message", [
    (["--threshold-method", "manual"], "--threshold-method manual needs --threshold VALUE"),
    (["--threshold-method", "manual", "--threshold", "1.5"], "--threshold 1.5 is not a probability"),
    (["--tile-size", "8"], "--tile-size 8 is too small"),
    (["--tile-size", "automatic"], "--tile-size automatic is too small or not a number; use auto"),
    (["--diameter", "-3"], "--diameter -3.0 must be a positive number"),
])
def test_impossible_settings_are_refused_before_any_image(image_folder, arguments, message, capsys):
    folder, _ = image_folder
    assert main(["count", str(folder), *arguments]) == 2
    assert message in capsys.readouterr().err
