"""Device-side augmentation: packed images, warps, intensity changes, negatives and the crops they make."""

import numpy as np
import pytest
import torch

from cellcount_core.images.normalization import CLIP_RANGE
from cellcount_core.images.normalization import normalize_percentile as numpy_normalize
from training.batches import TensorBatches, random_dihedral
from training.crops import Record
from training.device_crops import CropSettings, DeviceCrops, background_windows
from training.instances import contact_band, separate_touching
from training.packed import level_for_scale, pack, sample
from training.photometric import (Photometric, contrast_brightness, gamma, gaussian_blur, noise, normalize_percentile,
                                  random_debris, smooth_field, specks, texture)
from training.warps import area_factor, mirrored_into, source_coordinates

NO_PHOTOMETRIC = Photometric(texture_p=0, gamma_p=0, gradient_p=0, debris_p=0, blur_p=0, brightness=0, contrast=0,
                             noise_p=0)


def _generator(seed=0):
    return torch.Generator().manual_seed(seed)


def _disk(shape, centre, radius):
    rows, cols = np.mgrid[:shape[0], :shape[1]]
    return ((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2).astype(np.float32)


def _crop(stack, scale, size, centre, dihedral=0):
    """One crop of image 0 of ``stack`` centred at ``centre`` (original pixels) with zoom ``scale``."""
    scale = torch.tensor([float(scale)])
    y, x = source_coordinates(torch.tensor([centre[0]]), torch.tensor([centre[1]]), scale, torch.tensor([dihedral]),
                              size)
    return sample(stack, torch.tensor([0]), level_for_scale(scale), y, x), area_factor(y, x)


def test_packed_images_of_different_sizes_read_back_exactly_and_zero_outside():
    first, second = np.arange(12, dtype=np.float32).reshape(3, 4), np.arange(30, dtype=np.float32).reshape(5, 6)
    stack = pack([first, second], torch.float32)
    rows, cols = torch.meshgrid(torch.arange(-1, 6.0), torch.arange(-1, 7.0), indexing="ij")
    values = sample(stack, torch.tensor([0, 1]), torch.tensor([0, 0]), rows.expand(2, -1, -1), cols.expand(2, -1, -1))
    np.testing.assert_array_equal(values[1, 0, 1:6, 1:7], second)
    np.testing.assert_array_equal(values[0, 0, 1:4, 1:5], first)
    assert values[0, 0, 5, 6] == 0 and values[0, 0, 0, 0] == 0 and values[1, 0, 0, 3] == 0
    far = sample(stack, torch.tensor([0]), torch.tensor([0]), torch.tensor([[[-9.0, 40.0, 1.5]]]),
                 torch.tensor([[[1.0, 2.0, 3.5]]]))
    assert far[0, 0, 0, :2].tolist() == [0, 0] and float(far[0, 0, 0, 2]) == pytest.approx(first[1:3, 3].mean() / 2)
    halves = sample(stack, torch.tensor([1]), torch.tensor([1]), torch.tensor([[[0.5]]]), torch.tensor([[[0.5]]]))
    assert stack.heights[:, 1].tolist() == [5, 3, 2] and float(halves) == second[:2, :2].mean()


def test_max_channels_keep_thin_lines_in_the_coarser_levels():
    line = np.zeros((8, 8), np.float32)
    line[:, 3] = 1.0  # a one-pixel line, as the gap between two touching cells
    stack = pack([np.stack([line, line])], torch.float32, max_channels=(1,))
    rows, cols = torch.meshgrid(torch.arange(0, 8.0, 4), torch.arange(0, 8.0, 4), indexing="ij")
    quarter = sample(stack, torch.tensor([0]), torch.tensor([2]), rows[None] + 1.5, cols[None] + 1.5)[0]
    assert quarter[0].tolist() == [[0.25, 0.0], [0.25, 0.0]]  # averaged: a quarter of each 4 x 4 block
    assert quarter[1].tolist() == [[1.0, 0.0], [1.0, 0.0]]    # block maxima: the line is still there


def test_the_eight_flips_and_rotations_are_those_of_numpy():
    image = np.random.default_rng(0).random((6, 6)).astype(np.float32)
    stack = pack([image], torch.float32)
    crops = {tuple(_crop(stack, 1, 6, (2.5, 2.5), code)[0][0, 0].flatten().tolist()) for code in range(8)}
    expected = {tuple(np.ascontiguousarray(f(np.rot90(image, k))).flatten().tolist())
                for k in range(4) for f in (lambda a: a, np.fliplr)}
    assert crops == expected


@pytest.mark.parametrize("scale", [0.25, 0.5, 2.0, 3.0])
def test_zoom_changes_object_sizes_by_the_factor(scale):
    radius = 16 if scale < 1 else 5
    disk = _disk((96, 96), (48, 48), radius)
    mask, factor = _crop(pack([disk]), scale, 64, (48, 48))
    area = float((mask > 0.5).sum())
    assert area == pytest.approx(disk.sum() * scale**2, rel=0.12)
    assert float(factor.mean()) == pytest.approx(1 / scale**2, rel=1e-4)


@pytest.mark.parametrize("scale", [0.25, 0.4, 1.0, 2.5, 4.0])
def test_resampled_density_keeps_its_mass(scale):
    density = _disk((64, 64), (30, 33), 6)
    density /= density.sum()  # one cell of unit mass
    values, factor = _crop(pack([density], torch.float32), scale, 96, (31.5, 31.5))
    assert float((values * factor).sum()) == pytest.approx(1.0, abs=0.02)


def _cells(seed, shape=(40, 48), cells=4):
    """Normalized image of ``cells`` disks away from the border, with mask, weight and unit-mass density targets."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.int32)
    for number in range(1, cells + 1):
        centre = rng.uniform(10, np.array(shape) - 10)
        labels[_disk(shape, centre, rng.uniform(3, 5)) > 0] = number
    areas = np.bincount(labels.ravel())
    density = np.where(labels > 0, 1.0 / areas[labels], 0).astype(np.float32)
    targets = {"mask": (labels > 0).astype(np.uint8), "weight": 1.0 + (labels > 0), "density": density}
    return Record(f"cells{seed}", (labels > 0).astype(np.float16), targets)


SEGMENTER_TARGETS = ({"mask": "binary", "weight": "smooth"}, {"mask": 0.0, "weight": 1.5})


def test_crops_keep_image_and_mask_aligned_under_flips_zoom_and_elastic():
    settings = CropSettings(crop_size=32, scale_p=1.0, scale_range=(0.7, 1.5), elastic_p=1.0, elastic=1.5,
                        elastic_spacing=8, negative_p=0.0)
    crops = DeviceCrops([_cells(0), _cells(1)], *SEGMENTER_TARGETS, batch_size=8, settings=settings,
                        photometric=NO_PHOTOMETRIC, crops_per_image=8)
    for batch in crops.epoch(0):
        assert batch["image"].shape == batch["mask"].shape == batch["weight"].shape == (8, 1, 32, 32)
        assert torch.mean(((batch["image"] > 0.5) == (batch["mask"] > 0)).float()) > 0.97
        assert set(batch["mask"].unique().tolist()) <= {0.0, 1.0}


def _touching_pair(shape=(64, 96)):
    """A record of two disks touching along a chord, with the gap `separate_touching` cuts and its band."""
    labels = np.zeros(shape, np.int32)
    labels[_disk(shape, (32, 33), 15) > 0] = 1
    labels[(_disk(shape, (32, 62), 15) > 0) & (labels == 0)] = 2
    targets = {"mask": (separate_touching(labels) > 0).astype(np.uint8), "weight": np.ones(shape, np.float32),
               "gaps": contact_band(labels).astype(np.uint8)}
    return Record("pair", (labels > 0).astype(np.float16), targets)


def _zoomed_masks(record, targets, scale, crops=16):
    settings = CropSettings(crop_size=128, scale_p=1.0, scale_range=(scale, scale), elastic_p=0.0, negative_p=0.0)
    crops = DeviceCrops([record], targets, {"mask": 0.0, "weight": 1.5}, batch_size=crops,
                        settings=settings, photometric=NO_PHOTOMETRIC, crops_per_image=crops)
    return next(iter(crops.epoch(0)))["mask"][:, 0].numpy()


@pytest.mark.parametrize("scale", [1.5, 1.0, 0.8, 0.7, 0.5, 0.35, 0.25])
def test_touching_cells_stay_apart_in_zoomed_out_crops(scale):
    from scipy import ndimage

    record = _touching_pair()
    assert ndimage.label(record.targets["mask"])[1] == 2 and record.targets["gaps"].sum() > 0
    with_gaps = _zoomed_masks(record, {"mask": "binary", "weight": "smooth", "gaps": "gaps"}, scale)
    assert [ndimage.label(mask)[1] for mask in with_gaps] == [2] * len(with_gaps)  # 4-connected parts
    assert with_gaps.sum() == pytest.approx(len(with_gaps) * record.targets["mask"].sum() * scale**2, rel=0.25)
    without = _zoomed_masks(record, {"mask": "binary", "weight": "smooth"}, scale)
    if scale == 1.0:
        np.testing.assert_array_equal(with_gaps, without)  # at the original size the gap target changes nothing
    if scale <= 0.35:  # what the gap target prevents: averaged masks close the gap
        assert all(ndimage.label(mask)[1] == 1 for mask in without)


def test_density_crops_keep_the_count_at_any_zoom():
    settings = CropSettings(crop_size=96, scale_p=1.0, scale_range=(0.25, 2.0), elastic_p=1.0, elastic=1.0,
                        negative_p=0.0)
    records = [_cells(seed) for seed in range(3)]
    crops = DeviceCrops(records, {"density": "mass"}, {"density": 0.0}, batch_size=6, settings=settings,
                        photometric=NO_PHOTOMETRIC, crops_per_image=4, target_dtype=torch.float32)
    for batch in crops.epoch(0):  # a 96 px crop at zoom <= 2 holds the whole 40 x 48 image
        np.testing.assert_allclose(batch["density"].sum(dim=(1, 2, 3)), 4.0, rtol=0.03)


def test_negative_crops_have_empty_targets_and_normalized_images():
    settings = CropSettings(crop_size=32, negative_p=1.0)
    records = [_cells(seed, (80, 80), 1) for seed in range(2)]  # room for real background windows
    crops = DeviceCrops(records, *SEGMENTER_TARGETS, batch_size=64, settings=settings, crops_per_image=32)
    assert len(crops.backgrounds) > 0
    batch = next(crops.epoch(0))
    assert torch.all(batch["mask"] == 0) and torch.all(batch["weight"] == 1.5)
    assert CLIP_RANGE[0] <= batch["image"].min() and batch["image"].max() <= CLIP_RANGE[1]
    flat = batch["image"].flatten(1)
    assert (flat.std(dim=1) == 0).any() and (flat.std(dim=1) > 0.1).any()  # constant crops, textured ones


def test_background_windows_hold_no_foreground():
    foreground = _disk((60, 60), (20, 20), 8) > 0
    centres = background_windows(foreground, 16, 5, np.random.default_rng(0), margin=2)
    assert len(centres) == 5
    grown = np.pad(foreground, 2)
    for row, col in centres:
        top, left = int(row - 7.5), int(col - 7.5)
        assert not grown[top:top + 20, left:left + 20].any()


def test_mirrored_coordinates_reflect_as_numpy_pads():
    window = np.arange(5.0) - 2  # five pixels centred on 0: width 4
    mirrored = mirrored_into(torch.arange(-12.0, 13.0), torch.tensor(0.0), 4.0)
    np.testing.assert_array_equal(mirrored.numpy(), np.pad(window, 10, mode="reflect"))


def test_background_crops_are_their_window_mirrored_at_its_own_pixel_size():
    settings = CropSettings(crop_size=32, negative_p=1.0, negative_kinds=("background",), elastic_p=0.0)
    records = [_cells(seed, (80, 80), 1) for seed in range(2)]
    levels = np.random.default_rng(0).integers(0, 4, (80, 80)) / 8  # quantized camera noise: 4 grey levels
    for record in records:
        record.image[:] = np.where(record.image > 0, 1.0, levels)
    crops = DeviceCrops(records, *SEGMENTER_TARGETS, batch_size=16, settings=settings, photometric=NO_PHOTOMETRIC,
                        crops_per_image=8)
    for image in next(crops.epoch(0))["image"]:  # read at the image's pixels, not between them (a zoom would)
        assert 2 <= len(torch.unique(image)) <= 4


def test_negative_crops_are_of_the_kinds_asked_for():
    settings = CropSettings(crop_size=32, negative_p=1.0, negative_kinds=("constant",))
    crops = DeviceCrops([_cells(0)], *SEGMENTER_TARGETS, batch_size=16, settings=settings, photometric=NO_PHOTOMETRIC,
                        crops_per_image=16)
    assert torch.all(next(crops.epoch(0))["image"].flatten(1).std(dim=1) == 0)
    with pytest.raises(ValueError, match="name one or more of"):
        CropSettings(negative_kinds=("blank",))


def test_crops_are_reproducible_from_the_seed_and_differ_between_epochs():
    def first_batch(seed, epoch):
        crops = DeviceCrops([_cells(0), _cells(1)], *SEGMENTER_TARGETS, batch_size=4,
                            settings=CropSettings(crop_size=32), crops_per_image=2, seed=seed, repeats={"cells1": 3})
        assert len(crops.order) == (1 + 3) * 2
        return next(crops.epoch(epoch))

    same, again = first_batch(3, 0), first_batch(3, 0)
    for key in same:
        torch.testing.assert_close(same[key], again[key])
    assert not torch.equal(first_batch(3, 1)["image"], same["image"])
    assert not torch.equal(first_batch(4, 0)["image"], same["image"])


def test_intensity_functions_do_what_they_say():
    images = torch.full((2, 1, 16, 16), 0.5)
    assert torch.allclose(gamma(images, torch.tensor([2.0, 1.0])), torch.tensor([0.25, 0.5]).view(2, 1, 1, 1))
    changed = contrast_brightness(torch.tensor([0.0, 1.0]).view(1, 1, 1, 2), torch.tensor([2.0]), torch.tensor([0.1]))
    assert torch.allclose(changed.flatten(), torch.tensor([-0.4, 1.6]))
    grain = smooth_field(2, (16, 16), 4, _generator(), "cpu")
    assert torch.allclose(grain.flatten(1).std(dim=1), torch.ones(2))
    assert torch.equal(texture(images, grain, torch.zeros(2)), images)
    speckled = specks(torch.zeros(1, 1, 16, 16), torch.tensor([[[4.0, 9.0]]]), torch.tensor([[0.7]]),
                      torch.tensor([[1.0]]))
    assert speckled[0, 0, 4, 9] == pytest.approx(1.0) and speckled[0, 0, 12, 2] < 1e-6


def test_blur_keeps_the_mean_and_noise_has_the_variance_it_says():
    images = torch.rand(2, 1, 32, 32, generator=_generator())
    blurred = gaussian_blur(images, torch.tensor([0.0, 2.0]))
    torch.testing.assert_close(blurred[0], images[0])
    assert blurred[1].std() < 0.5 * images[1].std() and float(blurred[1].mean()) == pytest.approx(float(images[1].mean()), abs=0.01)
    flat = torch.full((1, 1, 256, 256), 0.5)
    noisy = noise(flat, torch.tensor([0.1]), torch.tensor([0.02]), _generator())
    assert float((noisy - flat).var()) == pytest.approx(0.1**2 + 0.02 * 0.5, rel=0.05)


def test_crop_normalization_matches_the_inference_normalization():
    image = np.random.default_rng(2).gamma(2.0, 10.0, (48, 40)).astype(np.float32)
    normalized = normalize_percentile(torch.from_numpy(image)[None, None])
    np.testing.assert_allclose(normalized[0, 0].numpy(), numpy_normalize(image, 1.0, 99.8), atol=1e-4)
    assert torch.all(normalize_percentile(torch.full((1, 1, 8, 8), 3.0)) == 0)


def test_the_noise_floor_keeps_an_empty_crop_dim_as_inference_keeps_an_empty_field():
    from cellcount_core.images.normalization import floor_range_on_noise, noise_sigma, percentile_range

    empty = np.random.default_rng(3).normal(100.0, 2.0, (64, 64)).astype(np.float32)
    lo, hi = floor_range_on_noise(*percentile_range(empty, 1.0, 99.8), noise_sigma(empty), 40.0)
    floored = normalize_percentile(torch.from_numpy(empty)[None, None], min_range_over_noise=40.0)[0, 0].numpy()
    np.testing.assert_allclose(floored, np.clip((empty - lo) / (hi - lo), *CLIP_RANGE), atol=0.01)
    assert floored.max() < 0.25  # without the floor: stretched to 1
    cells = torch.from_numpy(_cells(0).image.astype(np.float32))[None, None]
    torch.testing.assert_close(normalize_percentile(cells, min_range_over_noise=40.0), normalize_percentile(cells))


def test_photometric_changes_the_image_reproducibly():
    images = torch.from_numpy(_cells(0).image.astype(np.float32))[None, None].repeat(4, 1, 1, 1)
    everything = Photometric(texture_p=1, gamma_p=1, gradient_p=1, debris_p=1, blur_p=1, noise_p=1)
    first, second = everything(images, _generator(1)), everything(images, _generator(1))
    torch.testing.assert_close(first, second)
    assert first.shape == images.shape and not torch.allclose(first, images)
    torch.testing.assert_close(NO_PHOTOMETRIC(images, _generator(1)), images)


def test_tensor_batches_turn_square_images_by_one_of_the_eight_symmetries():
    image = torch.arange(9.0).view(1, 1, 3, 3).repeat(16, 1, 1, 1)
    turned = random_dihedral(image, _generator())
    allowed = {tuple(np.ascontiguousarray(f(np.rot90(image[0, 0].numpy(), k))).flatten()) for k in range(4)
               for f in (lambda a: a, np.fliplr)}
    assert {tuple(t.flatten().tolist()) for t in turned[:, 0]} <= allowed
    batches = TensorBatches({"image": image, "count": torch.arange(16.0)}, 5, dihedral=("image",))
    seen = torch.cat([batch["count"] for batch in batches.epoch(0, rank=1, world=2)])
    assert batches.steps(2) == 2 and len(seen) == 8 and len(set(seen.tolist())) == 8



def test_debris_goes_only_where_asked_and_stays_small():
    images = torch.zeros(2, 1, 32, 32)
    speckled = random_debris(images, torch.tensor([True, False]), 6, _generator(3))
    assert torch.equal(speckled[1], images[1]) and speckled[0].abs().max() > 0.2
    assert float((speckled[0].abs() > 0.1).sum()) <= 6 * 16  # above 0.1 within 2.23 px of a centre: <= 16 pixels
