"""Residual U-Nets: ResUnet (Zhang, Liu & Wang 2018) and c-ResUnet (Morelli et al., Sci Rep 2021).

Both return logits N x 1 x H x W and have ``size_divisor = 2 ** depth``.
"""

from __future__ import annotations

from functools import partial

from torch import nn

from .blocks import DecoderStage, EncoderDecoder, ResidualUnit, conv, filter_levels


def build_resunet(in_channels: int, base_filters: int, depth: int, *, norm: str = "batch", groups: int = 8,
                  color_to_gray: bool = False, deep_kernel_size: int = 3, extra_deep_unit: bool = False,
                  upsample: str = "bilinear") -> EncoderDecoder:
    """Assemble a ResUnet from :class:`ResidualUnit` blocks.

    Encoder: a first unit without pre-activation, then ``depth - 1`` units that halve the resolution with a
    stride-2 convolution; bridge: one more stride-2 unit (2x the filters), optionally followed by an extra
    unit; decoder: up-sampling + skip concatenation + a residual unit per level; head: 1x1 convolution.

    Parameters
    ----------
    in_channels, base_filters, depth : int
        Input channels, filters of the first level (doubling per level), number of down-samplings.
    norm, groups
        See :func:`cellcount_core.models.networks.blocks.norm_layer`.
    color_to_gray : bool
        Start with a learned 1x1 convolution from ``in_channels`` to one channel (c-ResUnet).
    deep_kernel_size : int
        Kernel size of the bridge's units.
    extra_deep_unit : bool
        Add a second residual unit at the deepest level, after the stride-2 one (c-ResUnet).
    upsample : {"bilinear", "transpose"}
        Decoder up-sampling, see :class:`DecoderStage`.
    """
    levels = filter_levels(base_filters, depth)
    unit = partial(ResidualUnit, norm=norm, groups=groups)
    first = unit(1 if color_to_gray else in_channels, levels[0], preactivate=False)
    encoder = [nn.Sequential(conv(in_channels, 1, 1), first) if color_to_gray else first]
    encoder += [unit(cin, cout, stride=2) for cin, cout in zip(levels, levels[1:])]
    deepest = 2 * levels[-1]
    bridge_units = [unit(levels[-1], deepest, stride=2, kernel_size=deep_kernel_size)]
    if extra_deep_unit:
        bridge_units.append(unit(deepest, deepest, kernel_size=deep_kernel_size))
    deeper = [deepest, *levels[:0:-1]]
    decoder = [DecoderStage(cin, cout, cout, unit, upsample) for cin, cout in zip(deeper, levels[::-1])]
    return EncoderDecoder(encoder, nn.Sequential(*bridge_units), decoder, conv(levels[0], 1, 1))


def resunet(in_channels: int = 1, base_filters: int = 64, depth: int = 3, norm: str = "batch",
            groups: int = 8) -> EncoderDecoder:
    """Deep residual U-Net of Zhang, Liu & Wang (2018), 64/128/256 filters and a 512-filter bridge by default.

    Pre-activation residual units, stride-2 down-sampling inside the units, bilinear up-sampling.
    """
    return build_resunet(in_channels, base_filters, depth, norm=norm, groups=groups)


def c_resunet(in_channels: int = 1, base_filters: int = 16, depth: int = 3, norm: str = "batch",
              groups: int = 8) -> EncoderDecoder:
    """c-ResUnet of Morelli et al. (Sci Rep 2021): ResUnet plus a learned colour-to-gray 1x1 convolution.

    As in the authors' code: 16/32/64 filters, the deepest level (128 filters) uses 5x5 convolutions and is
    followed by an extra 5x5 residual unit at the end of the encoder, and the decoder up-samples with 2x2
    transposed convolutions; about 1.7 M parameters at the defaults. Use ``in_channels=3`` for RGB input.
    """
    return build_resunet(in_channels, base_filters, depth, norm=norm, groups=groups, color_to_gray=True,
                         deep_kernel_size=5, extra_deep_unit=True, upsample="transpose")
