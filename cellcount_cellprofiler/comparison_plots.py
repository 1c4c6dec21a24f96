"""The comparison report's plots, drawn with matplotlib's Agg canvas (no display, no global pyplot state)."""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cellcount_cellprofiler.agreement import paired

COLORS = ("#e66100", "#1a85ff", "#2ca02c", "#9467bd")  # colour-blind-safe orange and blue first
MARKERS = ("o", "s", "^", "D")
DPI = 110


def _save(figure, path):
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=DPI)
    return path


def scatter_counts(x_label, x, series, path, title):
    """Counts of each method against ``x`` per image, with the identity line.

    ``series`` is [(label, counts, style)]: ``style`` indexes the colour and marker, so that one method keeps
    its look across plots.
    """
    figure = Figure(figsize=(5.6, 5.2), layout="constrained")
    axes = figure.add_subplot()
    high = 1.0
    for label, counts, style in series:
        a, b = paired(x, counts)
        axes.scatter(a, b, s=28, alpha=0.75, color=COLORS[style % 4], marker=MARKERS[style % 4],
                     label=f"{label} (n={a.size})")
        high = max(high, *a, *b) if a.size else high
    axes.plot([0, high * 1.05], [0, high * 1.05], color="0.4", linestyle="--", linewidth=1, label="same count")
    axes.set(xlim=(0, high * 1.05), ylim=(0, high * 1.05), xlabel=f"{x_label} count", ylabel="count by each method",
             title=title, aspect="equal")
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", fontsize=8)
    return _save(figure, path)


def bland_altman(a_label, a, b_label, b, result, path):
    """Difference (B - A) against mean count per image, with the bias and the 95 % limits of agreement."""
    a, b = paired(a, b)
    figure = Figure(figsize=(6.4, 4.4), layout="constrained")
    axes = figure.add_subplot()
    axes.scatter((a + b) / 2, b - a, s=28, alpha=0.75, color="0.25")
    for value, style, text in ((result.mean_difference, "-", "mean"), (result.upper_limit, "--", "+1.96 SD"),
                               (result.lower_limit, "--", "-1.96 SD")):
        axes.axhline(value, color=COLORS[0], linestyle=style, linewidth=1.2)
        axes.annotate(f"{text}: {value:+.1f}", xy=(1, value), xycoords=("axes fraction", "data"),
                      xytext=(-4, 3), textcoords="offset points", ha="right", fontsize=8, color=COLORS[0])
    axes.axhline(0, color="0.5", linewidth=0.8)
    axes.set(xlabel="mean of the two counts", ylabel=f"{b_label} - {a_label}",
             title=f"Bland-Altman: {b_label} vs {a_label} (n={result.n})")
    axes.title.set_fontsize(10)
    axes.grid(alpha=0.3)
    return _save(figure, path)


def overlay(image, point_sets, title, path):
    """The image with each method's object centroids (``point_sets``: [(label, [(x, y), ...])]) marked."""
    from cellcount_core.images.normalization import normalize_percentile, to_grayscale

    gray = np.clip(normalize_percentile(to_grayscale(image)), 0, 1)
    height, width = gray.shape
    scale = 7.0 / max(height, width)
    figure = Figure(figsize=(max(width * scale, 4.0), height * scale + 0.6), layout="constrained")
    axes = figure.add_subplot()
    axes.imshow(gray, cmap="gray", interpolation="nearest")
    styles = ({"marker": "o", "facecolors": "none", "edgecolors": COLORS[0], "s": 70, "linewidths": 1.3},
              {"marker": "+", "color": "#00e5ff", "s": 55, "linewidths": 1.3})
    for (label, points), style in zip(point_sets, styles):
        points = np.asarray(points, dtype=float).reshape(-1, 2)
        axes.scatter(points[:, 0], points[:, 1], label=f"{label}: {len(points)}", **style)
    axes.set(xlim=(-0.5, width - 0.5), ylim=(height - 0.5, -0.5), xticks=[], yticks=[])
    axes.set_title(title, fontsize=9)
    axes.legend(loc="upper right", fontsize=8, framealpha=0.8)
    return _save(figure, path)
