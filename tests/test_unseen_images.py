"""The bundled models on images unlike their training data: real images resized, and fields without cells."""

import json

import numpy as np
import pytest
from tifffile import imread

from training.evaluate import Models
from training.robustness import background_crops, empty_fields, empty_rows, main, resize_pair, scale_rows

pytestmark = [pytest.mark.data, pytest.mark.slow]

STARDIST_NUCLEI = 125
NORMALIZATION = (1.0, 99.8, 40)  # the bundled cards' percentiles and noise floor


@pytest.fixture(scope="module")
def stardist(shared_data):
    from cellcount_core.images.image_io import read_image

    folder = shared_data / "stardist_example"
    return read_image(folder / "img2d.tif"), read_image(folder / "mask2d.tif")


@pytest.fixture(scope="module")
def dsb_validation(shared_data):
    from training.threshold_tuning import select_samples

    return select_samples("dsb2018", shared_data / "dsb2018_fluo", "val", limit=12)


@pytest.fixture(scope="module")
def dark_field(dsb_validation):
    """The largest background crop of the DSB2018 validation images: 242 px of scattered photons."""
    crops = [image for kind, image in empty_fields(dsb_validation, side=128) if kind == "background"]
    return max(crops, key=lambda crop: crop.shape[0])


def test_stardist_example_counts_hold_from_half_to_four_times_the_size(stardist):
    from cellcount_core.running.inference import predict_count_at_cell_scale
    from cellcount_core.objects.segmentation import segment_image

    image, labels = stardist
    counts, regression = {}, {}
    for factor in (0.5, 1.0, 2.0, 3.0, 4.0):
        resized, _ = resize_pair(image, labels, factor)
        counts[factor] = segment_image(resized, device="CPU").count
        regression[factor] = predict_count_at_cell_scale(resized, device="CPU")[0]
    for factor in counts:
        # before scale handling: 112, 111, 179, 816, 2786 objects; segmenter v4 (2026-12-02): 113, 121, 122,
        # 118, 118. Issue 11 asks for 5 % from x1 to x4; half the size (nuclei of 10 px) loses merged pairs.
        assert counts[factor] == pytest.approx(STARDIST_NUCLEI, rel=0.12 if factor < 1 else 0.07), counts
        if factor >= 1:
            assert counts[factor] == pytest.approx(counts[1.0], rel=0.06), counts
        # the counter with its mirrored border (2026-12-03): 120.8, 119.5, 119.5, 123.9, 123.9 (v5: 110-116)
        assert regression[factor] == pytest.approx(STARDIST_NUCLEI, rel=0.07), regression


@pytest.mark.parametrize("relative_path, truth, factor", [
    # 68 nuclei of ~12 px: the coarsest probe saw two clusters as cells of 130 px
    ("dsb2018_fluo/images/f4c4db3df4ff0de90f44b027fc2e28c16bf7e5c75ea75b0a9762bbb7ac86e7a3.png", 68, 1.0),
    # 87 blurred, crowded cells of ~55 px, seen as clumps of 150 px by the probes
    ("bbbc005/images/SIMCEPImages_P21_C87_F48_s08_w2.TIF", 87, 1.0),
    # reduced x0.5, nuclei of 4-6 px: enlarged x2 they stay about as many (1.1 and 1.56 times), not fragments;
    # the counter enlarges such small cells itself and counts the second one poorly (10.3)
    ("dsb2018_fluo/images/f4c4db3df4ff0de90f44b027fc2e28c16bf7e5c75ea75b0a9762bbb7ac86e7a3.png", 68, 0.5),
    ("dsb2018_fluo/images/68f833de9f8c631cedd7031b8ed9b908c42cbbc1e14254722728a8b7d596fd4c.png", 32, 0.5),
])
def test_clusters_seen_by_the_probes_do_not_shrink_the_image(shared_data, relative_path, truth, factor):
    from cellcount_core.images.image_io import read_image
    from cellcount_core.objects.segmentation import segment_image
    from cellcount_core.running.inference import predict_count_at_cell_scale

    image, _ = resize_pair(read_image(shared_data / relative_path), np.zeros((1, 1), np.int32), factor)
    result = segment_image(image, device="CPU")
    count, scale = predict_count_at_cell_scale(image, device="CPU")
    # before the cover and cell-count rules: shrunk about tenfold, 1 and 13 objects, regression counts 1.2 and 2.3
    assert result.scale_factor == 1.0 and scale.factor >= 1.0
    assert result.count > 0.5 * truth, result.count
    assert factor < 1.0 or count > 0.5 * truth, count


