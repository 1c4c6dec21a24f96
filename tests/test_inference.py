import os

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cellcount_core.running.inference import (  # noqa: E402
    COUNTER_BORDER,
    SEGMENTER_BORDER,
    InferenceError,
    clear_model_cache,
    get_model,
    predict_count,
    predict_probability,
    resolve_device,
)
from cellcount_core.models.model_files import ModelCard, save_model  # noqa: E402
from cellcount_core.running.cpu_model import PRECISION_VARIABLE  # noqa: E402
from cellcount_core.models.networks import create_model  # noqa: E402
from cellcount_core.images.normalization import normalize_percentile  # noqa: E402

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")


@pytest.fixture(autouse=True)
def empty_cache(monkeypatch):
    """An empty model cache, and float32 on the CPU: these tests compare tiled runs with whole-image float32 runs of
    the saved network to 1e-5 (the bf16 CPU path is compared with float32 in test_cpu_model.py)."""
    monkeypatch.setenv(PRECISION_VARIABLE, "float32")
    clear_model_cache()
    yield
    clear_model_cache()


def randomize_batchnorm(model, seed):
    """Give BatchNorm layers non-trivial running statistics and affine parameters."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.rand(n, generator=generator) * 0.4 - 0.2)
    return model


def save(tmp_path, name, kind, architecture, params, seed=0, weight_scale=1.0, **card_fields):
    """Save a randomly initialized network (conv weights times `weight_scale`) and return (path, model)."""
    torch.manual_seed(seed)
    model = randomize_batchnorm(create_model(architecture, **params), seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                module.weight.mul_(weight_scale)
    card = ModelCard(name=name, kind=kind, architecture=architecture, params=params, **card_fields)
    weights, _ = save_model(model, card, tmp_path / name, dtype="float32")
    return weights, model.eval()


SEGMENTER = dict(kind="segmenter", architecture="c_resunet", params={"base_filters": 4, "depth": 2},
                 normalization={"method": "percentile", "low": 2.0, "high": 99.0})
# receptive-field radius of this c_resunet is 41 px: overlap 96 leaves margins of at least 48 px
SEGMENTER_TILING = dict(tile_size=192, overlap=96)


@pytest.fixture
def segmenter(tmp_path):
    return save(tmp_path, "seg", **SEGMENTER)


def whole_image_output(model, inputs, border=0):
    """Run a network once on a C x H x W array, reflect-padded by `border` on every side and to its size divisor,
    and crop back."""
    divisor = model.size_divisor
    height, width = inputs.shape[-2:]
    after = [border - (length + 2 * border) % -divisor for length in (height, width)]  # border, then to the divisor
    pad = ((0, 0), (border, after[0]), (border, after[1]))
    batch = torch.from_numpy(np.pad(inputs, pad, mode="reflect")[None])
    with torch.inference_mode():
        return model(batch)[0, 0, border:border + height, border:border + width].numpy()


def sample_image(shape=(160, 150), seed=0):
    rng = np.random.default_rng(seed)
    image = rng.poisson(200, size=shape).astype(np.uint16)
    image[40:70, 50:90] += 3000
    return image


# -- devices ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["CPU", "cpu", " Cpu ", torch.device("cpu")])
def test_cpu_resolves(name):
    assert resolve_device(name) == torch.device("cpu")


@NO_CUDA
@pytest.mark.parametrize("name", ["Auto", "auto", "AUTO"])
def test_auto_falls_back_to_cpu(name):
    assert resolve_device(name) == torch.device("cpu")


@NO_CUDA
@pytest.mark.parametrize("name", ["GPU", "gpu", "cuda", "cuda:1"])
def test_gpu_without_cuda_raises_a_clear_error(name):
    with pytest.raises(InferenceError, match="choose Auto or CPU, or install a CUDA build of torch"):
        resolve_device(name)


@pytest.mark.parametrize("name", ["tpu", "banana", "", "mps"])
def test_unknown_device_raises(name):
    with pytest.raises(InferenceError, match="Unknown device"):
        resolve_device(name)


# -- model cache -----------------------------------------------------------------------------------------------


def test_cache_returns_the_same_model_until_the_file_changes(tmp_path):
    weights, _ = save(tmp_path, "seg", **SEGMENTER)
    first, card = get_model(weights, "CPU")
    assert get_model(weights, "cpu")[0] is first
    assert get_model(tmp_path / "seg.json", "CPU")[0] is first  # same model, named by its card
    assert card.kind == "segmenter" and not first.training

    save(tmp_path, "seg", **SEGMENTER, seed=1)
    later = os.stat(weights).st_mtime_ns + 10**9
    os.utime(weights, ns=(later, later))
    reloaded, _ = get_model(weights, "CPU")
    assert reloaded is not first
    assert not torch.equal(next(reloaded.parameters()), next(first.parameters()))


def test_clear_model_cache_forces_a_reload(segmenter):
    weights, _ = segmenter
    first, _ = get_model(weights, "CPU")
    clear_model_cache()
    assert get_model(weights, "CPU")[0] is not first


# -- predict_probability ---------------------------------------------------------------------------------------


def test_tiled_probability_equals_a_whole_image_run(segmenter):
    weights, model = segmenter
    image = sample_image((300, 280))
    inputs = normalize_percentile(image, 2.0, 99.0)[None]
    expected = torch.sigmoid(torch.from_numpy(whole_image_output(model, inputs, SEGMENTER_BORDER))).numpy()
    probability = predict_probability(image, weights, "CPU", batch_size=3, **SEGMENTER_TILING)
    assert probability.dtype == np.float32 and probability.shape == image.shape
    assert 0.0 <= probability.min() and probability.max() <= 1.0
    np.testing.assert_allclose(probability, expected, atol=1e-5)
    # guard: with margins (8 px) inside the receptive field the seams show, so the comparison above is sensitive
    seamed = predict_probability(image, weights, "CPU", tile_size=128, overlap=16)
    assert np.abs(seamed - expected).max() > 1e-4


def test_automatic_tile_size_runs_the_device_measured_tiling(segmenter, monkeypatch):
    from cellcount_core.running import tiling

    weights, _ = segmenter
    image = sample_image((300, 280))
    whole = predict_probability(image, weights, "CPU", tile_size=2048, overlap=16)
    seamed = predict_probability(image, weights, "CPU", tile_size=128, overlap=16, batch_size=2)
    assert np.abs(seamed - whole).max() > 1e-4  # the two tilings are told apart
    np.testing.assert_array_equal(predict_probability(image, weights, "CPU", overlap=16), whole)  # auto on a CPU
    monkeypatch.setitem(tiling.AUTOMATIC_TILING, "cpu", (128, 2))
    np.testing.assert_array_equal(predict_probability(image, weights, "CPU", tile_size="auto", overlap=16), seamed)
    with pytest.raises(ValueError, match="tile size 'large' is neither 'auto'"):
        predict_probability(image, weights, "CPU", tile_size="large")


def test_colour_images_are_averaged_for_gray_models(segmenter):
    weights, _ = segmenter
    rgb = np.stack([sample_image(seed=s) for s in range(3)], axis=-1)
    np.testing.assert_allclose(
        predict_probability(rgb, weights, "CPU", **SEGMENTER_TILING),
        predict_probability(rgb.mean(axis=-1), weights, "CPU", **SEGMENTER_TILING),
        atol=1e-6,
    )


def test_gray_images_are_repeated_for_colour_models(tmp_path):
    params = {"base_filters": 4, "depth": 2, "in_channels": 3}
    weights, model = save(tmp_path, "rgb", **{**SEGMENTER, "params": params})
    gray = sample_image()
    rgb = np.stack([gray, gray // 2, gray], axis=-1)
    probability = predict_probability(rgb, weights, "CPU", **SEGMENTER_TILING)
    inputs = np.moveaxis(normalize_percentile(rgb, 2.0, 99.0), -1, 0)
    expected = torch.sigmoid(torch.from_numpy(whole_image_output(model, inputs, SEGMENTER_BORDER))).numpy()
    np.testing.assert_allclose(probability, expected, atol=1e-5)
    np.testing.assert_array_equal(
        predict_probability(gray, weights, "CPU", **SEGMENTER_TILING),
        predict_probability(np.stack([gray] * 3, axis=-1), weights, "CPU", **SEGMENTER_TILING),
    )


def test_small_image_is_padded_and_cropped(segmenter):
    weights, model = segmenter
    image = sample_image((5, 7))
    probability = predict_probability(image, weights, "CPU")
    inputs = normalize_percentile(image, 2, 99)[None]
    expected = torch.sigmoid(torch.from_numpy(whole_image_output(model, inputs, SEGMENTER_BORDER)))
    np.testing.assert_allclose(probability, expected.numpy(), atol=1e-5)


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((10, 10, 5)), r"shape \(10, 10, 5\)"),
        (np.zeros((2, 10, 10, 3)), "shape"),
        (np.zeros((0, 10)), "no pixels"),
        (np.full((10, 10), np.nan), "NaN"),
    ],
)
def test_bad_images_raise_value_errors(segmenter, image, message):
    with pytest.raises(ValueError, match=message):
        predict_probability(image, segmenter[0], "CPU")


def test_progress_bar_is_shown_on_request(segmenter, capsys):
    predict_probability(sample_image(), segmenter[0], "CPU", progress=True, **SEGMENTER_TILING)
    assert "tiles" in capsys.readouterr().err


def test_unsupported_normalization_raises(tmp_path):
    weights, _ = save(tmp_path, "z", **{**SEGMENTER, "normalization": {"method": "zscore"}})
    with pytest.raises(InferenceError, match="zscore"):
        predict_probability(sample_image(), weights, "CPU")


# -- predict_count ---------------------------------------------------------------------------------------------


@pytest.fixture
def dcc_counter(tmp_path):
    params = {"input_size": [16, 24], "filters": [4, 8], "dense_units": 16}
    weights, model = save(tmp_path, "dcc", "counter", "dcc_counter", params, input="mask", input_size=[16, 24])
    with torch.no_grad():
        model.regressor[-1].bias.fill_(50.0)  # keep the random network's count positive
    save_model(model, ModelCard(name="dcc", kind="counter", architecture="dcc_counter", params=params,
                                input="mask", input_size=[16, 24]), weights, dtype="float32")
    return weights, model


def test_dcc_counter_counts_the_resized_binary_mask(dcc_counter):
    weights, model = dcc_counter
    labels = np.zeros((300, 200), np.int32)
    labels[20:60, 30:80] = 1
    labels[100:190, 120:150] = 7
    binary = (labels > 0).astype(np.float32)
    resized = cv2.resize(binary, (24, 16), interpolation=cv2.INTER_AREA)
    with torch.inference_mode():
        expected = float(model(torch.from_numpy(resized)[None, None])[0])
    assert expected > 0
    assert predict_count(labels, weights, "CPU") == pytest.approx(expected, rel=1e-5)
    assert predict_count(labels > 0, weights, "CPU") == pytest.approx(expected, rel=1e-5)


def test_density_counter_tiled_sum_equals_the_whole_image_sum(tmp_path):
    # doubled conv weights make the random density depend on its context enough for seams to change the sum
    weights, model = save(tmp_path, "density", "counter", "density_counter", {"base_filters": 4, "depth": 2},
                          weight_scale=2.0)
    image = sample_image((150, 170))
    expected = whole_image_output(model, normalize_percentile(image)[None], COUNTER_BORDER).sum(dtype=np.float64)
    # receptive-field radius 22 px: overlap 48 leaves margins of 24 px
    count = predict_count(image, weights, "CPU", tile_size=96, overlap=48, batch_size=5)
    assert count == pytest.approx(expected, rel=1e-5)
    unmirrored = whole_image_output(model, normalize_percentile(image)[None]).sum(dtype=np.float64)
    assert abs(unmirrored / expected - 1) > 1e-4  # guard: the mirrored border changes the sum
    seamed = predict_count(image, weights, "CPU", tile_size=64, overlap=0)
    assert abs(seamed / expected - 1) > 1e-4


def test_a_calibrated_counter_scales_its_count(tmp_path, dcc_counter):
    from cellcount_core.models.model_files import update_card

    weights, _ = dcc_counter
    mask = np.zeros((300, 200), bool)
    mask[20:60, 30:80] = True
    raw = predict_count(mask, weights, "CPU")
    update_card(weights, {"count_scale": 1.25})
    assert predict_count(mask, weights, "CPU") == pytest.approx(1.25 * raw, rel=1e-6)


def test_density_counter_takes_the_automatic_tiling(tmp_path, monkeypatch):
    from cellcount_core.running import tiling

    weights, _ = save(tmp_path, "density", "counter", "density_counter", {"base_filters": 4, "depth": 2},
                      weight_scale=2.0)
    image = sample_image((150, 170))
    seamed = predict_count(image, weights, "CPU", tile_size=64, overlap=0)
    assert predict_count(image, weights, "CPU", overlap=0) != pytest.approx(seamed, rel=1e-4)
    monkeypatch.setitem(tiling.AUTOMATIC_TILING, "cpu", (64, 3))
    assert predict_count(image, weights, "CPU", overlap=0) == pytest.approx(seamed, rel=1e-6)


def test_models_of_the_wrong_kind_are_refused(segmenter, dcc_counter):
    with pytest.raises(InferenceError, match="is a counter, but predict_probability needs a segmenter"):
        predict_probability(sample_image(), dcc_counter[0], "CPU")
    with pytest.raises(InferenceError, match="is a segmenter, but predict_count needs a counter"):
        predict_count(sample_image(), segmenter[0], "CPU")


def test_nan_masks_raise(dcc_counter):
    with pytest.raises(ValueError, match="NaN"):
        predict_count(np.full((10, 10), np.nan), dcc_counter[0], "CPU")
