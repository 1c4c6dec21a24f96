"""Model files: safetensors weights + a JSON card that says how to rebuild and use the network.

A model ``NAME`` is ``NAME.safetensors`` + ``NAME.json``. Loading never executes code from a file: weights are
read with safetensors, or, for legacy ``.pt``/``.pth`` state dicts, with ``torch.load(weights_only=True)``.
This module imports torch only inside the functions that need it, so :func:`read_card` works without torch.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

#: 2 (2026-12-03) added ``count_scale``; 3 (2026-12-03) ``small_density_diameter``.
FORMAT_VERSION = 3
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth")
SAVE_DTYPES = ("float16", "bfloat16", "float32")
KINDS = ("segmenter", "counter")
INPUTS = ("image", "mask")
REQUIRED_FIELDS = ("name", "kind", "architecture")
#: Cards are a few kB (the bundled ones 3 and 7 kB); a larger file is refused before it is parsed.
MAX_CARD_BYTES = 1_000_000


class ModelFileError(Exception):
    """A model file is missing, corrupt, unsafe or does not match its card."""


@dataclass
class ModelCard:
    """Everything needed to rebuild a network and use it correctly (the ``NAME.json`` beside the weights).

    Attributes
    ----------
    name : str
        Model name (the file stem of bundled models).
    kind : {"segmenter", "counter"}
        What the network outputs: logits of a probability map, or a count / count density.
    architecture : str
        Name accepted by :func:`cellcount_core.models.networks.create_model`.
    params : dict
        Keyword arguments of ``create_model``.
    input : {"image", "mask"}
        What the network was trained on (counters may take binary masks).
    normalization : dict
        Input normalization, e.g. ``{"method": "percentile", "low": 1.0, "high": 99.8}``.
    input_size : [int, int] or None
        Fixed input (height, width) of counters such as ``dcc_counter``; None when any size works.
    diameter_range : [float, float] or None
        Smallest and largest cell diameter (pixels) seen in training.
    diameter_band : [float, float] or None
        Cell diameters (pixels, as :func:`cellcount_core.objects.diameter.estimate_diameter` measures them) that the
        network handles well; inference resizes images whose cells fall outside it (see
        :mod:`cellcount_core.running.cell_scale`). None: images are never resized.
    default_threshold : dict
        ``{"value": float, "method": str}``: the probability threshold and how it was chosen.
    count_scale : float
        Counters: their raw count is multiplied by this (calibrated on training images by
        ``cellcount-train calibrate-count``; 1.0: not calibrated).
    small_density_diameter : float or None
        Density counters: where the image's density map spreads a cell over less than this diameter (pixels,
        :func:`cellcount_core.running.cell_scale.density_diameter`), its cells are smaller than the counter counts
        well and it counts the image enlarged (measured by ``python -m training.density_rule``). None: never.
    training, metrics : dict
        Training data, command, seed and split; validation numbers.
    description : str
        One or two sentences for users.
    format_version : int
        Card format; readers refuse versions newer than :data:`FORMAT_VERSION`.
    """

    name: str
    kind: str
    architecture: str
    params: dict = field(default_factory=dict)
    input: str = "image"
    normalization: dict = field(default_factory=lambda: {"method": "percentile", "low": 1.0, "high": 99.8})
    input_size: list | None = None
    diameter_range: list | None = None
    diameter_band: list | None = None
    default_threshold: dict = field(default_factory=lambda: {"value": 0.5, "method": "simple"})
    count_scale: float = 1.0
    small_density_diameter: float | None = None
    training: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    description: str = ""
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        """The card as a JSON-ready dict (tuples become lists)."""
        return json.loads(self.to_json())

    def to_json(self) -> str:
        """The card as indented JSON text, in the current format (a card read from an older one is upgraded)."""
        return json.dumps({**asdict(self), "format_version": FORMAT_VERSION}, indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: Any, source: str = "model card") -> "ModelCard":
        """Validate ``data`` (a parsed card) and build a card; ``source`` names the file in error messages.

        Raises
        ------
        ModelFileError
            On a missing required field, an unknown field, a field of the wrong type or value, or a
            ``format_version`` newer than this version of cellcount reads.
        """
        if not isinstance(data, dict):
            raise ModelFileError(f"{source}: a model card must be a JSON object, got {type(data).__name__}.")
        version = data.get("format_version", FORMAT_VERSION)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ModelFileError(f"{source}: field 'format_version' must be a positive integer, got {version!r}.")
        if version > FORMAT_VERSION:
            raise ModelFileError(f"{source}: card format_version {version} is newer than this cellcount supports "
                                 f"({FORMAT_VERSION}); update cellcount to load this model.")
        missing = [name for name in REQUIRED_FIELDS if name not in data]
        if missing:
            raise ModelFileError(f"{source}: missing required field(s) {', '.join(missing)}.")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelFileError(f"{source}: unknown field(s) {', '.join(unknown)} for card format_version "
                                 f"{version}; known fields: {', '.join(sorted(known))}.")
        card = cls(**data)
        card._validate(source)
        return card

    def _validate(self, source: str) -> None:
        """Check every field's type and allowed values; raise ModelFileError naming the field."""
        def fail(name: str, expected: str) -> None:
            raise ModelFileError(f"{source}: field '{name}' must be {expected}, got {getattr(self, name)!r}.")

        for name in ("name", "architecture"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                fail(name, "a non-empty string")
        if self.kind not in KINDS:
            fail("kind", " or ".join(repr(k) for k in KINDS))
        if self.input not in INPUTS:
            fail("input", " or ".join(repr(k) for k in INPUTS))
        if not isinstance(self.description, str):
            fail("description", "a string")
        for name in ("params", "normalization", "default_threshold", "training", "metrics"):
            if not isinstance(getattr(self, name), dict):
                fail(name, "a JSON object")
        if not isinstance(self.normalization.get("method"), str):
            fail("normalization", 'an object with a "method" string')
        threshold = self.default_threshold.get("value")
        if not _is_number(threshold) or not 0.0 <= threshold <= 1.0:
            fail("default_threshold", 'an object with a "value" between 0 and 1')
        if not (_is_number(self.count_scale) and 0.0 < self.count_scale < float("inf")):
            fail("count_scale", "a positive number")
        if self.small_density_diameter is not None and not (_is_number(self.small_density_diameter)
                                                            and self.small_density_diameter > 0):
            fail("small_density_diameter", "null or a positive number of pixels")
        if self.input_size is not None and not _is_pair(self.input_size, int, positive=True):
            fail("input_size", "null or [height, width] positive integers")
        for name in ("diameter_range", "diameter_band"):
            pair = getattr(self, name)
            if pair is not None and not (_is_pair(pair, (int, float), positive=True) and pair[0] <= pair[1]):
                fail(name, "null or [min, max] positive numbers with min <= max")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_pair(value: Any, kind: type | tuple, positive: bool) -> bool:
    return (isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(v, kind) and not isinstance(v, bool) and (v > 0 or not positive) for v in value))


