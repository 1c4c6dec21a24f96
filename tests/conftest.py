"""Fixtures shared by the test files: the real data folder, CellProfiler with the plugins, small model files."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data():
    """../shared/data, or a skip naming the missing folder."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (it sits beside the repository in CI)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def cellprofiler():
    """Headless CellProfiler with the cellcount plugins registered."""
    pytest.importorskip("cellprofiler_core", reason="CellProfiler is not installed (make install installs it)")
    from cellcount_cellprofiler.pipeline_builder import start_cellprofiler

    start_cellprofiler()


@pytest.fixture(scope="session")
def tiny_segmenter(tmp_path_factory):
    """A randomly initialised small segmentation model file (fast; for plumbing tests, not accuracy)."""
    from cellcount_core.models.model_files import ModelCard, save_model
    from cellcount_core.models.networks import create_model
    import torch

    torch.manual_seed(0)
    params = {"base_filters": 4, "depth": 2}
    model = create_model("c_resunet", **params).eval()
    card = ModelCard(name="tiny-segmenter", kind="segmenter", architecture="c_resunet", params=params,
                     default_threshold={"value": 0.42, "method": "manual"})
    weights, _ = save_model(model, card, tmp_path_factory.mktemp("models") / "tiny-segmenter")
    return weights


@pytest.fixture(scope="session")
def tiny_counter(tmp_path_factory):
    """A randomly initialised density counter model file."""
    from cellcount_core.models.model_files import ModelCard, save_model
    from cellcount_core.models.networks import create_model
    import torch

    torch.manual_seed(0)
    params = {"base_filters": 4, "depth": 2}
    model = create_model("density_counter", **params).eval()
    card = ModelCard(name="tiny-counter", kind="counter", architecture="density_counter", params=params)
    weights, _ = save_model(model, card, tmp_path_factory.mktemp("models") / "tiny-counter")
    return weights
