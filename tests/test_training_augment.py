"""Augmentations keep images and targets aligned (training/augment.py, training/crops.py)."""

import numpy as np

from training.augment import Augmenter, elastic_deform, flip_rotate, random_crop
from training.crops import CropDataset, Record, fixed_crops

GEOMETRY_ONLY = dict(brightness=0.0, contrast=0.0, gamma_p=0.0, noise_p=0.0, blur_p=0.0)


def _scene(shape=(64, 80)):
    """Asymmetric mask with its image (mask as 0/1 float) and weights that equal the mask + 1."""
    mask = np.zeros(shape, np.uint8)
    mask[5:20, 8:30] = 1
    mask[40:44, 50:75] = 1
    return mask.astype(np.float32), {"mask": mask, "weight": mask.astype(np.float32) + 1}


def test_flips_rotations_and_crops_move_image_and_targets_together():
    image, targets = _scene()
    rng = np.random.default_rng(0)
    for _ in range(16):
        out, moved = flip_rotate(*random_crop(image, targets, 48, rng), rng)
        assert out.shape == (48, 48)
        np.testing.assert_array_equal(out, moved["mask"])
        np.testing.assert_array_equal(moved["weight"], moved["mask"] + 1)


def test_elastic_deformation_keeps_alignment_and_mask_values():
    image, targets = _scene()
    out, moved = elastic_deform(image, targets, np.random.default_rng(1), alpha=40, sigma=5)
    assert moved["mask"].dtype == np.uint8 and set(np.unique(moved["mask"])) <= {0, 1}
    assert not np.array_equal(moved["mask"], targets["mask"])
    assert np.mean((out > 0.5) == moved["mask"].astype(bool)) > 0.98
    assert np.mean(np.abs(moved["weight"] - 1 - out)) < 0.02


def test_small_images_are_zero_padded_to_the_crop():
    image, targets = _scene((20, 30))
    out, moved = random_crop(image, targets, 32, np.random.default_rng(0))
    assert out.shape == moved["weight"].shape == (32, 32)
    assert np.all(moved["weight"][20:] == 0) and np.all(out[:, 30:] == 0)


def test_intensity_changes_touch_the_image_only():
    image, targets = _scene()
    augmenter = Augmenter(crop_size=None, flips=False, elastic_p=0.0, noise_p=1.0, blur_p=1.0)
    out, moved = augmenter(image, targets, np.random.default_rng(3))
    assert not np.allclose(out, image)
    np.testing.assert_array_equal(moved["mask"], targets["mask"])
    assert out.dtype == np.float32


def test_crop_dataset_is_reproducible_and_oversamples():
    image, targets = _scene()
    records = [Record("a", image.astype(np.float16), targets), Record("artifact", image.astype(np.float16), targets)]
    dataset = CropDataset(records, Augmenter(crop_size=32, elastic_p=1.0, **GEOMETRY_ONLY), crops_per_image=2,
                          repeats={"artifact": 3}, seed=5)
    assert len(dataset) == (1 + 3) * 2
    first = dataset[3]
    assert {key: tuple(value.shape) for key, value in first.items()} == {key: (1, 32, 32) for key in first}
    np.testing.assert_array_equal(dataset[3]["image"], first["image"])
    dataset.set_epoch(1)
    assert not np.array_equal(dataset[3]["mask"], first["mask"]) or not np.array_equal(
        dataset[3]["image"], first["image"])
    crops = fixed_crops(records, 48)
    assert crops["image"].shape == crops["mask"].shape == (2, 1, 48, 48)
