"""cellcount compare: agreement numbers with known answers, column detection, and the report it writes."""

import csv
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cellcount_cellprofiler.agreement import agreement
from cellcount_cellprofiler.cli import main
from cellcount_cellprofiler.comparison_tables import (CLASSICAL, DEEP, REGRESSION, Method, find_methods,
                                                      read_exports, truth_from_csv)

# Four images: classical, deep-object and regression counts, and the truth. Deep - classical = 2, -1, 3, 0:
# mean 1, sample SD sqrt(10 / 3), MAE 1.5; limits of agreement 1 -+ 1.96 sqrt(10 / 3).
CLASSICAL_COUNTS = (10, 20, 30, 40)
DEEP_COUNTS = (12, 19, 33, 40)
REGRESSION_COUNTS = (11.5, 20.5, 29.0, 41.0)
TRUE_COUNTS = (11, 20, 31, 40)
SD = math.sqrt(10 / 3)


def write_table(path, rows, delimiter=","):
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)


def points(rng, n, size):
    return rng.uniform(5, size - 5, (n, 2))


@pytest.fixture(scope="module")
def comparison_run(tmp_path_factory):
    """An ExportToSpreadsheet output folder of a comparison run over four small images, with the images."""
    import imageio.v3 as iio

    folder = tmp_path_factory.mktemp("run")
    rng = np.random.default_rng(0)
    images, classical, deep = [], [], []
    for number, counts in enumerate(zip(CLASSICAL_COUNTS, DEEP_COUNTS, REGRESSION_COUNTS), start=1):
        name = f"site{number}_dna.png"
        iio.imwrite(folder / name, rng.integers(0, 4000, (96, 128), dtype=np.uint16))
        images.append({"ImageNumber": number, "FileName_DNA": name, "PathName_DNA": str(folder),
                       "FileName_Actin": f"site{number}_actin.png", "PathName_Actin": str(folder),
                       "Count_Nuclei": counts[0], "Count_DeepNuclei": counts[1], "DeepCount_Nuclei": counts[2],
                       "Count_Cells": counts[0], "Metadata_TrueCount": TRUE_COUNTS[number - 1]})
        for table, n in ((classical, counts[0]), (deep, counts[1])):
            table += [{"ImageNumber": number, "ObjectNumber": k + 1, "Location_Center_X": x,
                       "Location_Center_Y": y} for k, (x, y) in enumerate(points(rng, n, 96))]
    write_table(folder / "Image.csv", images)
    write_table(folder / "Nuclei.csv", classical)
    write_table(folder / "DeepNuclei.csv", deep)
    return folder


def test_agreement_known_answer():
    result = agreement(CLASSICAL_COUNTS, DEEP_COUNTS)
    assert result.n == 4
    assert result.mean_difference == pytest.approx(1.0)
    assert result.sd_difference == pytest.approx(SD)
    assert result.mae == pytest.approx(1.5)
    assert (result.lower_limit, result.upper_limit) == pytest.approx((1 - 1.96 * SD, 1 + 1.96 * SD))
    assert result.correlation == pytest.approx(np.corrcoef(CLASSICAL_COUNTS, DEEP_COUNTS)[0, 1])


def test_agreement_uses_only_images_counted_by_both():
    result = agreement([10, math.nan, 30], [12, 5, math.nan])
    assert (result.n, result.mean_difference, result.sd_difference, result.mae) == (1, 2.0, 0.0, 2.0)
    with pytest.raises(ValueError, match="no image has counts from both"):
        agreement([math.nan], [1])


def test_count_columns_are_found_in_pairs():
    columns = ["ImageNumber", "Count_Cells", "Count_Nuclei", "Count_DeepNuclei", "DeepCount_Nuclei", "Count_PH3",
               "DeepCount_PH3"]
    assert find_methods(columns) == {
        "Nuclei": [Method(CLASSICAL, "Count_Nuclei", "Nuclei"), Method(DEEP, "Count_DeepNuclei", "DeepNuclei"),
                   Method(REGRESSION, "DeepCount_Nuclei")],
        "PH3": [Method(CLASSICAL, "Count_PH3", "PH3"), Method(REGRESSION, "DeepCount_PH3")],
    }


def test_named_count_columns_are_used_and_checked():
    columns = ["Count_Nuclei", "Count_Deep", "Count_Cells"]
    assert find_methods(columns, classical="Count_Cells", deep="Count_Deep") == {
        "Cells": [Method(CLASSICAL, "Count_Cells", "Cells"), Method(DEEP, "Count_Deep", "Deep")]}
    with pytest.raises(ValueError, match="no column Count_Absent. Count columns: Count_Nuclei, Count_Deep"):
        find_methods(columns, deep="Count_Absent")
    with pytest.raises(ValueError, match="No pair of count columns.*Count columns: Count_Nuclei, Count_Deep"):
        find_methods(columns)


def test_image_table_prefix_and_tab_delimiter_are_found(tmp_path):
    write_table(tmp_path / "Image.csv", [{"ImageNumber": 1, "Count_Nuclei": 3}])
    write_table(tmp_path / "DeepCompare_Image.csv", [{"ImageNumber": 1, "Count_Nuclei": 3, "Count_DeepNuclei": 4}],
                delimiter="\t")
    exports = read_exports(tmp_path)
    assert exports.prefix == "DeepCompare_"
    assert exports.values("Count_DeepNuclei") == [4.0]


def test_truth_table_matches_file_names_with_or_without_extension(tmp_path):
    write_table(tmp_path / "truth.csv", [{"image": "a.png", "true_count": 5}, {"image": "b", "true_count": 7}])
    values = truth_from_csv(tmp_path / "truth.csv", ["a.png", "b.tif", "c.png"])
    assert values[:2] == [5.0, 7.0] and math.isnan(values[2])
    with pytest.raises(ValueError, match="No image of the run is named in"):
        truth_from_csv(tmp_path / "truth.csv", ["x.png"])


