"""The device-resident path (`running/device_tiles`) gives the numpy path's percentiles, noise floor, maps,
labels and density counts. It runs on CPU tensors here (``DEVICE_TYPES`` widened to the CPU); the last test
needs CUDA."""

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cellcount_core.images.normalization import noise_sigma, percentile_range  # noqa: E402
from cellcount_core.objects.segmentation import labels_from_probability, model_default_threshold  # noqa: E402
from cellcount_core.objects.thresholds import apply_threshold  # noqa: E402
from cellcount_core.running import device_tiles, gpu  # noqa: E402
from cellcount_core.running.cpu_model import PRECISION_VARIABLE  # noqa: E402
from cellcount_core.models.bundled import DEFAULT_COUNTER  # noqa: E402
from cellcount_core.running.inference import clear_model_cache, predict_count, predict_probability  # noqa: E402
from cellcount_core.running.tiling import plan_tiles  # noqa: E402

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def empty_cache(monkeypatch):
    """An empty model cache, and float32 on the CPU: both paths' inputs agree to float rounding, which bf16 would
    amplify to its own precision (the bf16 CPU path is compared with float32 in test_cpu_model.py)."""
    monkeypatch.setenv(PRECISION_VARIABLE, "float32")
    clear_model_cache()
    yield
    clear_model_cache()


def _host_and_device(monkeypatch, predict, device_step, image, model, **tiling):
    """(host result, device-path result) of `predict` on the CPU; fails unless `device_tiles.<device_step>` ran."""
    host = predict(image, model, "CPU", **tiling)
    step, calls = getattr(device_tiles, device_step), []
    with monkeypatch.context() as patch:
        patch.setattr(device_tiles, "DEVICE_TYPES", ("cpu",))
        patch.setattr(device_tiles, device_step, lambda *args: calls.append(1) or step(*args))
        on_device = predict(image, model, "CPU", **tiling)
    assert calls, "the device path was not taken"
    return host, on_device


def both_paths(monkeypatch, image, model, **tiling):
    """(host map, device-path map) of `predict_probability` on the CPU."""
    return _host_and_device(monkeypatch, predict_probability, "stitch", image, model, **tiling)


def rng_image(shape, dtype=np.uint16, high=4000, seed=0):
    """Smooth bright patches (up to `high`) over noise around 100, of the given shape and dtype."""
    rng = np.random.default_rng(seed)
    field = cv2.GaussianBlur(rng.random(shape[:2], np.float32), (0, 0), 3)
    patches = np.clip((field - field.mean()) / (field.std() + 1e-6), 0, None) / 3
    values = high * patches[(...,) + (None,) * (len(shape) - 2)] + rng.normal(100, 10, shape)
    return np.clip(values, 0, None).astype(dtype)


# --- percentiles and the noise floor: equal to normalization.py --------------------------------------------


@pytest.mark.parametrize("image", [
    rng_image((300, 200)),
    rng_image((2100, 2050), np.uint16, high=60000),  # above PERCENTILE_SAMPLE_PIXELS: the strided sample
    rng_image((120, 90), np.float64) / 7.0,
    rng_image((64, 64), np.int32) - 1000,
    np.pad(np.full((5, 5), 9, np.uint8), 200),  # the 99.8th percentile is the background: hi is the maximum
    np.full((30, 40), 3.5, np.float32),  # constant
    np.arange(7, dtype=np.uint8)[None],  # seven values: interpolation between neighbours
], ids=["uint16", "strided", "float64", "int32", "sparse", "constant", "tiny"])
def test_percentiles_equal_numpy(image):
    inputs = device_tiles.model_channels(device_tiles.upload_image(image, CPU), 1)
    for low, high in [(1.0, 99.8), (0.0, 100.0), (2.0, 99.0), (49.9, 50.1)]:
        assert device_tiles.percentile_range(inputs, low, high) == percentile_range(image, low, high)


def test_percentiles_of_colour_inputs_equal_numpy():
    rgb = rng_image((210, 150, 3), np.uint8, high=250)
    inputs = device_tiles.model_channels(device_tiles.upload_image(rgb, CPU), 3)
    assert device_tiles.percentile_range(inputs) == percentile_range(rgb)
    gray = device_tiles.model_channels(device_tiles.upload_image(rgb, CPU), 1)
    assert device_tiles.percentile_range(gray) == percentile_range(rgb.mean(axis=-1, dtype=np.float32))


