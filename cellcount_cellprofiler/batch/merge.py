"""Merge the chunks' ExportToSpreadsheet tables into one table of each name in OUT, each image set once."""

from __future__ import annotations

import csv
from pathlib import Path

from cellcount_cellprofiler.batch.tables import image_number_columns, table_paths

FAILURES_TABLE = "failures.csv"


def merge_tables(sources, destination):
    """Concatenate the tables of each name found in ``sources`` and write them into ``destination``.

    Parameters
    ----------
    sources : list of (Path, int)
        Output folders of done chunks in image-number order, each with the offset that turns its image numbers
        into the batch's.
    destination : Path
        The batch's output folder; each table keeps its relative path (``Image.csv``, ``Nuclei.csv``, ...).

    Returns
    -------
    list of Path
        The merged tables. Columns are the union over chunks in first-seen order (empty where a chunk lacked
        one); tables without an ImageNumber column (``Experiment.csv``) are taken from the first chunk.
    """
    names = sorted({relative for folder, _ in sources for relative in table_paths(folder)})
    merged = []
    for relative in names:
        parts = [(folder / relative, offset) for folder, offset in sources if (folder / relative).exists()]
        target = Path(destination) / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        _concatenate(parts, target)
        merged.append(target)
    return merged


def _header(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return next(csv.reader(handle), [])


def _concatenate(parts, target):
    columns = list(dict.fromkeys(name for path, _ in parts for name in _header(path)))
    numbered = image_number_columns(columns)
    if not numbered:
        parts = parts[:1]  # one experiment-wide table per run: the first chunk's stands for the batch
    with open(target, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(columns)
        for path, offset in parts:
            with open(path, newline="", encoding="utf-8") as handle:
                reader = csv.reader(handle)
                header = next(reader, [])
                positions = [header.index(name) if name in header else None for name in columns]
                for row in reader:
                    values = [row[position] if position is not None else "" for position in positions]
                    for index in numbered:
                        if offset and values[index]:
                            values[index] = str(int(values[index]) + offset)
                    writer.writerow(values)


def write_failures(failures, destination):
    """``failures.csv`` in ``destination``: one row per failed image set (ImageNumber, image, reason, log)."""
    path = Path(destination) / FAILURES_TABLE
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["ImageNumber", "image", "reason", "log"])
        writer.writerows([failure["ImageNumber"], failure["image"], failure["reason"], failure["log"]]
                         for failure in failures)
    return path