def test_report_from_a_comparison_run(comparison_run, tmp_path, capsys):
    truth = tmp_path / "truth.csv"
    write_table(truth, [{"image": f"site{n}_dna.png", "true_count": c} for n, c in enumerate(TRUE_COUNTS, start=1)])
    assert main(["compare", str(comparison_run), "--report", str(tmp_path / "report"), "--truth", str(truth),
                 "--overlays", "2"]) == 0
    said = capsys.readouterr().out
    assert (f"Nuclei: {DEEP} - {CLASSICAL}: mean difference +1.00, MAE 1.50, limits of agreement "
            f"{1 - 1.96 * SD:+.1f} to {1 + 1.96 * SD:+.1f} (4 images)") in said
    assert f"Nuclei: {DEEP} against the truth: MAE 1.00, MPE {100 * np.mean([1/11, -1/20, 2/31, 0]):+.1f} %" in said
    report = tmp_path / "report"
    page = (report / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 6  # scatter, 2 Bland-Altman, truth, 2 overlays
    assert "site3_dna.png" in page and "<th>true count</th>" in page
    overlays = sorted(path.name for path in report.glob("overlay_*.png"))
    assert overlays == ["overlay_Nuclei_01_site3_dna.png", "overlay_Nuclei_02_site1_dna.png"]  # worst first
    with open(report / "counts.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["image"], row["Count_DeepNuclei"], row["true_count"]) for row in rows][2] == ("site3_dna.png",
                                                                                               "33", "31")


def test_report_with_a_truth_column_and_images_that_moved(comparison_run, tmp_path):
    rows = list(csv.DictReader(open(comparison_run / "Image.csv", newline="")))
    for row in rows:
        row["PathName_DNA"] = str(tmp_path / "elsewhere")
    write_table(tmp_path / "Image.csv", rows)
    for name in ("Nuclei.csv", "DeepNuclei.csv"):
        (tmp_path / name).write_bytes((comparison_run / name).read_bytes())
    assert main(["compare", str(tmp_path), "--truth-column", "Metadata_TrueCount", "--overlays", "1"]) == 0
    page = (tmp_path / "comparison" / "report.html").read_text()
    assert "Errors against the true counts" in page
    assert f"Image site3_dna.png was not found at {tmp_path / 'elsewhere'}; not drawn." in page
    assert not list((tmp_path / "comparison").glob("overlay_*"))


def test_one_method_is_compared_with_the_truth(comparison_run, tmp_path, capsys):
    assert main(["compare", str(comparison_run), "--deep", "Count_DeepNuclei", "--report", str(tmp_path),
                 "--overlays", "1"]) == 2
    assert "Name two count columns to compare" in capsys.readouterr().err
    assert main(["compare", str(comparison_run), "--deep", "Count_DeepNuclei", "--truth-column",
                 "Metadata_TrueCount", "--report", str(tmp_path), "--overlays", "1"]) == 0
    assert f"Nuclei: {DEEP} against the truth: MAE 1.00" in capsys.readouterr().out
    assert [path.name for path in tmp_path.glob("overlay_*")] == ["overlay_Nuclei_01_site3_dna.png"]


def test_compare_names_what_is_missing(tmp_path, capsys):
    assert main(["compare", str(tmp_path)]) == 2
    assert f"{tmp_path} holds no Image.csv" in capsys.readouterr().err


# ---------------------------------------------------------------- end to end: swap --compare, run, compare

@pytest.mark.cellprofiler
@pytest.mark.slow
def test_swap_compare_run_and_report(cellprofiler, tmp_path):
    """The user's path: swap --compare a classical pipeline, run it headless, then compare its output."""
    from cellcount_cellprofiler.demo import write_synthetic_images
    from cellcount_cellprofiler.pipeline_builder import classical_module, export_module, input_modules, pipeline_text
    from cellcount_cellprofiler.plugin_folder import plugins_dir

    cellcount = str(Path(sys.executable).with_name("cellcount"))
    classical = tmp_path / "classical.cppipe"
    classical.write_text(pipeline_text(input_modules() + [classical_module(), export_module()]))
    swap = subprocess.run([cellcount, "swap", str(classical), str(tmp_path / "compare.cppipe"), "--compare"],
                          capture_output=True, text=True)
    assert swap.returncode == 0, swap.stderr
    images = tmp_path / "images"
    true_counts = write_synthetic_images(images)
    run = subprocess.run([sys.executable, "-m", "cellprofiler", "-c", "-r", "-p", str(tmp_path / "compare.cppipe"),
                          "-i", str(images), "-o", str(tmp_path / "out"), "--plugins-directory", str(plugins_dir())],
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0 and (tmp_path / "out" / "Image.csv").exists(), run.stderr[-3000:]
    truth = tmp_path / "truth.csv"
    write_table(truth, [{"image": name, "true_count": count} for name, count in true_counts.items()])
    compare = subprocess.run([cellcount, "compare", str(tmp_path / "out"), "--truth", str(truth)],
                             capture_output=True, text=True)
    assert compare.returncode == 0, compare.stderr
    assert f"Nuclei: {DEEP} - {CLASSICAL}: mean difference" in compare.stdout
    assert f"Nuclei: {REGRESSION} against the truth: MAE" in compare.stdout
    report = tmp_path / "out" / "comparison"
    assert len(list(report.glob("overlay_Nuclei_*.png"))) == 4
    assert (report / "report.html").read_text().count("data:image/png;base64,") == 8
