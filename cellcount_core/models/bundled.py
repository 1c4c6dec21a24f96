"""Models shipped inside the package (``cellcount_core/models/weights/``) and resolution of model names to files.

This module does not import torch.
"""

from __future__ import annotations

from pathlib import Path

from cellcount_core.models.model_files import ModelFileError

WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_SEGMENTER = "nuclei-segmenter"
DEFAULT_COUNTER = "nuclei-counter"


def bundled_models(weights_dir: str | Path = WEIGHTS_DIR) -> dict[str, Path]:
    """Return ``{name: card path}`` for every model card (``NAME.json``) in ``weights_dir``, sorted by name."""
    return {path.stem: path for path in sorted(Path(weights_dir).glob("*.json"))}


def resolve_model(name_or_path: str | Path | None, default: str = DEFAULT_SEGMENTER,
                  weights_dir: str | Path = WEIGHTS_DIR) -> Path:
    """Turn a model setting into the path of a model file.

    Parameters
    ----------
    name_or_path : str, Path or None
        ``"default"``, ``""`` or None for ``default``; the name of a bundled model; or the path of a model file
        (``X.json``, ``X.safetensors``, ``X.pt``, or the stem ``X`` when ``X.json`` exists).
    default : str
        Bundled model used for ``"default"``.
    weights_dir : str or Path
        Folder of the bundled models.

    Returns
    -------
    Path
        The card of a bundled model, or the given file.

    Raises
    ------
    ModelFileError
        If the name is neither a bundled model nor an existing file; the message lists the bundled models.
    """
    text = "" if name_or_path is None else str(name_or_path).strip()
    asked_default = text.lower() in ("", "default")
    name = default if asked_default else text
    bundled = bundled_models(weights_dir)
    if name in bundled:
        return bundled[name]
    path = Path(name).expanduser()
    if path.is_file():
        return path
    if Path(f"{path}.json").is_file():
        return Path(f"{path}.json")
    available = ", ".join(bundled) or f"none installed in {weights_dir}"
    which = f"the default model {name!r}" if asked_default else repr(name)
    raise ModelFileError(f"Model {which} is neither a bundled model nor an existing file. Bundled models: "
                         f"{available}. Give one of those names, or a path to a .safetensors or .json model file.")
