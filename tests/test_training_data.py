"""Training data readers and the deterministic train/validation split (training/datasets.py)."""

import csv

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from training.datasets import (Sample, parse_bbbc005_name, read_bbbc005, read_labelled_folder, read_labels,
                               read_pairs, read_source, split_of, split_samples, stable_fraction)


def test_bbbc005_name_gives_count_blur_site_stain():
    assert parse_bbbc005_name("SIMCEPImages_H12_C48_F23_s07_w2.TIF") == {
        "well": "H12", "count": 48, "blur": 23, "site": 7, "stain": 2}
    with pytest.raises(ValueError, match="not a BBBC005 file name"):
        parse_bbbc005_name("cells.tif")


def test_stable_fraction_is_the_sha256_prefix():
    assert stable_fraction("abc") == int("ba7816bf8f01cfea", 16) / 2**64


def test_split_is_deterministic_disjoint_and_follows_the_rules():
    samples = [Sample(f"img{i}", "dsb2018", None, None, None, {}) for i in range(400)]
    samples += [Sample(f"b{site}", "bbbc005", None, None, 1, {"site": site}) for site in range(1, 9)]
    train, validation = split_samples(samples)
    again = split_samples(list(reversed(samples)))
    assert {s.id for s in validation} == {s.id for s in again[1]}
    assert not {s.id for s in train} & {s.id for s in validation}
    assert len(train) + len(validation) == len(samples)
    assert {s.id for s in validation if s.source == "bbbc005"} == {"b7", "b8"}
    dsb_validation = [s for s in validation if s.source == "dsb2018"]
    assert 0.10 < len(dsb_validation) / 400 < 0.20
    assert all(stable_fraction(s.id) < 0.15 for s in dsb_validation)


def _write_pairs(root, n=3):
    (root / "images").mkdir()
    (root / "masks").mkdir()
    for i in range(n):
        labels = np.zeros((20, 30), np.uint16)
        labels[2:6, 2:6], labels[10:15, 20:25] = 1, 7
        iio.imwrite(root / "images" / f"im{i}.png", (labels > 0).astype(np.uint8) * 200)
        tifffile.imwrite(root / "masks" / f"im{i}.tif", labels)
    iio.imwrite(root / "images" / "orphan.png", np.zeros((5, 5), np.uint8))


def test_pairs_match_by_stem_and_binary_masks_become_labels(tmp_path):
    _write_pairs(tmp_path)
    samples = read_pairs(tmp_path / "images", tmp_path / "masks")
    assert [s.id for s in samples] == ["im0", "im1", "im2"]
    labels = read_labels(samples[0].target_path)
    assert sorted(np.unique(labels)) == [0, 1, 7]
    binary = tmp_path / "binary.png"
    iio.imwrite(binary, (labels > 0).astype(np.uint8) * 255)
    assert read_labels(binary).max() == 2
    assert read_source(f"pairs={tmp_path / 'images'}:{tmp_path / 'masks'}") == samples


def test_bad_sources_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="KIND=PATH|bbbc005=PATH"):
        read_source(str(tmp_path))
    with pytest.raises(ValueError, match="Unknown data source kind 'foo'"):
        read_source(f"foo={tmp_path}")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_bbbc005(tmp_path / "missing")


@pytest.mark.data
def test_bbbc005_reader_on_the_real_data(shared_data):
    samples = read_bbbc005(shared_data / "bbbc005")
    assert len(samples) == 1152
    with open(shared_data / "bbbc005" / "labels.csv", newline="") as handle:
        table = {row["filename"]: row for row in csv.DictReader(handle)}
    for sample in samples[::97]:
        row = table[sample.image_path.name]
        assert sample.count == int(row["count"]) and sample.meta["blur"] == int(row["blur"])
        assert sample.target_path.name == row["mask_filename"] and "_F1_" in sample.target_path.name
    blurred = next(s for s in samples if s.meta["blur"] == 48)
    assert blurred.target_path.is_file()
    train, validation = split_samples(samples)
    assert len(validation) == 288 and {s.meta["site"] for s in validation} == {7, 8}
    assert split_of(blurred) == ("validation" if blurred.meta["site"] in (7, 8) else "train")


@pytest.mark.data
def test_dsb2018_reader_on_the_real_data(shared_data):
    samples = read_labelled_folder(shared_data / "dsb2018_fluo")
    assert len(samples) == 444
    assert all(s.target_path is not None and s.count is not None for s in samples)
    sample = samples[0]
    assert len(np.unique(read_labels(sample.target_path))) - 1 == sample.count
    train, validation = split_samples(samples)
    assert 0.10 < len(validation) / len(samples) < 0.20
