"""Post-processing with the whole-image steps on a torch device (`objects/device_morphology`, `device_objects`)
gives the host's labels pixel for pixel. Everything runs on CPU tensors here, as the same code runs on CUDA."""

import cv2
import numpy as np
import pytest
from scipy import ndimage as ndi

torch = pytest.importorskip("torch")

from cellcount_core.images.synthetic import ideal_probability, synthetic_cells  # noqa: E402
from cellcount_core.objects import device_morphology as morphology  # noqa: E402
from cellcount_core.objects import device_objects  # noqa: E402
from cellcount_core.objects.components import (component_labels, euclidean_distance, fill_mask_holes,  # noqa: E402
                                               fill_small_holes)
from cellcount_core.objects.diameter import estimate_diameter  # noqa: E402
from cellcount_core.objects.postprocess import labels_from_mask  # noqa: E402
from cellcount_core.objects.segmentation import labels_from_probability  # noqa: E402


def random_masks(count=24, seed=0):
    """Masks of random sizes (1 to 120 pixels a side), of scattered pixels or opened blobs, with the edge cases:
    empty, full, one row, one column."""
    rng = np.random.default_rng(seed)
    masks = [np.zeros((7, 9), bool), np.ones((7, 9), bool), rng.random((1, 40)) < 0.5, rng.random((40, 1)) < 0.5]
    for index in range(count):
        shape = tuple(rng.integers(1, 120, 2))
        noise = rng.random(shape) < rng.uniform(0.2, 0.8)
        masks.append(ndi.binary_opening(noise) if index % 2 else noise)
    return masks


def noisy_map(seed, shape=(200, 240)):
    """An ideal map of touching, clustered synthetic cells (diameters 12-30) with Gaussian noise of 0.08."""
    cells = synthetic_cells(shape, n_cells=30 + 10 * seed, diameter=(12, 30), touching=0.5, clustering=0.4,
                            seed=seed)
    noise = np.random.default_rng(seed).normal(0, 0.08, shape).astype(np.float32)
    return np.clip(ideal_probability(cells.labels, sigma=1.5) + noise, 0, 1)


def on_device(mask, probability=None, **settings):
    """`device_objects.labels_on_device` of host arrays, as a host array."""
    labels, _ = device_objects.labels_on_device(torch.from_numpy(mask), None if probability is None
                                                else torch.from_numpy(probability), **settings)
    return labels.numpy()


# --- whole-image steps: equal to OpenCV ------------------------------------------------------------------------

@pytest.mark.parametrize("mask", random_masks(), ids=lambda mask: f"{mask.shape[0]}x{mask.shape[1]}")
def test_components_holes_and_distances_equal_opencv(mask):
    tensor = torch.from_numpy(mask)
    labels, count = morphology.label_components(tensor)
    assert np.array_equal(labels.numpy(), component_labels(mask)) and count == component_labels(mask).max()
    assert np.array_equal(morphology.fill_mask_holes(tensor).numpy(), fill_mask_holes(mask).view(bool))
    for max_area in (1, 3, 10):
        filled, holes_left = morphology.fill_small_holes(tensor, max_area)
        expected, expected_left = fill_small_holes(mask, max_area)
        assert np.array_equal(filled.numpy(), expected) and holes_left == expected_left
    exact = euclidean_distance(mask.view(np.uint8))
    chamfer = cv2.distanceTransform(mask.view(np.uint8), cv2.DIST_L2, 5)
    if (~mask).any():  # without background OpenCV's two transforms say 'infinite' differently
        assert np.array_equal(np.sqrt(morphology.squared_distance(tensor).numpy().astype(float)).astype(np.float32),
                              exact)
    # OpenCV adds its float32 steps in scan order, the relaxation along the path it finds: the last bit may differ
    np.testing.assert_allclose(morphology.chamfer_distance(tensor).numpy(), chamfer, rtol=2e-7)


def test_components_are_numbered_in_raster_order_of_their_first_pixel():
    mask = np.zeros((5, 8), bool)
    mask[3, 0] = mask[0, 5] = mask[1, 5] = mask[1, 2] = True  # first pixels: (0, 5), (1, 2), (3, 0)
    labels, count = morphology.label_components(torch.from_numpy(mask))
    assert count == 3 and labels[0, 5] == 1 and labels[1, 5] == 1 and labels[1, 2] == 2 and labels[3, 0] == 3


def test_a_winding_path_converges_to_one_label():
    """A serpentine of 30 rows joined at alternate ends (the worst case for spreading labels) is one component."""
    mask = np.zeros((59, 50), bool)
    mask[::2] = True
    for row in range(1, 59, 2):
        mask[row, -1 if row % 4 == 1 else 0] = True
    labels, count = morphology.label_components(torch.from_numpy(mask))
    assert count == 1 and np.array_equal(labels.numpy(), mask.astype(np.int32))


# --- labels: equal to the host's ------------------------------------------------------------------------------

SETTINGS = [{}, {"exclude_border": True}, {"min_size": 3}, {"fill_holes": False}, {"split_touching": False}]


@pytest.mark.parametrize("seed", [0, 3, 6])
@pytest.mark.parametrize("threshold", [0.3, 0.6])
@pytest.mark.parametrize("with_map", [True, False], ids=["map", "mask-only"])
def test_labels_equal_the_hosts_for_every_setting(seed, threshold, with_map):
    probability = noisy_map(seed)
    mask = probability > threshold
    weights = probability if with_map else None
    diameter = estimate_diameter(mask, weights)
    assert device_objects.estimate_diameter_on_device(torch.from_numpy(mask),
                                                       None if weights is None else torch.from_numpy(weights)) \
        == diameter
    for settings in SETTINGS:
        for given in (diameter, 9.0):  # the estimate, and one small enough to split many clumps
            expected = labels_from_mask(mask, weights, diameter=given, **settings)
            assert np.array_equal(on_device(mask, weights, diameter=given, **settings), expected), settings
    assert np.array_equal(on_device(mask, weights), labels_from_mask(mask, weights))


