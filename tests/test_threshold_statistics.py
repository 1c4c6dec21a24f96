"""Row-chunked threshold statistics equal centrosome's whole-image ones (what IdentifyPrimaryObjects writes)."""

import numpy as np
import pytest

from cellcount_core.objects import threshold_statistics
from cellcount_core.images.synthetic import ideal_probability, synthetic_cells
from cellcount_core.objects.threshold_statistics import sum_of_entropies, weighted_variance

centrosome = pytest.importorskip("centrosome.threshold", reason="centrosome comes with CellProfiler")


@pytest.fixture
def probability(monkeypatch):
    monkeypatch.setattr(threshold_statistics, "_CHUNK_ROWS", 13)
    rng = np.random.default_rng(0)
    cells = synthetic_cells((200, 170), n_cells=30, seed=1)
    noisy = ideal_probability(cells.labels) * 0.9 + rng.random(cells.labels.shape, dtype=np.float32) * 0.05
    return noisy, cells.labels, rng.random(cells.labels.shape) > 0.2


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # centrosome calls numpy.product
@pytest.mark.parametrize("masked", [False, True])
def test_statistics_equal_centrosome(probability, masked):
    image, labels, mask = probability
    given = mask if masked else None
    whole = mask if masked else np.ones(image.shape, bool)
    assert weighted_variance(image, labels, given) == pytest.approx(
        centrosome.weighted_variance(image, whole, labels > 0), rel=1e-6)
    assert sum_of_entropies(image, labels, given) == centrosome.sum_of_entropies(image, whole, labels > 0)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_degenerate_cases_follow_centrosome(probability):
    image, labels, _ = probability
    everything, nothing = np.ones(image.shape, bool), np.zeros(image.shape, bool)
    assert weighted_variance(image, nothing) == pytest.approx(centrosome.weighted_variance(image, everything, nothing),
                                                              rel=1e-6)
    assert sum_of_entropies(image, nothing) == centrosome.sum_of_entropies(image, everything, nothing) == 0
    flat = np.full((5, 5), 0.5, np.float32)
    assert sum_of_entropies(flat, np.eye(5)) == centrosome.sum_of_entropies(flat, np.ones((5, 5), bool), np.eye(5) > 0)
    assert weighted_variance(np.zeros((4, 4), np.float32), np.ones((4, 4))) == 0.0
