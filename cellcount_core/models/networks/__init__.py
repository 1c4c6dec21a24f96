"""PyTorch networks for segmentation and counting, built by name with :func:`create_model`.

Importing this subpackage imports torch; ``import cellcount_core`` alone does not.
"""

from .registry import available_architectures, create_model

__all__ = ["available_architectures", "create_model"]