def model_paths(path: str | Path) -> tuple[Path, Path]:
    """Return ``(card_path, weights_path)`` for a model given as ``X``, ``X.json`` or a weights file.

    For ``X`` and ``X.json`` the weights are ``X.safetensors``, else the first existing of ``X.pt``/``X.pth``
    (``X.safetensors`` when none exists, so error messages name the preferred file).
    """
    path = Path(path)
    if path.suffix in WEIGHT_SUFFIXES:
        return path.with_suffix(".json"), path
    stem = path.with_suffix("") if path.suffix == ".json" else path
    candidates = [Path(f"{stem}{suffix}") for suffix in WEIGHT_SUFFIXES]
    weights = next((c for c in candidates if c.is_file()), candidates[0])
    return Path(f"{stem}.json"), weights


def read_card(path: str | Path) -> ModelCard:
    """Read and validate the card of the model at ``path`` (``X``, ``X.json`` or ``X.safetensors``).

    Raises
    ------
    ModelFileError
        If the card is missing, is not valid JSON, or fails :meth:`ModelCard.from_dict`.
    """
    card_path, _ = model_paths(path)
    if not card_path.is_file():
        raise ModelFileError(f"Model card {card_path} not found; a model needs NAME.json beside "
                             "NAME.safetensors. Check the path, or re-save the model with save_model().")
    size = card_path.stat().st_size
    if size > MAX_CARD_BYTES:
        raise ModelFileError(f"Model card {card_path} is {size} bytes, more than a model card can be "
                             f"({MAX_CARD_BYTES} bytes; cards are a few kB): it is not a model card. Restore it "
                             "or re-save the model.")
    try:
        data = json.loads(card_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        reason = "nested too deeply" if isinstance(error, RecursionError) else error
        raise ModelFileError(f"Model card {card_path} is not valid JSON ({reason}); the file is corrupt or "
                             "truncated: restore or re-save it.") from None
    return ModelCard.from_dict(data, source=str(card_path))


def update_card(path: str | Path, fields: dict | None = None, metrics: dict | None = None) -> Path:
    """Rewrite the card of the model at ``path`` with ``fields`` replaced and ``metrics`` merged into its metrics.

    The new card is validated before anything is written, then replaces the old one in one step; the weights
    are untouched. Returns the card's path.
    """
    card_path, _ = model_paths(path)
    data = read_card(path).to_dict()
    data.update(fields or {})
    data["metrics"] = {**data["metrics"], **(metrics or {})}
    text = ModelCard.from_dict(data, source=str(card_path)).to_json()
    tmp = card_path.with_name(card_path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(card_path)
    return card_path


def save_model(model, card: ModelCard, path: str | Path, dtype: str = "float16") -> tuple[Path, Path]:
    """Write ``model``'s weights to ``X.safetensors`` and ``card`` to ``X.json``.

    Parameters
    ----------
    model : torch.nn.Module
        A network built by ``create_model(card.architecture, **card.params)``.
    card : ModelCard
        Its card; checked to rebuild a network whose weights fit ``model``.
    path : str or Path
        ``X`` or ``X.safetensors`` (or ``X.json``); parent folders are created.
    dtype : {"float16", "bfloat16", "float32"}
        Storage type of the learned parameters (float16 halves the file). Buffers such as BatchNorm running
        statistics keep their own type, so they stay exact.

    Returns
    -------
    (Path, Path)
        The weights and card paths written.
    """
    import torch
    from safetensors.torch import save_file

    if dtype not in SAVE_DTYPES:
        raise ValueError(f"dtype {dtype!r} is not supported; use one of {', '.join(SAVE_DTYPES)}.")
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    card_path, weights_path = Path(f"{stem}.json"), Path(f"{stem}.safetensors")
    card = ModelCard.from_dict(card.to_dict(), source=f"card for {weights_path}")
    parameter_names = {name for name, _ in model.named_parameters()}
    store_type = getattr(torch, dtype)
    tensors = {
        name: (tensor.to(store_type) if name in parameter_names and tensor.is_floating_point() else tensor)
        .detach().cpu().contiguous().clone()
        for name, tensor in model.state_dict().items()
    }
    _check_fits(_build(card, str(card_path), on_meta_device=True), tensors, str(weights_path), card.architecture)
    stem.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(weights_path), metadata={"format": "pt", "card": card_path.name})
    card_path.write_text(card.to_json(), encoding="utf-8")
    return weights_path, card_path


def load_model(path: str | Path, device: Any = "cpu"):
    """Load the model at ``path`` (``X``, ``X.json``, ``X.safetensors`` or a legacy ``X.pt``/``X.pth``).

    Parameters
    ----------
    path : str or Path
        The model file; the card ``X.json`` must be beside the weights.
    device : str or torch.device
        Where to put the network.

    Returns
    -------
    (torch.nn.Module, ModelCard)
        The network in eval mode, float32, on ``device``, and its card.

    Raises
    ------
    ModelFileError
        If the weights or card are missing, corrupt, unsafe (a pickle with code), of a newer format, name
        an unknown architecture, or do not fit the architecture.
    """
    card = read_card(path)
    card_path, weights_path = model_paths(path)
    if not weights_path.is_file():
        raise ModelFileError(f"Model weights {weights_path} not found (card {card_path} exists); put the "
                             f"{weights_path.name} file beside the card, or re-save the model with save_model().")
    tensors = _read_weights(weights_path)
    # shapes first, on torch's meta device (no memory): a card whose params ask for a huge network fails here
    _check_fits(_build(card, str(card_path), on_meta_device=True), tensors, str(weights_path), card.architecture)
    model = _build(card, str(card_path))
    model.load_state_dict(tensors)
    return model.to(device).eval(), card


def _build(card: ModelCard, source: str, on_meta_device: bool = False):
    """Build the card's network (its shapes only, without memory, ``on_meta_device``); unknown architectures or
    parameters become ModelFileError."""
    import torch

    from cellcount_core.models.networks import create_model

    try:
        with torch.device("meta") if on_meta_device else contextlib.nullcontext():
            return create_model(card.architecture, **card.params)
    except (TypeError, ValueError, OverflowError, RuntimeError) as error:  # RuntimeError: sizes beyond torch's
        raise ModelFileError(f"{source}: cannot build the network: {error}") from None


def _read_weights(weights_path: Path) -> dict:
    """Read a state dict without executing code: safetensors, or torch.load(weights_only=True)."""
    import pickle

    import torch

    if weights_path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(weights_path))
        except Exception as error:  # safetensors raises its own error type for any malformed file
            raise ModelFileError(f"Model weights {weights_path} are corrupt or truncated ({error}); restore the "
                                 "file or re-save the model.") from None
    try:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ModelFileError(f"Refused to load {weights_path}: it is a pickle holding Python objects other than "
                             "tensors, which could run code, so it was not unpickled. Only plain state dicts are "
                             "accepted; convert the model to .safetensors in a trusted environment.") from None
    except Exception as error:
        raise ModelFileError(f"Model weights {weights_path} are corrupt or not a PyTorch file ({error}).") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise ModelFileError(f"Model weights {weights_path} must hold a state dict (parameter name -> tensor), "
                             f"got {type(state).__name__}; save model.state_dict(), not the model.")
    return state


def _check_fits(model, tensors: dict, source: str, architecture: str, shown: int = 5) -> None:
    """Raise ModelFileError listing missing/unexpected keys and shape mismatches between weights and model."""
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    mismatched = [f"{name} {tuple(tensors[name].shape)} vs {shape}" for name, shape in expected.items()
                  if name in tensors and tuple(tensors[name].shape) != shape]
    problems = [f"{label} ({len(items)}): {', '.join(items[:shown])}{', ...' if len(items) > shown else ''}"
                for label, items in (("missing keys", missing), ("unexpected keys", unexpected),
                                     ("shape mismatches (file vs architecture)", mismatched)) if items]
    if problems:
        raise ModelFileError(f"Weights {source} do not fit architecture {architecture!r} built from the card: "
                             + "; ".join(problems) + ". Check the card's architecture and params.")