def test_an_empty_map_gives_no_labels_and_diameter_zero():
    labels, diameter = device_objects.labels_on_device(torch.zeros((30, 40), dtype=torch.bool))
    assert diameter == 0.0 and labels.shape == (30, 40) and int(labels.max()) == 0


@pytest.mark.parametrize("mask", random_masks(8, seed=1), ids=lambda mask: f"{mask.shape[0]}x{mask.shape[1]}")
def test_host_euclidean_distances_are_correctly_rounded_roots(mask):
    """`components.euclidean_distance` is scipy's exact transform rounded to float32. OpenCV's precise transform,
    which it rounds, was seen one float32 bit off at some pixels (7.0000005 for 7) in some runs of the same crop,
    which moved a watershed border pixel between runs and away from the device's labels."""
    if (~mask).any():
        expected = ndi.distance_transform_edt(mask).astype(np.float32)
        assert np.array_equal(euclidean_distance(mask.view(np.uint8)), expected)


# --- labels_from_probability on a device ----------------------------------------------------------------------

@pytest.fixture
def cpu_counts_as_a_device(monkeypatch):
    """`device_objects` takes CPU devices too; the calls of `objects_on_device` are recorded."""
    calls = []
    original = device_objects.objects_on_device
    monkeypatch.setattr(device_objects, "DEVICE_TYPES", ("cpu",))
    monkeypatch.setattr(device_objects, "objects_on_device", lambda *a, **k: calls.append(1) or original(*a, **k))
    return calls


@pytest.mark.parametrize("method", ["model default", "simple", "otsu", "adaptive"])
def test_labels_from_probability_on_a_device_equal_the_host(cpu_counts_as_a_device, method):
    probability = noisy_map(2)
    host = labels_from_probability(probability, threshold_method=method, threshold_value=0.45)
    device = labels_from_probability(probability, threshold_method=method, threshold_value=0.45,
                                     device=torch.device("cpu"))
    assert cpu_counts_as_a_device, "the device path was not taken"
    assert np.array_equal(device.labels, host.labels) and np.array_equal(device.mask, host.mask)
    assert (device.threshold, device.diameter, device.count) == (host.threshold, host.diameter, host.count)


def test_a_map_outside_0_1_is_refused_on_a_device_as_on_the_host(cpu_counts_as_a_device):
    bad = np.full((20, 20), 1.5, np.float32)
    with pytest.raises(ValueError, match="within 0..1") as on_host:
        labels_from_probability(bad, threshold_method="simple")
    with pytest.raises(ValueError, match="within 0..1") as on_device_error:
        labels_from_probability(bad, threshold_method="simple", device=torch.device("cpu"))
    assert str(on_device_error.value) == str(on_host.value)


def test_the_device_path_is_taken_only_where_its_memory_share_holds_the_work(monkeypatch):
    assert not device_objects.runs_on_device(None, (100, 100))
    assert not device_objects.runs_on_device(torch.device("cpu"), (100, 100))  # OpenCV is faster there
    monkeypatch.setattr(device_objects, "DEVICE_TYPES", ("cpu",))
    monkeypatch.setattr(device_objects.gpu, "available_memory", lambda device: 10_000 * device_objects.BYTES_PER_PIXEL)
    assert device_objects.runs_on_device(torch.device("cpu"), (100, 100))
    assert not device_objects.runs_on_device(torch.device("cpu"), (100, 101))


def test_running_out_of_device_memory_falls_back_to_the_host_with_a_warning(cpu_counts_as_a_device, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    probability = noisy_map(1)
    monkeypatch.setattr(device_objects, "labels_on_device", out_of_memory)
    with pytest.warns(RuntimeWarning, match="ran out of memory on cpu .*runs on the CPU instead"):
        found = labels_from_probability(probability, threshold_value=0.5, device=torch.device("cpu"))
    assert cpu_counts_as_a_device, "the device path was not tried"
    assert np.array_equal(found.labels, labels_from_probability(probability, threshold_value=0.5).labels)


@pytest.mark.data
def test_real_maps_give_the_hosts_labels(shared_data, cpu_counts_as_a_device):
    """The bundled segmenter's maps of the StarDist example and four DSB2018 images: the same labels."""
    from cellcount_core.images.image_io import read_image
    from cellcount_core.running.inference import predict_probability

    images = [shared_data / "stardist_example" / "img2d.tif"]
    images += sorted((shared_data / "dsb2018_fluo" / "images").glob("*.png"))[:4]
    for path in images:
        probability = predict_probability(read_image(path), device="CPU")
        host = labels_from_probability(probability, threshold_value=0.5)
        device = labels_from_probability(probability, threshold_value=0.5, device=torch.device("cpu"))
        assert host.count > 10 and np.array_equal(device.labels, host.labels), path.name
    assert len(cpu_counts_as_a_device) == len(images)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (benchmarks/gpu_check.sh runs it)")
def test_labels_on_cuda_equal_the_hosts():
    probability = np.concatenate([noisy_map(seed) for seed in range(4)], axis=1)
    for method in ("model default", "otsu"):
        host = labels_from_probability(probability, threshold_method=method, threshold_value=0.45)
        cuda = labels_from_probability(probability, threshold_method=method, threshold_value=0.45,
                                       device=torch.device("cuda"))
        assert np.array_equal(cuda.labels, host.labels) and cuda.diameter == host.diameter
