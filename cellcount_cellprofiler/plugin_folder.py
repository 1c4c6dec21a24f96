"""Where the cellcount plugin files are, installed or in a checkout: the folder to give CellProfiler."""

import importlib.util
from pathlib import Path


def plugins_dir():
    """The folder holding deepsegment.py, deepthreshold.py and deepcount.py."""
    spec = importlib.util.find_spec("cellcount_cellprofiler.plugins")
    return Path(spec.origin).parent
