"""c-ResUnet weight maps, losses and counting targets against hand computations."""

import math

import numpy as np
import pytest
import torch

from training.counter import density_target
from training.losses import count_loss, density_loss, segmentation_loss, soft_dice_loss, weighted_bce
from training.weight_maps import weight_map


def _discs(centers, radius=8, shape=(64, 96)):
    rows, cols = np.mgrid[:shape[0], :shape[1]]
    labels = np.zeros(shape, np.int32)
    for index, (r, c) in enumerate(centers, start=1):
        labels[(rows - r) ** 2 + (cols - c) ** 2 <= radius**2] = index
    return labels


def test_class_weights_and_a_single_border_contribution():
    labels = np.zeros((40, 40), np.int32)
    labels[10:20, 10:20] = 1
    weights = weight_map(labels, w0=5.0, sigma=3.0)
    assert weights[15, 15] == 1.0  # inside a cell
    assert weights[0, 39] == 1.5  # background more than 4 sigma away
    assert weights[15, 22] == pytest.approx(1.5 + 5 * math.exp(-9 / 18), rel=1e-6)  # 3 px right of the cell


def test_the_gap_between_close_cells_weighs_most():
    pair = weight_map(_discs([(32, 30), (32, 50)]))  # borders 4 px apart at row 32
    alone = weight_map(_discs([(32, 30)]))
    gap = pair[32, 40]
    assert gap > pair[0, 0] == pytest.approx(1.5)
    assert gap == pytest.approx(1.5 + 2 * (alone[32, 40] - 1.5), rel=1e-6)  # contributions add up
    assert gap == pair.max()


def test_weighted_bce_matches_a_hand_computation():
    logits = torch.tensor([0.0, 2.0]).reshape(1, 1, 1, 2)
    target = torch.tensor([1.0, 0.0]).reshape(1, 1, 1, 2)
    weight = torch.tensor([1.0, 1.5]).reshape(1, 1, 1, 2)
    expected = (math.log(2) + 1.5 * math.log(1 + math.exp(2))) / 2
    assert weighted_bce(logits, target, weight).item() == pytest.approx(expected, rel=1e-6)
    assert weighted_bce(logits, target).item() == pytest.approx((math.log(2) + math.log(1 + math.exp(2))) / 2)


def test_soft_dice_and_the_combined_loss():
    logits = torch.tensor([0.0, 0.0]).reshape(1, 1, 1, 2)  # probabilities 0.5, 0.5
    target = torch.tensor([1.0, 0.0]).reshape(1, 1, 1, 2)
    dice = (2 * 0.5 + 1) / (1.0 + 1.0 + 1)
    assert soft_dice_loss(logits, target).item() == pytest.approx(1 - dice)
    batch = {"mask": target, "weight": torch.ones_like(target)}
    combined = segmentation_loss(logits, batch, dice_weight=0.5).item()
    assert combined == pytest.approx(math.log(2) + 0.5 * (1 - dice), rel=1e-6)


def test_density_targets_sum_to_the_count():
    labels = _discs([(20, 20), (20, 60)])
    density = density_target(labels)
    assert density.sum() == pytest.approx(2.0, rel=1e-5)
    assert density[labels == 1].sum() == pytest.approx(1.0, rel=1e-5)
    merged = (labels > 0).astype(np.int32)  # two touching cells under one label, count known to be 5
    assert density_target(merged, count=5).sum() == pytest.approx(5.0, rel=1e-5)


def test_counting_losses():
    target = torch.zeros(1, 1, 2, 2)
    target[0, 0, 0, 0] = 1.0
    density = torch.full((1, 1, 2, 2), 0.5)
    pixel = ((50 - 100) ** 2 + 3 * 50**2) / 4
    assert density_loss(density, target).item() == pytest.approx(pixel + abs(2.0 - 1.0) / 2.0)
    assert count_loss(torch.tensor([3.0, 10.0]), torch.tensor([4.0, 9.0])).item() == pytest.approx((1 / 5 + 1 / 10) / 2)
