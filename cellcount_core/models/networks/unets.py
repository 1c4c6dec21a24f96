"""U-Net segmenters: DeepCellCount's light U-Net, Ronneberger's U-Net and the c-ResUnet paper's small U-Net.

All return logits N x 1 x H x W and have ``size_divisor = 2 ** depth``.
"""

from __future__ import annotations

from functools import partial

from torch import nn

from .blocks import ConvBlock, DecoderStage, EncoderDecoder, conv, filter_levels


def build_unet(in_channels: int, channels: list[int], bridge_channels: int, *, out_channels: int = 1,
               bridge_kernel_size: int = 3, norm: str = "batch", groups: int = 8,
               upsample: str = "transpose") -> EncoderDecoder:
    """Assemble a U-Net from :class:`ConvBlock` levels with 2x2 max-pooling between them.

    Parameters
    ----------
    in_channels : int
        Input channels.
    channels : list of int
        Filters of each encoder level, from full resolution down (the decoder mirrors them).
    bridge_channels : int
        Filters of the bottom level (below the last pooling).
    out_channels : int
        Output maps of the 1x1 head.
    bridge_kernel_size : int
        Kernel size of the bottom level's convolutions.
    norm, groups
        See :func:`cellcount_core.models.networks.blocks.norm_layer`.
    upsample : {"transpose", "bilinear"}
        Decoder up-sampling, see :class:`DecoderStage`.
    """
    block = partial(ConvBlock, norm=norm, groups=groups)
    inputs = [in_channels, *channels[:-1]]
    encoder = [block(inputs[0], channels[0])]
    encoder += [nn.Sequential(nn.MaxPool2d(2), block(cin, cout)) for cin, cout in zip(inputs[1:], channels[1:])]
    bridge = nn.Sequential(nn.MaxPool2d(2), ConvBlock(channels[-1], bridge_channels, kernel_size=bridge_kernel_size,
                                                      norm=norm, groups=groups))
    deeper = [bridge_channels, *channels[:0:-1]]
    decoder = [DecoderStage(cin, cout, cout, block, upsample) for cin, cout in zip(deeper, channels[::-1])]
    return EncoderDecoder(encoder, bridge, decoder, conv(channels[0], out_channels, 1))


def dcc_unet(in_channels: int = 1, base_filters: int = 64, groups: int = 8, norm: str = "group") -> EncoderDecoder:
    """DeepCellCount's light U-Net (VISAPP 2025).

    Three encoder levels (64/128/256 filters at the default ``base_filters``) each followed by max-pooling, a
    bottom level with as many filters as the last encoder level, and three decoder levels of bilinear
    up-sampling + skip concatenation + two 3x3 conv-GroupNorm-ReLU. ``size_divisor`` is 8.
    """
    levels = filter_levels(base_filters, 3)
    return build_unet(in_channels, levels, levels[-1], norm=norm, groups=groups, upsample="bilinear")


def unet(in_channels: int = 1, base_filters: int = 64, depth: int = 4, norm: str = "batch",
         groups: int = 8) -> EncoderDecoder:
    """U-Net of Ronneberger, Fischer & Brox (2015) with 'same' padding.

    ``depth`` levels of two 3x3 convolutions (64..512 filters by default) with 2x2 max-pooling, a bottom level
    with twice the last level's filters (1024), and 2x2 transposed-convolution up-sampling. ``norm="none"``
    gives the original (no normalization, 31.0 M parameters at the defaults).
    """
    levels = filter_levels(base_filters, depth)
    return build_unet(in_channels, levels, 2 * levels[-1], norm=norm, groups=groups)


def small_unet(in_channels: int = 1, base_filters: int = 32, depth: int = 3, norm: str = "batch",
               groups: int = 8) -> EncoderDecoder:
    """The "small Unet" baseline of Morelli et al. (Sci Rep 2021).

    As in the authors' code: three poolings instead of four, 32 starting filters (32/64/128), and a bottom
    level of 256 filters with 5x5 convolutions; BatchNorm and transposed-convolution up-sampling.
    """
    levels = filter_levels(base_filters, depth)
    return build_unet(in_channels, levels, 2 * levels[-1], bridge_kernel_size=5, norm=norm, groups=groups)
