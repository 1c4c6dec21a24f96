"""The comparison report: per-image counts, agreement between methods, errors against the truth, plots (PNG)
and one self-contained HTML page that embeds them."""

from __future__ import annotations

import base64
import csv
import html
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cellcount_cellprofiler.agreement import agreement

DEFAULT_OVERLAYS = 4
STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:14px}th,td{border:1px solid #ccc;padding:3px 8px;
text-align:right}th{background:#f2f2f2}td.name{text-align:left}img{max-width:100%;margin:.5em 0;
border:1px solid #ddd}.note{color:#555;font-size:14px}figure{display:inline-block;margin:0 1em 1em 0}"""


@dataclass
class Report:
    """What :func:`write_report` wrote, and a few lines to print."""

    html: Path
    table: Path
    images: list = field(default_factory=list)
    summary: list = field(default_factory=list)


@dataclass
class _Run:
    """Everything the report's sections read, and the report they add to."""

    exports: object
    names: list  # a name per image: its file name, or "image N"
    truth: list | None
    image_name: str | None
    overlays: int
    folder: Path
    report: Report


def write_report(exports, comparisons, folder, truth=None, image_name=None, overlays=DEFAULT_OVERLAYS):
    """Write the report of a comparison run into ``folder``.

    Parameters
    ----------
    exports : comparison_tables.ExportTables
        The run's tables.
    comparisons : dict
        ``{name: [Method, ...]}`` from :func:`comparison_tables.find_methods`; the first method is the reference.
    folder : Path
        Where ``report.html``, ``counts.csv`` and the PNG plots go (created).
    truth : list of float, optional
        True count per image (NaN where unknown).
    image_name : str, optional
        The image (``FileName_<image>``) to draw overlays on and name the images by.
    overlays : int
        How many images to draw with both object sets, worst disagreements first.

    Returns
    -------
    Report
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    report = Report(folder / "report.html", folder / "counts.csv")
    run = _Run(exports, _image_names(exports, image_name), truth, image_name, overlays, folder, report)
    sections = [_section(run, name, methods) for name, methods in comparisons.items()]
    methods = list(dict.fromkeys(method for methods in comparisons.values() for method in methods))
    _write_table(run, methods)
    report.html.write_text(_page(run, methods, sections), encoding="utf-8")
    return report


def _image_names(exports, image_name):
    numbers = [row.get("ImageNumber") or str(index + 1) for index, row in enumerate(exports.rows)]
    if image_name is None:
        return [f"image {number}" for number in numbers]
    return [row.get(f"FileName_{image_name}") or f"image {number}" for row, number in zip(exports.rows, numbers)]


def _section(run, name, methods):
    """The HTML of one object set: agreement and truth tables, plots, overlays."""
    from cellcount_cellprofiler import comparison_plots as plots

    counts = {method.column: run.exports.values(method.column) for method in methods}
    reference, others = methods[0], methods[1:]
    results = [(method, agreement(counts[reference.column], counts[method.column])) for method in others]
    run.report.summary += [f"{name}: {method.label} - {reference.label}: mean difference {r.mean_difference:+.2f}, "
                           f"MAE {r.mae:.2f}, limits of agreement {r.lower_limit:+.1f} to {r.upper_limit:+.1f} "
                           f"({r.n} images)" for method, r in results]
    series = [(method.label, counts[method.column], style) for style, method in enumerate(methods)]
    figures = [plots.scatter_counts(reference.label, counts[reference.column], series[1:],
                                    run.folder / f"scatter_{name}.png", f"{name}: counts per image")] if others else []
    figures += [plots.bland_altman(reference.label, counts[reference.column], method.label, counts[method.column],
                                   r, run.folder / f"bland_altman_{name}_{method.column}.png")
                for method, r in results]
    parts = [f"<h2>{html.escape(name)}</h2>"] + ([_agreement_table(reference, results)] if results else [])
    if run.truth is not None:
        parts.append(_truth_table(run, name, methods, counts))
        figures.append(plots.scatter_counts("true", run.truth, series, run.folder / f"truth_{name}.png",
                                            f"{name}: counts against the truth"))
    overlays, notes = _overlays(run, name, methods, counts)
    parts += [_figure(path) for path in figures]
    if overlays or notes:
        parts.append("<h3>Images with the largest disagreement</h3>")
        parts += [f'<p class="note">{html.escape(note)}</p>' for note in notes]
        parts += [_figure(path) for path in overlays]
    run.report.images += figures + overlays
    return "\n".join(parts)


def _agreement_table(reference, results):
    header = ("<table><tr><th>method</th><th>images</th><th>mean difference</th><th>SD</th><th>MAE</th>"
              "<th>limits of agreement (95 %)</th><th>correlation r</th></tr>")
    cells = [f'<tr><td class="name">{html.escape(method.label)} - {html.escape(reference.label)}</td>'
             f"<td>{r.n}</td><td>{r.mean_difference:+.2f}</td><td>{r.sd_difference:.2f}</td><td>{r.mae:.2f}</td>"
             f"<td>{r.lower_limit:+.1f} to {r.upper_limit:+.1f}</td><td>{r.correlation:.3f}</td></tr>"
             for method, r in results]
    return header + "".join(cells) + "</table>"


def _truth_table(run, name, methods, counts):
    from cellcount_core.counts.metrics import count_errors

    truth = np.asarray(run.truth, dtype=float)
    cells = []
    for method in methods:
        values = np.asarray(counts[method.column], dtype=float)
        known = np.isfinite(truth) & np.isfinite(values) & (truth > 0)
        if not known.any():
            continue
        errors = count_errors(truth[known], values[known])
        cells.append(f'<tr><td class="name">{html.escape(method.label)}</td><td>{int(known.sum())}</td>'
                     f"<td>{errors['mae']:.2f}</td><td>{errors['medae']:.2f}</td><td>{errors['mpe']:+.1f}</td>"
                     f"<td>{errors['mape']:.1f}</td></tr>")
        run.report.summary.append(f"{name}: {method.label} against the truth: MAE {errors['mae']:.2f}, MPE "
                                  f"{errors['mpe']:+.1f} % ({int(known.sum())} images)")
    return ("<h3>Errors against the true counts</h3><table><tr><th>method</th><th>images</th><th>MAE</th>"
            "<th>MedAE</th><th>MPE %</th><th>MAPE %</th></tr>" + "".join(cells) + "</table>"
            '<p class="note">Images with a true count of 0 are left out (percentage errors are undefined).</p>')


def _overlays(run, name, methods, counts):
    """Overlay PNGs of the images where the first two methods disagree most, and notes on what was skipped."""
    from cellcount_cellprofiler import comparison_plots as plots

    drawn = [method for method in methods if method.objects][:2]
    if run.overlays <= 0 or not drawn:
        return [], []
    if run.image_name is None:
        return [], ["Image.csv has no FileName_ column, so no image can be shown."]
    tables = [(method, run.exports.object_centroids(method.objects)) for method in drawn]
    notes = [f"No table {run.exports.prefix}{method.objects}.csv, so its objects are not drawn."
             for method, points in tables if points is None]
    tables = [(method, points) for method, points in tables if points is not None]
    paths = []
    for rank, index in enumerate(_worst_first(run, counts, methods)[:run.overlays] if tables else [], start=1):
        row = run.exports.rows[index]
        folder = row.get(f"PathName_{run.image_name}", "")
        path = Path(folder) / row.get(f"FileName_{run.image_name}", "")
        if not path.is_file():
            notes.append(f"Image {run.names[index]} was not found at {folder}; not drawn.")
            continue
        number = int(row.get("ImageNumber") or index + 1)
        point_sets = [(method.label, points.get(number, [])) for method, points in tables]
        shown = ", ".join(f"{method.label} {_count_text(counts[method.column][index])}" for method in methods)
        if run.truth is not None:
            shown += f", true {_count_text(run.truth[index])}"
        paths.append(plots.overlay(_read_image(path), point_sets, f"{run.names[index]}\n{shown}",
                                   run.folder / f"overlay_{name}_{rank:02d}_{Path(run.names[index]).stem}.png"))
    return paths, notes


def _worst_first(run, counts, methods):
    """Image indices by the absolute difference between the first two methods (or the one and the truth),
    largest first."""
    pair = [counts[method.column] for method in methods[:2]]
    first, second = (np.asarray(values, dtype=float) for values in (pair if len(pair) == 2 else [run.truth] + pair))
    difference = np.nan_to_num(np.abs(second - first), nan=-1.0)
    return list(np.argsort(-difference, kind="stable"))


def _read_image(path):
    from cellcount_core.images.image_io import read_image

    return read_image(path)


def _count_text(value):
    return "-" if math.isnan(value) else f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def _figure(path):
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<figure><img alt="{html.escape(Path(path).stem)}" src="data:image/png;base64,{data}"></figure>'


def _write_table(run, methods):
    known = run.truth is not None
    with open(run.report.table, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["ImageNumber", "image"] + [method.column for method in methods] + ["true_count"] * known)
        for index, row in enumerate(run.exports.rows):
            values = [row.get(method.column, "") for method in methods]
            truth = [_count_text(run.truth[index])] if known else []
            writer.writerow([row.get("ImageNumber", index + 1), run.names[index]] + values + truth)


def _page(run, methods, sections):
    header = "".join(f"<th>{html.escape(m.column)}<br><small>{html.escape(m.label)}</small></th>" for m in methods)
    values = {method.column: run.exports.values(method.column) for method in methods}
    rows = []
    for index, row in enumerate(run.exports.rows):
        cells = "".join(f"<td>{_count_text(values[method.column][index])}</td>" for method in methods)
        true_cell = f"<td>{_count_text(run.truth[index])}</td>" if run.truth is not None else ""
        rows.append(f'<tr><td>{html.escape(str(row.get("ImageNumber", index + 1)))}</td>'
                    f'<td class="name">{html.escape(run.names[index])}</td>{cells}{true_cell}</tr>')
    truth_header = "<th>true count</th>" if run.truth is not None else ""
    table = f"<table><tr><th>#</th><th>image</th>{header}{truth_header}</tr>" + "".join(rows) + "</table>"
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Cell count comparison</title>"
            f"<style>{STYLE}</style></head><body><h1>Cell count comparison</h1>"
            f'<p class="note">{len(run.exports.rows)} images from {html.escape(str(run.exports.folder))} '
            f"({html.escape(run.exports.prefix)}Image.csv). Differences are each method minus the first one "
            f"({html.escape(methods[0].label)}).</p>"
            + "\n".join(sections) + "<h2>Counts per image</h2>" + table + "</body></html>")