@pytest.mark.parametrize("low, high", [(50, 50), (-1, 99), (1, 101)])
def test_bad_percentiles_raise(low, high):
    with pytest.raises(ValueError, match="percentiles"):
        device_tiles.percentile_range(torch.zeros((1, 4, 4)), low, high)


@pytest.mark.parametrize("image", [
    rng_image((300, 200)),
    rng_image((2300, 2100), np.uint16, high=50000),  # larger than the central window
    np.zeros((50, 50), np.uint8),  # noiseless: the floor is half the quantization step (0 here)
    np.pad(np.full((5, 5), 9, np.uint8), 20),
    rng_image((2, 9)),  # too small for the filter: the floor alone
], ids=["uint16", "window", "zeros", "sparse", "thin"])
def test_noise_sigma_of_integer_images_equals_numpy(image):
    assert device_tiles.noise_sigma(torch.from_numpy(image.astype(np.int32))) == noise_sigma(image)


def test_noise_sigma_of_float_images_equals_numpy_to_rounding():
    image = rng_image((256, 300), np.float32) / 3.0
    assert device_tiles.noise_sigma(torch.from_numpy(image)) == pytest.approx(noise_sigma(image), rel=1e-6)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_infinite_values_are_refused(bad, tiny_segmenter, monkeypatch):
    image = rng_image((40, 40), np.float32)
    image[3, 5] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        device_tiles.image_input(image, CPU)
    monkeypatch.setattr(device_tiles, "DEVICE_TYPES", ("cpu",))
    with pytest.raises(ValueError, match="NaN or infinite"):
        predict_probability(image, tiny_segmenter, "CPU")


# --- uploading: values survive every dtype ---------------------------------------------------------------


@pytest.mark.parametrize("image", [
    np.array([[0, 1, 32767, 32768, 65535]], np.uint16),
    np.array([[0, 2**31 - 1, 2**31, 2**32 - 1]], np.uint32),
    np.array([[0, 2**40]], np.uint64),
    np.array([[-5, 7]], np.int8),
    np.array([[0.5, -1e300]], np.float64),
    np.array([[1, 2], [3, 4]], ">u2"),  # big-endian (some TIFFs)
    np.arange(12, dtype=np.uint16).reshape(3, 4)[::-1, ::2],  # negative and uneven strides
], ids=["uint16", "uint32", "uint64", "int8", "float64", "big-endian", "strided"])
def test_uploaded_values_equal_the_image(image):
    uploaded = device_tiles.upload_image(image, CPU)
    np.testing.assert_array_equal(uploaded.numpy().astype(np.float64), image.astype(np.float64))


def test_read_only_bool_and_rgba_images_upload():
    mask = np.eye(4, dtype=bool)
    mask.flags.writeable = False
    np.testing.assert_array_equal(device_tiles.upload_image(mask, CPU).numpy(), mask.astype(np.uint8))
    rgba = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(device_tiles.upload_image(rgba, CPU).numpy(), rgba[..., :3])


@pytest.mark.parametrize("image, message", [
    (np.zeros((4, 4), complex), "real numeric"),
    (np.zeros((4, 4, 5)), r"shape \(4, 4, 5\)"),
    (np.zeros((0, 4)), "no pixels"),
])
def test_bad_images_are_refused_before_the_upload(image, message):
    with pytest.raises(ValueError, match=message):
        device_tiles.upload_image(image, CPU)


# --- whole maps: the device path equals the host path ----------------------------------------------------


REAL_IMAGES = [
    "stardist_example/img2d.tif",  # 512 x 512 uint16
    "bbbc005/images/SIMCEPImages_A23_C96_F1_s01_w1.TIF",  # 696 x 520 uint8: not a multiple of the tile
    "dsb2018_fluo/images/07fb37aafa6626608af90c1e18f6a743f29b6b233d2e427dcd1102df6a916cf5.png",  # 313 nuclei
]


