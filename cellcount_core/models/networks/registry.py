"""Registry of architectures by name, so a model card can rebuild any network from its name and parameters."""

from __future__ import annotations

import inspect
from typing import Callable

from torch import nn

from .counters import dcc_counter, density_counter
from .resunets import c_resunet, resunet
from .unets import dcc_unet, small_unet, unet

_ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "dcc_unet": dcc_unet,
    "unet": unet,
    "small_unet": small_unet,
    "resunet": resunet,
    "c_resunet": c_resunet,
    "dcc_counter": dcc_counter,
    "density_counter": density_counter,
}


def available_architectures() -> list[str]:
    """Names accepted by :func:`create_model`, sorted."""
    return sorted(_ARCHITECTURES)


def create_model(name: str, **params) -> nn.Module:
    """Build the network ``name`` with keyword ``params`` (randomly initialized, training mode).

    Raises
    ------
    ValueError
        If ``name`` is unknown (the message lists the available names) or a parameter is not accepted by
        that architecture (the message lists the accepted ones).
    """
    try:
        factory = _ARCHITECTURES[name]
    except (KeyError, TypeError):
        raise ValueError(f"Unknown architecture {name!r}; available: {', '.join(available_architectures())}.") from None
    accepted = inspect.signature(factory).parameters
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(f"Architecture {name!r} does not take parameter(s) {', '.join(unknown)}; "
                         f"it accepts: {', '.join(accepted)}.")
    return factory(**params)
