"""``cellcount count``: the CSV it writes, its optional outputs, and its errors."""

import csv

import imageio.v3 as iio
import pytest

from cellcount_cellprofiler.cli import main
from cellcount_core.synthetic import synthetic_cells


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


def test_count_names_a_missing_input(tmp_path, capsys):
    assert main(["count", str(tmp_path / "nowhere.png")]) == 2
    assert "nowhere.png does not exist" in capsys.readouterr().err


def test_count_names_an_unreadable_image(tmp_path, capsys):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    assert main(["count", str(broken)]) == 2
    assert "broken.png" in capsys.readouterr().err


def test_count_names_an_unknown_model(image_folder, capsys):
    folder, _ = image_folder
    assert main(["count", str(folder), "--model", "no-such-model"]) == 2
    assert "no-such-model" in capsys.readouterr().err
