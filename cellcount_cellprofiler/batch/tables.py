"""ExportToSpreadsheet's tables in a run's output folder: which is which, and the image numbers they hold."""

from __future__ import annotations

import csv
from pathlib import Path

IMAGE_NUMBER = "ImageNumber"


def read_table(path):
    """(header, rows) of a CSV file, every value kept as the text CellProfiler wrote."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        return header, list(reader)


def table_paths(folder):
    """Every CSV file under ``folder``, as paths relative to it, sorted."""
    folder = Path(folder)
    return sorted(path.relative_to(folder) for path in folder.rglob("*.csv"))


def image_number_columns(header):
    """Indexes of the columns holding image numbers: ImageNumber and ImageNumber_First/_Second (relationships)."""
    return [index for index, name in enumerate(header) if name == IMAGE_NUMBER or name.startswith(IMAGE_NUMBER + "_")]


def is_image_table(header):
    """The per-image table: an ImageNumber column and no ObjectNumber column."""
    return IMAGE_NUMBER in header and "ObjectNumber" not in header


def find_image_table(folder):
    """The relative path of the per-image table in a run's output folder, or None."""
    for relative in table_paths(folder):
        header, _ = read_table(Path(folder) / relative)
        if is_image_table(header):
            return relative
    return None


def image_numbers(path):
    """The ImageNumber of each row of a per-image table, in order."""
    header, rows = read_table(path)
    column = header.index(IMAGE_NUMBER)
    return [int(row[column]) for row in rows]


def image_number_offset(numbers, first, last):
    """What to add to a chunk's image numbers to make them the batch's.

    CellProfiler writes the batch's own numbers (``first``..``last``) for a -f/-l run: offset 0. A run that
    numbered its image sets from 1 is shifted by ``first - 1``. Raises ValueError for anything else (image sets
    missing, doubled or foreign), since merging those would lose or double rows.
    """
    expected = list(range(first, last + 1))
    if sorted(numbers) == expected:
        return 0
    if sorted(numbers) == list(range(1, last - first + 2)):
        return first - 1
    raise ValueError(f"the image table lists image sets {sorted(numbers)[:10]}... but the run was for {first}..{last}")
