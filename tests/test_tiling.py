import numpy as np
import pytest

from cellcount_core.running.tiling import extract_tile, iter_tile_outputs, plan_tiles, stitch

SHAPES = [(1, 1), (50, 3), (64, 64), (65, 64), (256, 256), (257, 300), (1000, 700)]


def coverage(plan):
    counts = np.zeros(plan.image_shape, int)
    for tile in plan.tiles:
        counts[tile.dest] += 1
    return counts


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("tile_size, overlap, multiple", [(256, 32, 8), (64, 16, 16), (100, 0, 1)])
def test_kept_regions_partition_the_image(shape, tile_size, overlap, multiple):
    plan = plan_tiles(shape, tile_size, overlap, multiple)
    np.testing.assert_array_equal(coverage(plan), 1)
    tile_h, tile_w = plan.tile_shape
    assert tile_h % multiple == 0 and tile_w % multiple == 0
    assert tile_h <= tile_size and tile_w <= tile_size
    assert all(p % multiple == 0 and p >= s for p, s in zip(plan.padded_shape, shape))
    for tile in plan.tiles:
        assert tile.y % multiple == 0 and tile.x % multiple == 0
        assert tile.y + tile_h <= plan.padded_shape[0] and tile.x + tile_w <= plan.padded_shape[1]
        assert tile.dest[0].start == tile.y + tile.keep[0].start and tile.dest[1].start == tile.x + tile.keep[1].start


@pytest.mark.parametrize("shape", SHAPES)
def test_a_mirrored_border_keeps_the_partition_and_reaches_past_every_side(shape):
    plan = plan_tiles(shape, tile_size=64, overlap=16, multiple=8, border=8)
    np.testing.assert_array_equal(coverage(plan), 1)
    tile_h, tile_w = plan.tile_shape
    assert min(t.y for t in plan.tiles) == -8 and min(t.x for t in plan.tiles) == -8
    assert max(t.y for t in plan.tiles) + tile_h >= shape[0] + 8
    assert max(t.x for t in plan.tiles) + tile_w >= shape[1] + 8
    assert all((t.y + 8) % 8 == 0 and (t.x + 8) % 8 == 0 for t in plan.tiles)


def test_a_border_grows_the_tile_so_an_image_of_tile_size_keeps_one_tile():
    plan = plan_tiles((2048, 2048), tile_size=2048, overlap=128, multiple=8, border=8)
    assert plan.tile_shape == (2064, 2064) and len(plan.tiles) == 1 and not plan.contains(plan.tiles[0])


def test_last_tile_is_aligned_to_the_border_and_margins_are_half_the_overlap():
    plan = plan_tiles((1000, 700), tile_size=256, overlap=32, multiple=8)
    assert plan.padded_shape == (1000, 704)
    assert sorted({t.y for t in plan.tiles}) == [0, 224, 448, 672, 744]
    assert sorted({t.x for t in plan.tiles}) == [0, 224, 448]
    for tile in plan.tiles:
        rows, cols = tile.keep
        assert rows.start == 0 if tile.y == 0 else rows.start >= 16
        assert cols.start == 0 if tile.x == 0 else cols.start >= 16
        assert rows.stop == 256 if tile.y == 744 else rows.stop <= 256 - 16
        assert cols.stop == 252 if tile.x == 448 else cols.stop <= 256 - 16


def test_small_image_gets_one_tile_rounded_up_to_the_multiple():
    plan = plan_tiles((50, 3), tile_size=512, overlap=64, multiple=16)
    assert plan.tile_shape == (64, 16) and plan.padded_shape == (64, 16)
    assert len(plan.tiles) == 1
    assert plan.tiles[0].dest == (slice(0, 50), slice(0, 3))