@pytest.mark.parametrize("name, truth", [("P22_C91_F48_s07_w1", 91), ("P24_C100_F48_s07_w1", 100)])
def test_the_counter_counts_blurred_crowded_nuclei_at_their_own_size(shared_data, name, truth):
    from cellcount_core.images.image_io import read_image
    from cellcount_core.running.inference import predict_count_at_cell_scale

    # the segmenter's probes measure these blurred nuclei at about 41 px, above its band (8-24 px), and it
    # takes its reduced pass; reduced to 15 px as well, the counter gave 60.6 and 61.8. Its own band reaches 48 px.
    image = read_image(shared_data / f"bbbc005/images/SIMCEPImages_{name}.TIF")
    count, scale = predict_count_at_cell_scale(image, device="CPU")
    assert scale.factor == 1.0 and scale.diameter > 24.0, scale
    assert count == pytest.approx(truth, rel=0.1)


def test_specks_of_photon_noise_are_no_cells_but_tiny_nuclei_are(shared_data, dark_field):
    from cellcount_core.images.image_io import read_image
    from cellcount_core.objects.segmentation import segment_image

    # 329 specks before
    # segmenter v4 alone: 2 blobs of 5-7 px, wider than specks; the field as a whole is featureless
    assert segment_image(dark_field, device="CPU").count == 0
    # a dark crop of scattered photons beside part of an unlabelled nucleus: the specks go, the nucleus stays
    name = "40b00d701695d8ea5d59f95ac39e18004040c96d17fbc1a539317c674eca084b"
    image = read_image(shared_data / f"dsb2018_fluo/images/{name}.png")
    labels = imread(shared_data / f"dsb2018_fluo/labels/{name}.tif")
    beside = next(background_crops(image, labels))
    # 451 specks before; the nucleus cut by the crop's edge comes out in pieces (4 unmirrored, 7 since the
    # segmenter sees the image mirrored beyond its borders, docs/RESULTS.md "Mirrored image borders")
    assert 1 <= segment_image(beside, device="CPU").count <= 8
    name = "3852c7e45bd885b9537e276861ab50b99bb42f0f8e717d2f88174c62862ca3ff"
    nuclei = read_image(shared_data / f"dsb2018_fluo/images/{name}.png")
    reduced, _ = resize_pair(nuclei, np.zeros(nuclei.shape[:2], np.int32), 0.5)  # nuclei of about 5 px
    assert segment_image(reduced, device="CPU").count > 0.65 * 56  # segmenter v3: 40, v4: 39


def test_a_dark_background_is_not_taken_for_a_few_large_cells(shared_data):
    from cellcount_core.images.image_io import read_image
    from cellcount_core.objects.segmentation import segment_image
    from cellcount_core.running.inference import predict_count_at_cell_scale

    name = "f4c4db3df4ff0de90f44b027fc2e28c16bf7e5c75ea75b0a9762bbb7ac86e7a3"
    image = read_image(shared_data / f"dsb2018_fluo/images/{name}.png")
    labels = imread(shared_data / f"dsb2018_fluo/labels/{name}.tif")
    dark = next(background_crops(image, labels))  # 602 px, grey levels 0-7
    # its photon specks multiply when enlarged, as fragments of large cells do: 3 objects before the field test
    assert segment_image(dark, device="CPU").count == 0
    assert predict_count_at_cell_scale(dark, device="CPU")[0] <= 1.0


def test_no_real_image_is_a_featureless_field_even_reduced_four_times(dsb_validation):
    from cellcount_core.images.normalization import median_3x3, percentile_range
    from cellcount_core.running.empty_fields import feature_level
    from training.datasets import read_image

    # how far the brightest 3 x 3 median rises above the low percentile, in featureless levels: 2.25 and up on
    # all 444 DSB2018 images at x1, x0.5 and x0.25 (BBBC005: 3.4 and up); dark photon fields stay below 1
    for sample in dsb_validation:
        for factor in (1.0, 0.5, 0.25):
            image, _ = resize_pair(read_image(sample.image_path), np.zeros((1, 1), np.int32), factor)
            gray, level = feature_level(image, NORMALIZATION)
            lo, _ = percentile_range(gray, 1.0, 99.8)
            assert median_3x3(gray).max() - lo > 1.5 * (level - lo), (sample.id, factor)


def test_the_counter_counts_nothing_in_a_dark_field_of_scattered_photons(dark_field):
    from cellcount_core.running.inference import predict_count_at_cell_scale

    assert predict_count_at_cell_scale(dark_field, device="CPU")[0] == 0.0  # 14.3 before the guard


@pytest.mark.parametrize("top, left, side, factor", [(0, 0, 96, 5), (100, 350, 100, 5), (0, 106, 64, 5),
                                                     (37, 106, 80, 4)])
