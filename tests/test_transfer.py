"""A segmenter's U-Net body copied into a density counter (``training.transfer``)."""

import pytest
import torch

from cellcount_core.models.networks import create_model
from training.transfer import centre_crop_kernel, transfer_unet


def test_the_body_is_copied_the_bridge_cropped_and_the_head_left_new():
    torch.manual_seed(0)
    segmenter = create_model("small_unet", base_filters=4, depth=2)
    counter = create_model("density_counter", base_filters=4, depth=2)
    head_before = counter.body.head.weight.clone()
    report = transfer_unet(segmenter, counter)
    assert not any(name.startswith("head.") for name in report.copied + report.cropped)
    assert report.cropped == ["bridge.1.0.weight", "bridge.1.3.weight"]
    source, body = segmenter.state_dict(), counter.body.state_dict()
    for name in report.copied:
        torch.testing.assert_close(body[name], source[name])
    torch.testing.assert_close(body["bridge.1.0.weight"], source["bridge.1.0.weight"][:, :, 1:4, 1:4])
    torch.testing.assert_close(counter.body.head.weight, head_before)
    # the copied encoder computes what the segmenter's does
    image = torch.randn(1, 1, 16, 16)
    segmenter.eval(), counter.eval()
    torch.testing.assert_close(counter.body.encoder[0](image), segmenter.encoder[0](image))


def test_a_network_of_another_width_is_refused():
    with pytest.raises(ValueError, match="networks differ at encoder.0.0.weight"):
        transfer_unet(create_model("small_unet", base_filters=8, depth=2),
                      create_model("density_counter", base_filters=4, depth=2))


def test_a_network_without_a_unet_is_refused():
    with pytest.raises(ValueError, match="no U-Net body"):
        transfer_unet(create_model("small_unet", base_filters=4, depth=2),
                      create_model("dcc_counter", input_size=(32, 32), dense_units=8))


@pytest.mark.parametrize("shape, fits", [((2, 3, 3, 3), True), ((2, 3, 4, 4), False), ((2, 3, 7, 7), False),
                                         ((3, 3, 3, 3), False)])
def test_only_a_larger_kernel_of_the_same_channels_gives_its_centre(shape, fits):
    kernel = torch.arange(2 * 3 * 25, dtype=torch.float32).reshape(2, 3, 5, 5)
    centre = centre_crop_kernel(kernel, torch.Size(shape))
    assert (centre is not None) == fits
    if fits:
        assert centre[0, 0].tolist() == [[6, 7, 8], [11, 12, 13], [16, 17, 18]]
