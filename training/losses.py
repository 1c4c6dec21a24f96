"""Training losses for segmentation (weighted BCE, soft Dice) and counting (density maps, count regression)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def weighted_bce(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of the per-pixel binary cross-entropy times its weight (c-ResUnet's loss).

    Parameters
    ----------
    logits, target : Tensor
        N x 1 x H x W network logits and 0/1 targets.
    weight : Tensor, optional
        N x 1 x H x W pixel weights (see :func:`training.weight_maps.weight_map`); all ones when None.
    """
    loss = F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")
    if weight is not None:
        loss = loss * weight
    return loss.mean()


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None,
                   eps: float = 1.0) -> torch.Tensor:
    """One minus the soft Dice coefficient per image, averaged over the batch.

    ``valid`` (N x 1 x H x W, 0/1) excludes pixels such as crop padding.
    """
    prob = torch.sigmoid(logits.float())
    target = target.float()
    if valid is not None:
        prob, target = prob * valid, target * valid
    dims = tuple(range(1, prob.ndim))
    inter = (prob * target).sum(dims)
    dice = (2 * inter + eps) / (prob.sum(dims) + target.sum(dims) + eps)
    return (1 - dice).mean()


def segmentation_loss(logits: torch.Tensor, batch: dict, dice_weight: float = 0.0) -> torch.Tensor:
    """Weighted BCE plus ``dice_weight`` times the soft Dice loss, for a batch from the segmentation dataset."""
    loss = weighted_bce(logits, batch["mask"], batch["weight"])
    if dice_weight:
        loss = loss + dice_weight * soft_dice_loss(logits, batch["mask"], (batch["weight"] > 0).float())
    return loss


def density_loss(density: torch.Tensor, target: torch.Tensor, scale: float = 100.0,
                 count_weight: float = 1.0) -> torch.Tensor:
    """Pixel MSE between scaled density maps plus the relative error of their sums (the counts).

    Parameters
    ----------
    density, target : Tensor
        N x 1 x H x W predicted and true densities (each sums to its image's count).
    scale : float
        Multiplies both maps before the MSE, so that per-pixel densities (about 1/cell area) give useful
        gradients.
    count_weight : float
        Weight of ``|sum(density) - sum(target)| / (sum(target) + 1)``.
    """
    density, target = density.float(), target.float()
    pixel = F.mse_loss(density * scale, target * scale)
    predicted, true = density.sum(dim=(1, 2, 3)), target.sum(dim=(1, 2, 3))
    return pixel + count_weight * ((predicted - true).abs() / (true + 1.0)).mean()


def count_loss(predicted: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Relative L1 error of counts, ``|p - t| / (t + 1)``, for regressors that output one count per image."""
    predicted, true = predicted.float().reshape(-1), true.float().reshape(-1)
    return ((predicted - true).abs() / (true + 1.0)).mean()
