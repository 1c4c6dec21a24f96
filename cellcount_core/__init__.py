"""cellcount_core: deep-learning cell segmentation and counting, shared by the CellProfiler plugins and training.

Importing this package does not import torch; the submodules that run networks import it themselves.
"""

__version__ = "0.1.0"
