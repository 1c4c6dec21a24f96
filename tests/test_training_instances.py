"""Instance targets: gaps between touching cells and BBBC005's derived instances (training/instances.py)."""

import csv
import shutil

import numpy as np
import pytest

from training.datasets import Sample, read_bbbc005
from training.instances import bbbc005_instances, read_instances, separate_touching


def test_touching_pixels_become_background_and_free_borders_stay():
    labels = np.zeros((6, 8), np.int32)
    labels[1:5, 1:4], labels[1:5, 4:7] = 1, 2  # two touching squares
    separated = separate_touching(labels)
    assert (separated[1:5, 3] == 0).all() and (separated[1:5, 4] == 0).all()
    assert (separated[1:5, 1:3] == 1).all() and (separated[1:5, 5:7] == 2).all()
    lonely = np.zeros((5, 5), np.int32)
    lonely[1:4, 1:4] = 3
    np.testing.assert_array_equal(separate_touching(lonely), lonely)


def test_diagonal_contact_is_separated():
    labels = np.zeros((4, 4), np.int32)
    labels[0:2, 0:2], labels[2:4, 2:4] = 1, 2
    separated = separate_touching(labels)
    assert separated[1, 1] == 0 and separated[2, 2] == 0 and separated[0, 0] == 1 and separated[3, 3] == 2


def test_other_sources_read_their_label_images(tmp_path):
    import tifffile

    labels = np.zeros((10, 10), np.uint16)
    labels[1:4, 1:4], labels[5:9, 5:9] = 4, 9
    tifffile.imwrite(tmp_path / "a.tif", labels)
    np.testing.assert_array_equal(read_instances(Sample("a", "dsb2018", None, tmp_path / "a.tif", 2)), labels)
    with pytest.raises(ValueError, match="no mask"):
        read_instances(Sample("b", "dsb2018", None, None, 2))


@pytest.mark.data
def test_bbbc005_instances_match_the_counts_in_the_file_names(shared_data):
    root = shared_data / "bbbc005"
    with open(root / "labels.csv", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["blur"] == "1" and row["site"] == "7"]
    errors = {"1": [], "2": []}
    for row in rows:
        found = len(np.unique(bbbc005_instances(root / "masks" / row["mask_filename"]))) - 1
        errors[row["stain"]].append(abs(found - int(row["count"])) / int(row["count"]))
    assert len(errors["1"]) == len(errors["2"]) == 24
    assert np.mean(errors["1"]) < 0.005 and np.mean(errors["2"]) < 0.01
    # the masks' connected parts alone merge touching nuclei: the derived instances must do much better
    from skimage.measure import label

    merged = [abs(label(np.asarray(bbbc005_instances(root / "masks" / r["mask_filename"]) > 0)).max()
                  - int(r["count"])) / int(r["count"]) for r in rows if r["stain"] == "1"]
    assert np.mean(merged) > 0.05


@pytest.mark.data
def test_bbbc005_cells_cover_their_mask_and_keep_each_nucleus(shared_data):
    sample = next(s for s in read_bbbc005(shared_data / "bbbc005")
                  if s.meta["count"] == 48 and s.meta["stain"] == 2 and s.meta["blur"] == 48)
    from cellcount_core.images.image_io import read_image

    cells = read_instances(sample)
    mask = read_image(sample.target_path) > 0
    np.testing.assert_array_equal(cells > 0, mask)
    nuclei = bbbc005_instances(sample.target_path.with_name(sample.target_path.name.replace("_w2", "_w1")))
    for index in np.unique(nuclei[mask & (nuclei > 0)]):
        assert len(np.unique(cells[(nuclei == index) & mask])) == 1  # a nucleus never straddles two cells


@pytest.mark.data
def test_bbbc005_cells_need_their_image(tmp_path, shared_data):
    root = shared_data / "bbbc005" / "masks"
    (tmp_path / "masks").mkdir()
    for stain in ("w1", "w2"):
        name = f"SIMCEPImages_A05_C18_F1_s01_{stain}.png"
        shutil.copy(root / name, tmp_path / "masks" / name)
    with pytest.raises(FileNotFoundError, match="needs its in-focus image"):
        bbbc005_instances(tmp_path / "masks" / "SIMCEPImages_A05_C18_F1_s01_w2.png")
    assert bbbc005_instances(tmp_path / "masks" / "SIMCEPImages_A05_C18_F1_s01_w1.png").max() > 0
    with pytest.raises(ValueError, match="not a BBBC005 mask"):
        bbbc005_instances(tmp_path / "masks" / "cells.png")