def test_tile_size_is_rounded_down_to_the_multiple():
    assert plan_tiles((1000, 1000), tile_size=500, overlap=64, multiple=16).tile_shape == (496, 496)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(image_shape=(0, 5)), "no pixels"),
        (dict(image_shape=(100, 100), tile_size=4, multiple=8), "tile_size"),
        (dict(image_shape=(100, 100), overlap=-1), "overlap"),
        (dict(image_shape=(100, 100), tile_size=32, overlap=32), "overlap"),
        (dict(image_shape=(100, 100), multiple=0), "multiple"),
    ],
)
def test_inconsistent_plans_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        plan_tiles(**kwargs)


def test_extract_tile_reflects_beyond_the_border_like_numpy_pad():
    image = np.random.default_rng(0).random((2, 37, 21)).astype(np.float32)
    plan = plan_tiles(image.shape, tile_size=16, overlap=4, multiple=8)
    padded = np.pad(image, ((0, 0), (0, plan.padded_shape[0] - 37), (0, plan.padded_shape[1] - 21)), mode="reflect")
    for tile in plan.tiles:
        expected = padded[:, tile.y : tile.y + 16, tile.x : tile.x + 16]
        np.testing.assert_array_equal(extract_tile(image, plan, tile), expected)


def test_extract_tile_of_a_one_pixel_image_repeats_it():
    plan = plan_tiles((1, 1), tile_size=8, overlap=0, multiple=8)
    np.testing.assert_array_equal(extract_tile(np.full((1, 1, 1), 3.0), plan, plan.tiles[0]), np.full((1, 8, 8), 3.0))


def test_identity_stitches_back_the_image_in_bounded_batches():
    image = np.random.default_rng(2).random((1, 300, 257)).astype(np.float32)
    plan = plan_tiles(image.shape, tile_size=64, overlap=16, multiple=8)
    batch_sizes = []

    def first_channel(batch):
        batch_sizes.append(len(batch))
        return batch[:, :1].copy()

    np.testing.assert_array_equal(stitch(first_channel, image, plan, batch_size=3), image[0])
    assert max(batch_sizes) == 3 and sum(batch_sizes) == len(plan.tiles)


def test_iter_tile_outputs_checks_shapes():
    image = np.zeros((1, 40, 40), np.float32)
    plan = plan_tiles(image.shape, tile_size=32, overlap=8)
    with pytest.raises(ValueError, match="returned shape"):
        list(iter_tile_outputs(lambda batch: batch[:, :, :16], image, plan))
    with pytest.raises(ValueError, match="does not match the tile plan"):
        list(iter_tile_outputs(lambda batch: batch, np.zeros((1, 41, 40), np.float32), plan))
    with pytest.raises(ValueError, match="batch_size"):
        list(iter_tile_outputs(lambda batch: batch, image, plan, batch_size=0))


def small_bn_network(seed=0):
    """A BatchNorm encoder-decoder with one pooling (size divisor 2) and a receptive-field radius of 8 px."""
    torch = pytest.importorskip("torch")
    from torch import nn

    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Upsample(scale_factor=2),
        nn.Conv2d(8, 1, 3, padding=1),
    )
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return net.eval()


def network_fn(net):
    import torch

    def run(batch):
        with torch.inference_mode():
            return net(torch.from_numpy(batch)).numpy()

    return run


def whole_image_run(net, image, plan):
    pad = ((0, 0), (0, plan.padded_shape[0] - image.shape[1]), (0, plan.padded_shape[1] - image.shape[2]))
    padded = np.pad(image, pad, mode="reflect")
    return network_fn(net)(padded[None])[0, 0, : image.shape[1], : image.shape[2]]


def test_stitched_bn_network_equals_a_whole_image_run():
    net = small_bn_network()
    image = np.random.default_rng(3).random((1, 150, 133)).astype(np.float32)
    plan = plan_tiles(image.shape, tile_size=48, overlap=20, multiple=2)
    assert len(plan.tiles) > 9
    np.testing.assert_allclose(stitch(network_fn(net), image, plan), whole_image_run(net, image, plan), atol=1e-5)


