"""CUDA checks: the GPU path gives the CPU's maps and counts and releases its memory. Skipped without a CUDA GPU;
`benchmarks/gpu_check.sh` runs them on a lent machine."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def cells():
    from cellcount_core.images.synthetic import synthetic_cells

    return synthetic_cells((1024, 1024), n_cells=240, seed=3)


def test_gpu_probability_map_matches_the_cpu_map(cells):
    from cellcount_core.running.inference import predict_probability

    cpu = predict_probability(cells.image, device="CPU")
    gpu = predict_probability(cells.image, device="GPU")
    assert np.abs(cpu - gpu).max() < 0.05  # bf16 on the GPU, float32 on the CPU
    assert np.mean((cpu > 0.5) != (gpu > 0.5)) < 0.002


def test_gpu_counts_equal_the_cpu_counts(cells):
    from cellcount_core.running.inference import predict_count
    from cellcount_core.objects.segmentation import segment_image

    assert segment_image(cells.image, device="GPU").count == pytest.approx(
        segment_image(cells.image, device="CPU").count, abs=2)
    assert predict_count(cells.image, device="GPU") == pytest.approx(predict_count(cells.image, device="CPU"),
                                                                     rel=0.02)


def test_gpu_cache_is_released_after_an_image(cells):
    from cellcount_core.running.inference import predict_probability

    predict_probability(np.tile(cells.image, (2, 2)), device="GPU", batch_size=16)
    assert torch.cuda.memory_reserved() - torch.cuda.memory_allocated() < 64 * 2**20
