"""Networks: shapes, size divisors, parameter counts, blocks and the registry."""

import pytest
import torch

from cellcount_core.models.networks import available_architectures, create_model
from cellcount_core.models.networks.blocks import ConvBlock, EncoderDecoder, ResidualUnit, norm_layer

SEGMENTERS = ["dcc_unet", "unet", "small_unet", "resunet", "c_resunet"]
# Small variants so the forward tests run in well under a second each.
SMALL = {"dcc_unet": {"base_filters": 8}, "unet": {"base_filters": 8}, "small_unet": {"base_filters": 8},
         "resunet": {"base_filters": 8}, "c_resunet": {"base_filters": 8}, "density_counter": {"base_filters": 8}}


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_registry_lists_every_architecture():
    assert available_architectures() == sorted(SEGMENTERS + ["dcc_counter", "density_counter"])


def test_unknown_architecture_lists_available():
    with pytest.raises(ValueError, match="Unknown architecture 'vgg'.*c_resunet.*unet"):
        create_model("vgg")


def test_unknown_parameter_names_it_and_accepted_ones():
    with pytest.raises(ValueError, match="does not take parameter\\(s\\) filters.*base_filters"):
        create_model("unet", filters=8)


@pytest.mark.parametrize("name", SEGMENTERS)
def test_segmenter_returns_logits_of_input_size(name):
    torch.manual_seed(0)
    model = create_model(name, **SMALL[name]).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 1, 64, 48))
    assert out.shape == (2, 1, 64, 48)
    assert out.dtype == torch.float32
    # logits: the last layer is the 1x1 convolution head, no sigmoid after it
    assert isinstance(model.head, torch.nn.Conv2d) and model.head.out_channels == 1


@pytest.mark.parametrize("name, divisor", [("dcc_unet", 8), ("unet", 16), ("small_unet", 8), ("resunet", 8),
                                           ("c_resunet", 8), ("density_counter", 8), ("dcc_counter", 4)])
def test_size_divisor_at_defaults(name, divisor):
    params = {"input_size": (16, 16)} if name == "dcc_counter" else SMALL[name]
    assert create_model(name, **params).size_divisor == divisor


@pytest.mark.parametrize("name, depth", [("unet", 2), ("unet", 5), ("resunet", 2), ("c_resunet", 4)])
def test_size_divisor_follows_depth(name, depth):
    model = create_model(name, base_filters=4, depth=depth).eval()
    assert model.size_divisor == 2 ** depth
    side = 2 ** depth
    with torch.no_grad():
        assert model(torch.rand(1, 1, side, 2 * side)).shape == (1, 1, side, 2 * side)


def test_indivisible_input_raises_clear_error():
    model = create_model("resunet", base_filters=4).eval()
    with pytest.raises(ValueError, match="divisible by 8"):
        model(torch.rand(1, 1, 60, 64))


def test_c_resunet_takes_rgb():
    model = create_model("c_resunet", in_channels=3, base_filters=4).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 32, 32)).shape == (1, 1, 32, 32)


def test_parameter_counts_match_papers():
    # Ronneberger's U-Net (1 in, 1 out, same padding, no normalization) has 31,030,593 parameters.
    assert n_params(create_model("unet", norm="none")) == 31_030_593
    # Morelli et al.: c-ResUnet ~1.7 M parameters, far fewer than U-Net.
    c_resunet = n_params(create_model("c_resunet"))
    assert 1.6e6 < c_resunet < 1.8e6
    assert c_resunet < n_params(create_model("unet")) / 10
    assert n_params(create_model("small_unet")) < n_params(create_model("unet")) / 5


def test_dcc_unet_filters_and_group_norm():
    model = create_model("dcc_unet")
    convs = [m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert sorted(set(convs)) == [64, 128, 256]
    assert any(isinstance(m, torch.nn.GroupNorm) for m in model.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


def test_dcc_counter_counts_and_parameters():
    # conv 1->32 (320) + conv 32->64 (18,496) + dense 64*8*8 -> 512 (2,097,664) + dense 512 -> 1 (513)
    model = create_model("dcc_counter", input_size=(32, 32)).eval()
    assert model.input_size == (32, 32)
    assert n_params(model) == 320 + 18_496 + 2_097_664 + 513
    with torch.no_grad():
        assert model(torch.rand(3, 1, 32, 32)).shape == (3,)


def test_dcc_counter_rejects_other_sizes():
    model = create_model("dcc_counter", input_size=[32, 32])
    with pytest.raises(ValueError, match="expects N x C x 32 x 32.*resize"):
        model(torch.rand(1, 1, 64, 64))


def test_density_counter_is_non_negative_and_fully_convolutional():
    torch.manual_seed(0)
    model = create_model("density_counter", **SMALL["density_counter"]).eval()
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    with torch.no_grad():
        density = model(torch.randn(2, 1, 32, 64) * 10)
    assert density.shape == (2, 1, 32, 64)
    assert (density >= 0).all()


def test_norm_layer_choices_and_errors():
    assert isinstance(norm_layer("batch", 16), torch.nn.BatchNorm2d)
    assert isinstance(norm_layer("group", 16, 4), torch.nn.GroupNorm)
    assert isinstance(norm_layer("none", 16), torch.nn.Identity)
    with pytest.raises(ValueError, match="groups=3 does not divide 16"):
        norm_layer("group", 16, 3)
    with pytest.raises(ValueError, match="Unknown norm 'layer'"):
        norm_layer("layer", 16)


def test_residual_unit_adds_shortcut():
    unit = ResidualUnit(4, 8, stride=2, norm="none").eval()
    x = torch.rand(1, 4, 16, 16)
    with torch.no_grad():
        unit.residual[-1].weight.zero_()
        unit.residual[-1].bias.zero_()
        assert torch.allclose(unit(x), unit.shortcut(x))
    assert unit(x).shape == (1, 8, 8, 8)
    assert isinstance(ResidualUnit(8, 8).shortcut, torch.nn.Identity)


def test_conv_block_is_two_convolutions_with_norm_and_relu():
    block = ConvBlock(1, 4, norm="batch")
    kinds = [type(m).__name__ for m in block]
    assert kinds == ["Conv2d", "BatchNorm2d", "ReLU"] * 2
    assert block[0].bias is None  # the norm's shift replaces the bias


def test_encoder_decoder_requires_matching_stages():
    with pytest.raises(ValueError, match="2 encoder stages but 1 decoder"):
        EncoderDecoder([torch.nn.Identity(), torch.nn.Identity()], torch.nn.Identity(), [torch.nn.Identity()],
                       torch.nn.Identity())


@pytest.mark.parametrize("bad", [{"base_filters": 0}, {"depth": 0}, {"norm": "instance"}])
def test_bad_parameters_raise(bad):
    with pytest.raises(ValueError):
        create_model("unet", **bad)