def test_a_few_nuclei_enlarged_four_or_five_times_are_not_cut_into_pieces(stardist, top, left, side, factor):
    from cellcount_core.objects.segmentation import segment_image
    from cellcount_core.running.inference import predict_count_at_cell_scale

    image, labels = stardist
    crop, crop_labels = image[top:top + side, left:left + side], labels[top:top + side, left:left + side]
    enlarged, _ = resize_pair(crop, crop_labels, factor)  # 2-4 nuclei of about 80-100 px
    present = np.unique(crop_labels[crop_labels > 0])
    mostly_inside = sum((crop_labels == i).sum() >= 0.5 * (labels == i).sum() for i in present)
    # 113 to 786 segmenter objects and regression counts of 5.8 to 296 before the enlarged check and the 32-px probes
    objects = segment_image(enlarged, device="CPU").count
    count = predict_count_at_cell_scale(enlarged, device="CPU")[0]
    own_size_count = predict_count_at_cell_scale(crop, device="CPU")[0]
    assert mostly_inside - 1 <= objects <= len(present) + 1, (objects, mostly_inside, len(present))
    # enlarged, the counter counts what it counts at the crop's own size; counter v7 counts the first crop's 4
    # nuclei as 5.7 at its own size too (its error on 78 such crops: docs/RESULTS.md, "A few large nuclei")
    assert abs(count - own_size_count) <= 1.0, (count, own_size_count)
    assert mostly_inside - 1.5 <= count <= len(present) + 2.0, (count, mostly_inside, len(present))


def test_the_counter_counts_dim_nuclei_in_a_field_under_the_featureless_level(stardist):
    from cellcount_core.running.empty_fields import is_featureless_field
    from cellcount_core.running.inference import predict_count_at_cell_scale

    image, labels = stardist
    dim = image[200:280, 200:280]  # 7 dim nuclei (1 whole): 19 noise sd above the background, the level is 24
    assert is_featureless_field(dim, NORMALIZATION) and len(np.unique(labels[200:280, 200:280])) - 1 == 7
    assert predict_count_at_cell_scale(dim, device="CPU")[0] > 1.5  # 2.0; 0 when the level alone decided


def test_the_counter_counts_nuclei_reduced_to_half_their_size(dsb_validation):
    from cellcount_core.running.inference import predict_count_at_cell_scale
    from training.datasets import read_image, read_labels

    errors, enlarged = [], 0
    for sample in dsb_validation:
        labels = read_labels(sample.target_path)
        truth = len(np.unique(labels)) - 1
        image, _ = resize_pair(read_image(sample.image_path), labels, 0.5)
        count, scale = predict_count_at_cell_scale(image, device="CPU")
        errors.append(abs(count - truth) / truth)
        enlarged += scale.factor > 1.0
    # the counter at the image's size measured 29.3 % on these images at x0.5, enlarged (10 of 12) 13.4 %
    assert enlarged >= len(dsb_validation) // 2
    assert np.mean(errors) < 0.22, errors


def test_dsb2018_detections_hold_when_enlarged(dsb_validation):
    from training.evaluate import summarize

    models = Models(segmenter="default", counter=None, baselines=(), device="CPU")
    models.load_cards()
    rows = scale_rows(dsb_validation, models, scales=(1.0, 2.0, 4.0), progress=False)
    f1 = {float(row["scale"]): row["f1"] for row in summarize(rows, models.method_names(), group="scale")}
    assert f1[1.0] > 0.8
    for factor in (2.0, 4.0):
        assert f1[factor] == pytest.approx(f1[1.0], abs=0.05), f1


def test_empty_fields_count_next_to_nothing(dsb_validation):
    models = Models(segmenter="default", counter="default", baselines=(), device="CPU")
    models.load_cards()
    fields = empty_fields(dsb_validation, side=128)
    kinds = {kind for kind, _ in fields}
    assert {"noise", "constant", "background", "out of focus", "smoothed float"} <= kinds
    rows = empty_rows(fields, models, progress=False)
    recorded = [row for row in rows if row["kind"] != "smoothed float"]  # noise-free floats: a known limit
    # one crop of sparse photon noise (values 0-13, 242 px) gave the segmenter 329 specks before SPECK_RATIO
    for method in models.method_names():
        counts = [row[f"{method}_count"] for row in recorded]
        assert np.mean(counts) <= 1.0, (method, counts)  # noise alone gave 374 objects before the noise floor
    noise_counts = [row[f"{models.method_names()[0]}_count"] for row in rows if row["kind"] == "noise"]
    assert max(noise_counts) == 0


def test_robustness_runs_the_counter_alone_with_segmenter_none(shared_data, tiny_counter, tmp_path):
    main(["--data", str(shared_data / "dsb2018_fluo"), "--segmenter", "none", "--counter", str(tiny_counter),
          "--baselines", "--limit", "1", "--scales", "1", "--device", "CPU", "--out", str(tmp_path)])
    summary = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    assert [row["method"] for row in summary["by_scale"]] == ["count:tiny-counter"]
    assert set(summary["empty_fields"][0]) == {"kind", "fields", "count:tiny-counter"}