@pytest.mark.data
@pytest.mark.parametrize("name", REAL_IMAGES)
def test_real_images_give_the_host_maps_and_labels(name, shared_data, monkeypatch):
    from cellcount_core.images.image_io import read_image

    image = read_image(shared_data / name)
    host, on_device = both_paths(monkeypatch, image, "default", tile_size=384)
    np.testing.assert_allclose(on_device, host, atol=1e-6)
    threshold = model_default_threshold("default")
    expected = labels_from_probability(host, threshold_value=threshold)
    found = labels_from_probability(on_device, threshold_value=threshold)
    assert expected.count > 10
    assert found.count == expected.count
    np.testing.assert_array_equal(found.labels, expected.labels)


@pytest.mark.parametrize("image, tiling", [
    (rng_image((700, 300)), dict(tile_size=256)),  # not a multiple of the tile
    (rng_image((37, 53)), dict(tile_size=256)),  # smaller than a tile
    (rng_image((300, 200, 3), np.uint8, high=200), dict(tile_size=192)),  # RGB for a gray model
    (rng_image((100, 90, 4), np.uint8, high=200), dict(tile_size=64)),  # RGBA
    (rng_image((200, 260), np.uint16, high=60000), dict(tile_size=128, batch_size=3)),  # above int16
    (rng_image((150, 150), np.float64) / 9.0, dict(tile_size=96, overlap=32)),
    (np.full((130, 70), 1000, np.uint16), dict(tile_size=64)),  # constant
], ids=["non-multiple", "small", "rgb", "rgba", "uint16", "float64", "constant"])
def test_odd_images_give_the_host_maps(image, tiling, tiny_segmenter, monkeypatch):
    host, on_device = both_paths(monkeypatch, image, tiny_segmenter, **tiling)
    assert on_device.dtype == np.float32 and on_device.shape == image.shape[:2]
    np.testing.assert_allclose(on_device, host, atol=1e-6)


def test_colour_models_get_the_host_maps(tmp_path, monkeypatch):
    from cellcount_core.models.model_files import ModelCard, save_model
    from cellcount_core.models.networks import create_model

    torch.manual_seed(1)
    params = {"base_filters": 4, "depth": 2, "in_channels": 3}
    card = ModelCard(name="rgb", kind="segmenter", architecture="c_resunet", params=params,
                     normalization={"method": "percentile", "low": 2.0, "high": 99.0, "min_range_over_noise": 30.0})
    weights, _ = save_model(create_model("c_resunet", **params).eval(), card, tmp_path / "rgb")
    rgb = rng_image((180, 140, 3), np.uint8, high=200)
    for image in (rgb, rgb[..., 1]):  # colour, and gray repeated into three channels
        host, on_device = both_paths(monkeypatch, image, weights, tile_size=64)
        np.testing.assert_allclose(on_device, host, atol=1e-6)


def count_both_paths(monkeypatch, image, model, **tiling):
    """(host count, device-path count) of `predict_count` on the CPU."""
    return _host_and_device(monkeypatch, predict_count, "iter_tile_outputs", image, model, **tiling)


@pytest.mark.data
def test_density_counts_of_a_real_image_equal_the_host_count(shared_data, monkeypatch):
    from cellcount_core.images.image_io import read_image

    image = read_image(shared_data / REAL_IMAGES[1])
    host, on_device = count_both_paths(monkeypatch, image, DEFAULT_COUNTER, tile_size=384)
    assert host > 10
    assert on_device == pytest.approx(host, rel=1e-9)


@pytest.mark.parametrize("image", [rng_image((300, 170)), rng_image((40, 50, 3), np.uint8, high=200)],
                         ids=["non-multiple", "small rgb"])
def test_density_counts_of_odd_images_equal_the_host_count(image, tiny_counter, monkeypatch):
    host, on_device = count_both_paths(monkeypatch, image, tiny_counter, tile_size=128)
    assert on_device == pytest.approx(host, rel=1e-9, abs=1e-9)


# --- the pieces: tiles, results brought back, the choice of path ---------------------------------------------


def test_stitching_a_position_map_puts_every_pixel_back():
    inputs = torch.arange(70 * 45, dtype=torch.float32).reshape(1, 70, 45)
    plan = plan_tiles(inputs.shape, tile_size=32, overlap=8, multiple=8)
    np.testing.assert_array_equal(device_tiles.stitch(lambda batch: batch.clone(), inputs, plan).numpy(),
                                  inputs[0].numpy())