def test_stitched_output_with_a_border_equals_a_run_on_the_mirrored_image():
    net = small_bn_network()
    image = np.random.default_rng(3).random((1, 150, 133)).astype(np.float32)
    plan = plan_tiles(image.shape, tile_size=48, overlap=20, multiple=2, border=6)
    after = (plan.padded_shape[0] - 150 - 6, plan.padded_shape[1] - 133 - 6)
    mirrored = np.pad(image, ((0, 0), (6, after[0]), (6, after[1])), mode="reflect")
    whole = network_fn(net)(mirrored[None])[0, 0, 6:156, 6:139]
    np.testing.assert_allclose(stitch(network_fn(net), image, plan), whole, atol=1e-5)
    unmirrored = stitch(network_fn(net), image, plan_tiles(image.shape, tile_size=48, overlap=20, multiple=2))
    assert np.abs(unmirrored - whole)[:4].max() > 1e-3  # the border changes what the network sees at the edges


def test_a_margin_smaller_than_the_receptive_field_shows_seams():
    """Guards the test above: without enough overlap the tiled result differs from the whole-image run."""
    net = small_bn_network()
    image = np.random.default_rng(3).random((1, 150, 133)).astype(np.float32)
    plan = plan_tiles(image.shape, tile_size=48, overlap=0, multiple=2)
    difference = np.abs(stitch(network_fn(net), image, plan) - whole_image_run(net, image, plan))
    assert difference.max() > 1e-3


def test_tiled_density_sum_equals_the_whole_sum():
    net = small_bn_network(seed=1)
    run = network_fn(net)

    def density(batch):
        return np.log1p(np.exp(run(batch)))  # softplus: a non-negative density

    image = np.random.default_rng(4).random((1, 97, 120)).astype(np.float32)
    plan = plan_tiles(image.shape, tile_size=32, overlap=20, multiple=2)
    tiled = sum(float(values.sum(dtype=np.float64)) for _, values in iter_tile_outputs(density, image, plan))
    whole = float(np.log1p(np.exp(whole_image_run(net, image, plan))).sum(dtype=np.float64))
    assert tiled == pytest.approx(whole, rel=1e-5)


def test_automatic_tiling_is_chosen_per_device_type():
    from cellcount_core.running.tiling import AUTOMATIC_TILING, automatic_tiling

    assert automatic_tiling("cpu") == AUTOMATIC_TILING["cpu"] == (2048, 1)
    assert automatic_tiling("cuda:1") == automatic_tiling("CUDA") == AUTOMATIC_TILING["cuda"]
    assert automatic_tiling("mps") == AUTOMATIC_TILING["cpu"]
    torch = pytest.importorskip("torch")
    assert automatic_tiling(torch.device("cpu")) == (2048, 1)


def test_resolve_tiling_takes_auto_from_the_device_and_keeps_given_sizes():
    from cellcount_core.running.tiling import resolve_tiling

    assert resolve_tiling("auto", None, "cpu") == (2048, 1)
    assert resolve_tiling("Auto", None, "cuda:0") == (1024, 16)
    assert resolve_tiling("auto", 3, "cpu") == (2048, 3)  # a given batch size wins
    assert resolve_tiling(512, None, "cpu") == (512, 4)  # a given tile size keeps the former batch default
    assert resolve_tiling(np.int64(768), 2, "cuda") == (768, 2)


@pytest.mark.parametrize("tile_size, batch_size, message", [
    ("big", None, "tile size 'big' is neither 'auto'"),
    (32, None, "at least 64 pixels"),
    (512.5, None, "whole number"),
    (True, None, "neither 'auto'"),
    (512, 0, "batch size 0"),
    ("auto", 1.5, "batch size 1.5"),
])
def test_resolve_tiling_refuses_impossible_sizes_naming_them(tile_size, batch_size, message):
    from cellcount_core.running.tiling import resolve_tiling

    with pytest.raises(ValueError, match=message):
        resolve_tiling(tile_size, batch_size, "cpu")
