"""Evaluation plots: F1 against threshold, predicted against true counts, Bland-Altman.

The figures are drawn with matplotlib's object API on an Agg canvas, so no window opens and the global pyplot
state is never touched (safe on headless machines and inside tests).
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from cellcount_cellprofiler.agreement import agreement

__all__ = ["plot_f1_curve", "plot_counts", "plot_bland_altman", "plot_lines"]

_MARKERS = {"kneedle": ("tab:red", "--"), "argmax": ("tab:green", ":")}


def _figure(size=(5.5, 4.5)):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def _label(axes, xlabel: str, ylabel: str, title: str) -> None:
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(textwrap.fill(title, 55), fontsize="medium")
    axes.grid(alpha=0.3)


def _save(figure, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path


def plot_f1_curve(
    thresholds: Sequence[float],
    f1: Sequence[float],
    path,
    *,
    precision: Sequence[float] | None = None,
    recall: Sequence[float] | None = None,
    choices: Mapping[str, float | None] | None = None,
    title: str = "F1 against threshold",
) -> Path:
    """Plot F1 (and optionally precision and recall) against the probability threshold.

    Parameters
    ----------
    thresholds, f1 : sequences of float
        The threshold grid and the F1 score at each threshold.
    path : str or Path
        Output image file (its extension picks the format).
    precision, recall : sequences of float, optional
        Drawn as thin lines when given.
    choices : mapping of str to float, optional
        Chosen thresholds by method name (e.g. ``{"kneedle": 0.35, "argmax": 0.5}``), marked by vertical lines;
        a ``None`` value (no choice, e.g. no knee) is only named in the legend.
    title : str
        Axes title.

    Returns
    -------
    Path
        The written file.
    """
    figure, axes = _figure()
    axes.plot(thresholds, f1, "o-", color="tab:blue", label="F1", linewidth=2, markersize=4)
    if precision is not None:
        axes.plot(thresholds, precision, "-", color="tab:orange", label="precision", linewidth=1)
    if recall is not None:
        axes.plot(thresholds, recall, "-", color="tab:purple", label="recall", linewidth=1)
    for method, value in (choices or {}).items():
        if value is None:
            axes.plot([], [], " ", label=f"{method}: none")
            continue
        color, style = _MARKERS.get(method, ("black", "-."))
        score = float(np.interp(value, thresholds, f1))
        axes.axvline(value, color=color, linestyle=style, label=f"{method}: {value:.2f} (F1 {score:.3f})")
    axes.set_ylim(0.0, 1.02)
    _label(axes, "threshold", "score", title)
    axes.legend(loc="lower center", fontsize="small")
    return _save(figure, path)


def plot_counts(true_counts: Sequence[float], predicted: Mapping[str, Sequence[float]], path, *,
                title: str = "Predicted against true counts", symlog: bool = False) -> Path:
    """Scatter predicted against true counts for each method, with the identity line.

    Parameters
    ----------
    true_counts : sequence of float
        True count per image.
    predicted : mapping of str to sequence of float
        Predicted counts per image, one entry per method (same order as ``true_counts``).
    path : str or Path
        Output image file.
    title : str
        Axes title.
    symlog : bool
        Predicted counts on a symmetric log axis (linear below 1), where some methods over-split a hundredfold.

    Returns
    -------
    Path
    """
    true_counts = np.asarray(true_counts, float)
    figure, axes = _figure()
    # on a symmetric log axis the identity spans the true counts only, so that the x axis stays on them
    highest = [] if symlog else [np.nanmax(np.asarray(counts, float), initial=1.0) for counts in predicted.values()]
    top = max([true_counts.max(initial=1.0)] + highest)
    axes.plot([0, top], [0, top], color="gray", linewidth=1, label="identity")
    for name, counts in predicted.items():
        axes.scatter(true_counts, np.asarray(counts, float), s=10, alpha=0.6, label=name)
    if symlog:
        axes.set_yscale("symlog", linthresh=1.0)
    _label(axes, "true count", "predicted count", title)
    axes.legend(fontsize="small")
    return _save(figure, path)


def plot_bland_altman(true_counts: Sequence[float], predicted: Mapping[str, Sequence[float]], path, *,
                      title: str = "Bland-Altman: predicted - true") -> Path:
    """Bland-Altman plot: difference (predicted - true) against the mean of both, per method.

    Each method's bias (mean difference) is drawn as a solid line and its 95 % limits of agreement
    (bias +- 1.96 standard deviations) as dotted lines of the same colour.

    Parameters
    ----------
    true_counts : sequence of float
        True count per image.
    predicted : mapping of str to sequence of float
        Predicted counts per image, one entry per method.
    path : str or Path
        Output image file.
    title : str
        Axes title.

    Returns
    -------
    Path
    """
    true_counts = np.asarray(true_counts, float)
    figure, axes = _figure()
    axes.axhline(0.0, color="gray", linewidth=1)
    for index, (name, counts) in enumerate(predicted.items()):
        counts = np.asarray(counts, float)
        color = f"C{index}"
        result = agreement(true_counts, counts)
        spread = result.upper_limit - result.mean_difference
        axes.scatter((counts + true_counts) / 2.0, counts - true_counts, s=10, alpha=0.6, color=color,
                     label=f"{name}: bias {result.mean_difference:+.2f}, LoA +-{spread:.2f}")
        axes.axhline(result.mean_difference, color=color, linewidth=1.5)
        for limit in (result.lower_limit, result.upper_limit):
            axes.axhline(limit, color=color, linewidth=1, linestyle=":")
    _label(axes, "mean of predicted and true count", "predicted - true", title)
    axes.legend(fontsize="small")
    return _save(figure, path)


def plot_lines(x: Sequence[float], curves: Mapping[str, Sequence[float | None]], path, *, xlabel: str, ylabel: str,
               title: str) -> Path:
    """One line with markers per named curve over the same `x` (None: no point there)."""
    figure, axes = _figure()
    for name, values in curves.items():
        axes.plot(x, [np.nan if value is None else value for value in values], marker="o", label=name)
    _label(axes, xlabel, ylabel, title)
    axes.legend(fontsize="small")
    return _save(figure, path)
