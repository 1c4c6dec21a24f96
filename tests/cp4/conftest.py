"""Tests that run under CellProfiler 4.2.8 on Python 3.9: ``make test-cp4`` (its own venv, .venv-cp4).

Anywhere else (the CellProfiler 5 venv of ``make test``) pytest collects nothing from this folder.
"""

import os
from importlib import metadata

import pytest

from cp4_support import CP4_VERSION, DEFAULT_JAVA_HOME, IMAGES, PLUGINS


def _installed(distribution):
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


if _installed("cellprofiler-core") != CP4_VERSION:
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture(scope="session")
def cp4():
    """Headless CellProfiler 4.2.8 with this checkout's plugin folder registered; returns its bad-modules list."""
    os.environ.setdefault("JAVA_HOME", DEFAULT_JAVA_HOME)
    from cellprofiler_core.preferences import set_headless, set_plugin_directory

    set_headless()
    set_plugin_directory(str(PLUGINS), globally=False)
    from cellprofiler_core.utilities.core.modules import badmodules, fill_modules

    fill_modules()
    return list(badmodules)


@pytest.fixture(scope="session")
def synthetic_images(tmp_path_factory):
    """Two 16-bit synthetic PNG images in a folder; returns (folder, {file name: true count})."""
    import imageio.v3 as iio

    from cellcount_core.images.synthetic import synthetic_cells

    folder = tmp_path_factory.mktemp("images")
    counts = {}
    for index, (n_cells, diameter) in enumerate(IMAGES):
        cells = synthetic_cells((512, 512), n_cells, diameter, seed=index, dtype="uint16")
        name = f"synthetic_{index + 1:02d}_{cells.count}cells.png"
        iio.imwrite(folder / name, cells.image)
        counts[name] = cells.count
    return folder, counts
