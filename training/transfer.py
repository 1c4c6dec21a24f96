"""Start a network from another one's trained U-Net: a segmenter's layers for a density counter.

The bundled segmenter and counter share a U-Net body (``small_unet`` and ``density_counter`` at the same width and
depth differ only in the bridge's kernel size, 5 against 3), so the counter can begin with features that already
learnt nuclei under the training augmentation and learn only what turns them into a density.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cellcount_core.models.networks.blocks import EncoderDecoder


@dataclass
class TransferReport:
    """The target's tensors that were copied, and those cropped from the source's larger kernels."""

    copied: list[str]
    cropped: list[str]

    def summary(self) -> str:
        return (f"{len(self.copied)} tensors copied, {len(self.cropped)} cropped to their centre "
                f"({', '.join(self.cropped) or 'none'}); the output head starts new")


def unet_body(model: nn.Module) -> EncoderDecoder:
    """The :class:`EncoderDecoder` of a segmenter (the model itself) or a density counter (its ``body``)."""
    body = model if isinstance(model, EncoderDecoder) else getattr(model, "body", None)
    if not isinstance(body, EncoderDecoder):
        raise ValueError(f"{type(model).__name__} has no U-Net body to transfer; use a U-Net segmenter or a "
                         "density counter.")
    return body


def centre_crop_kernel(source: torch.Tensor, shape: torch.Size) -> torch.Tensor | None:
    """A larger convolution kernel's central part of ``shape`` (5x5 -> 3x3), or None if it does not fit."""
    if source.ndim != 4 or source.shape[:2] != shape[:2]:
        return None
    (height, width), (want_h, want_w) = source.shape[2:], shape[2:]
    if want_h > height or want_w > width or (height - want_h) % 2 or (width - want_w) % 2:
        return None
    top, left = (height - want_h) // 2, (width - want_w) // 2
    return source[:, :, top:top + want_h, left:left + want_w]


def transfer_unet(source: nn.Module, target: nn.Module) -> TransferReport:
    """Copy ``source``'s U-Net body into ``target``'s; the output head stays new.

    Every tensor below the head must have the same name and shape in both, or be a convolution kernel that the
    source has larger (its centre is taken); otherwise the networks differ and nothing is copied.
    """
    source_state = unet_body(source).state_dict()
    body = unet_body(target)
    state = body.state_dict()
    report = TransferReport([], [])
    for name, tensor in state.items():
        if name.startswith("head."):
            continue
        given = source_state.get(name)
        if given is not None and given.shape == tensor.shape:
            state[name] = given.clone()
            report.copied.append(name)
        elif given is not None and (centre := centre_crop_kernel(given, tensor.shape)) is not None:
            state[name] = centre.clone()
            report.cropped.append(name)
        else:
            found = "missing" if given is None else f"of shape {tuple(given.shape)}"
            raise ValueError(f"The networks differ at {name} (wanted {tuple(tensor.shape)}, the source's is {found}): "
                             "pass a model of the same width and depth.")
    body.load_state_dict(state)
    return report
