"""The CPU form of the bundled networks (`running/cpu_model`) against their plain float32 form, on real-ish images.

Tolerances: probabilities within 0.05, objects within 1 % or 1 object, counter counts within 0.5 %. On 45
validation images (BBBC005, DSB2018, StarDist; BENCHMARKS.md section 8) the bf16 path moved probabilities by at
most 0.031 and the counter's counts by at most 0.24 %; 40 images kept their objects' count, 4 changed by one, and
one dim, blurred BBBC005 image by two (15 -> 13, truth 14). Without native bf16 the CPU form is float32 with
folded batch norms, and the tolerances hold trivially.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cellcount_core.images.synthetic import synthetic_cells  # noqa: E402
from cellcount_core.models.model_files import load_model  # noqa: E402
from cellcount_core.models.bundled import resolve_model  # noqa: E402
from cellcount_core.objects.segmentation import segment_image  # noqa: E402
from cellcount_core.running import cpu_model, inference  # noqa: E402

PROBABILITY_TOLERANCE = 0.05
COUNTER_TOLERANCE = 0.005


@pytest.fixture(autouse=True)
def empty_cache():
    inference.clear_model_cache()
    yield
    inference.clear_model_cache()


@pytest.fixture(params=["synthetic", "stardist"])
def image(request):
    if request.param == "synthetic":
        return synthetic_cells((520, 696), 90, (12, 20), noise=0.05, dtype="uint16", seed=3).image
    tifffile = pytest.importorskip("tifffile")
    return tifffile.imread(request.getfixturevalue("shared_data") / "stardist_example" / "img2d.tif")


def results(image):
    """(segmentation, counter count) as cellcount computes them by default, on the CPU."""
    inference.clear_model_cache()
    return segment_image(image, device="CPU"), inference.predict_count_at_cell_scale(image, device="CPU")[0]


def test_the_cpu_path_agrees_with_plain_float32(image, monkeypatch):
    segmented, count = results(image)
    with monkeypatch.context() as patch:
        patch.setattr(inference, "cpu_model", lambda network: network.to(memory_format=torch.channels_last))
        plain, plain_count = results(image)
    assert np.abs(segmented.probability - plain.probability).max() <= PROBABILITY_TOLERANCE
    assert abs(segmented.count - plain.count) <= max(1, 0.01 * plain.count)
    assert count == pytest.approx(plain_count, rel=COUNTER_TOLERANCE)


def bundled(name):
    return load_model(resolve_model(name), "cpu")[0]


def test_float32_is_chosen_by_the_variable_and_only_folds_batch_norms(monkeypatch):
    monkeypatch.setenv(cpu_model.PRECISION_VARIABLE, "float32")
    network = cpu_model.cpu_model(bundled("nuclei-segmenter"))
    assert not isinstance(network, cpu_model.Bfloat16Network)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in network.modules())
    x = torch.rand(1, 1, 256, 256)
    with torch.inference_mode():
        assert torch.allclose(network(x), bundled("nuclei-segmenter")(x), atol=1e-5)


@pytest.mark.skipif(not cpu_model.native_bf16(), reason="this CPU has no native bf16: the CPU form is float32")
def test_float32_first_and_last_layers_keep_the_counter_unbiased():
    """The guard the tolerance is there for: the whole counter under bf16 counts 2 % too many cells (its rounded
    output bias), the CPU form, whose first and last layers stay float32, does not."""
    image = synthetic_cells((512, 512), 60, (12, 20), noise=0.05, dtype="uint16", seed=4).image
    network, card = load_model(resolve_model("nuclei-counter"), "cpu")
    inputs, normalize = inference._image_input(image, card)
    x = torch.from_numpy(normalize(inputs[None].astype(np.float32)))
    with torch.inference_mode():
        plain = float(network(x).sum())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            whole_bf16 = float(network(x).float().sum())
        fast = cpu_model.cpu_model(network)
        assert isinstance(fast, cpu_model.Bfloat16Network)
        fast_count = float(fast(x.contiguous(memory_format=torch.channels_last)).sum())
    assert abs(whole_bf16 / plain - 1) > COUNTER_TOLERANCE
    assert fast_count == pytest.approx(plain, rel=COUNTER_TOLERANCE)