def test_tile_errors_name_the_problem():
    inputs = torch.zeros((1, 40, 40))
    plan = plan_tiles((40, 40), tile_size=16, overlap=4)
    with pytest.raises(ValueError, match="does not match the tile plan"):
        device_tiles.stitch(lambda batch: batch, torch.zeros((1, 40, 41)), plan)
    with pytest.raises(ValueError, match="batch_size=0"):
        device_tiles.stitch(lambda batch: batch, inputs, plan, batch_size=0)
    with pytest.raises(ValueError, match="must return"):
        device_tiles.stitch(lambda batch: batch[:, :, :8], inputs, plan)


@pytest.mark.data
def test_results_come_back_as_asked(shared_data):
    from cellcount_core.images.image_io import read_image

    probability = predict_probability(read_image(shared_data / REAL_IMAGES[0]), "default", "CPU")
    on_device = torch.from_numpy(probability)
    expected, _ = apply_threshold(probability, "manual", value=0.37)
    mask = device_tiles.to_host(on_device, threshold=0.37)
    assert mask.dtype == bool and mask.any()
    np.testing.assert_array_equal(mask, expected)
    np.testing.assert_array_equal(device_tiles.to_host(on_device, dtype=np.float16), probability.astype(np.float16))
    np.testing.assert_array_equal(device_tiles.to_host(on_device), probability)
    with pytest.raises(ValueError, match="float32 or float16"):
        device_tiles.to_host(on_device, dtype=np.uint8)


def test_the_cpu_keeps_the_host_path_and_a_small_memory_share_refuses_large_images(monkeypatch):
    assert not device_tiles.keeps_image(CPU, (100, 100))
    monkeypatch.setattr(device_tiles, "DEVICE_TYPES", ("cpu",))
    monkeypatch.setattr(gpu, "available_memory", lambda device: 2 * 16 * 100 * 100)
    assert device_tiles.keeps_image(CPU, (100, 100))
    assert not device_tiles.keeps_image(CPU, (100, 101))
    assert not device_tiles.keeps_image(CPU, (100, 100, 3))


def test_available_memory_respects_the_memory_fraction(monkeypatch):
    gib = 2**30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (40 * gib, 100 * gib))
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device: 1 * gib)
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device: 3 * gib)
    cuda = torch.device("cuda")
    monkeypatch.delenv(gpu.MEMORY_FRACTION_VARIABLE, raising=False)
    assert gpu.available_memory(cuda) == 42 * gib  # free plus this process's cached blocks
    monkeypatch.setenv(gpu.MEMORY_FRACTION_VARIABLE, "0.25")
    assert gpu.available_memory(cuda) == 24 * gib  # a 25 GiB share, 1 GiB of it in use
    monkeypatch.setenv(gpu.MEMORY_FRACTION_VARIABLE, "0.0078125")
    assert gpu.available_memory(cuda) == 0  # 0.78 GiB share, more in use
    assert gpu.available_memory(CPU) is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_keeps_the_image_on_the_gpu_with_the_host_path_s_map_and_count(monkeypatch):
    from cellcount_core.images.synthetic import synthetic_cells

    image = synthetic_cells((1500, 1100), n_cells=300, seed=4).image
    cuda = torch.device("cuda")
    assert device_tiles.keeps_image(cuda, image.shape)
    with monkeypatch.context() as patch:
        patch.setattr(device_tiles, "DEVICE_TYPES", ())
        host = predict_probability(image, device="GPU", tile_size=512, batch_size=4)
        host_count = predict_count(image, device="GPU", tile_size=512, batch_size=4)
    assert predict_count(image, device="GPU", tile_size=512, batch_size=4) == pytest.approx(host_count, rel=1e-4)
    torch.cuda.reset_peak_memory_stats()
    on_device = predict_probability(image, device="GPU", tile_size=512, batch_size=4)
    assert torch.cuda.max_memory_allocated() < 2 * 2**30
    assert np.abs(on_device - host).max() < 1e-3  # the same bf16 network on the same float32 tiles
    threshold = model_default_threshold("default")
    assert labels_from_probability(on_device, threshold_value=threshold).count == \
        labels_from_probability(host, threshold_value=threshold).count
