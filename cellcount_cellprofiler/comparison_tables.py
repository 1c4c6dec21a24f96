"""Read the ExportToSpreadsheet tables of a comparison run and find its count, truth and image columns.

A comparison run exports ``[prefix]Image.csv`` with ``Count_<Name>`` (IdentifyPrimaryObjects),
``Count_Deep<Name>`` (DeepSegment + DeepThreshold) and ``DeepCount_<Name>`` (DeepCount), and one
``[prefix]<Objects>.csv`` per object set with ``ImageNumber`` and ``Location_Center_X/Y``.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

CLASSICAL, DEEP, REGRESSION = "IdentifyPrimaryObjects", "DeepSegment + DeepThreshold", "DeepCount"
NUCLEAR_STAINS = ("dna", "dapi", "hoechst", "nucle")


@dataclass(frozen=True)
class Method:
    """One way of counting: a label for people, the Image.csv column, and its object table's name if any."""

    label: str
    column: str
    objects: str | None = None


@dataclass
class ExportTables:
    """The Image table of an ExportToSpreadsheet export, and access to its object tables."""

    folder: Path
    prefix: str
    columns: list
    rows: list  # dict per image

    def object_centroids(self, objects):
        """{ImageNumber: [(x, y), ...]} from ``<prefix><objects>.csv``; None when the table is absent."""
        path = self.folder / f"{self.prefix}{objects}.csv"
        if not path.is_file():
            return None
        centroids = {}
        for row in _read_csv(path)[1]:
            point = (number(row.get("Location_Center_X")), number(row.get("Location_Center_Y")))
            if not any(math.isnan(value) for value in point):
                centroids.setdefault(int(row["ImageNumber"]), []).append(point)
        return centroids

    def values(self, column):
        """The column as floats (NaN where empty or not a number)."""
        return [number(row.get(column)) for row in self.rows]


def number(text):
    """A table cell as a float; NaN when empty or not a number."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        sample = handle.readline()
        handle.seek(0)
        delimiter = "\t" if sample.count("\t") > sample.count(",") else ","
        reader = csv.DictReader(handle, delimiter=delimiter)
        return reader.fieldnames or [], list(reader)


def read_exports(folder, prefix=None):
    """Read ``[prefix]Image.csv`` of an ExportToSpreadsheet output folder.

    With ``prefix`` None the prefix is found: the one Image table, or the one that holds deep counts.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder. Name the output folder of the CellProfiler run.")
    if prefix is None:
        prefix = _find_prefix(folder)
    path = folder / f"{prefix}Image.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found. Give the folder ExportToSpreadsheet wrote to, and --prefix if "
                                "it adds a prefix to the file names.")
    columns, rows = _read_csv(path)
    if not rows:
        raise ValueError(f"{path} has no rows: the run processed no image.")
    return ExportTables(folder, prefix, columns, rows)


def _find_prefix(folder):
    tables = sorted(folder.glob("*Image.csv"))
    if not tables:
        raise FileNotFoundError(f"{folder} holds no Image.csv. Run the pipeline with ExportToSpreadsheet (export "
                                "all measurement types) and give its output folder.")
    if len(tables) > 1:
        deep = [table for table in tables if _has_deep_counts(_read_csv(table)[0])]
        if len(deep) != 1:
            names = ", ".join(table.name for table in tables)
            raise ValueError(f"{folder} holds several Image tables ({names}); choose one with --prefix.")
        tables = deep
    return tables[0].name[: -len("Image.csv")]


def _has_deep_counts(columns):
    return any(column.startswith(("Count_Deep", "DeepCount_")) for column in columns)


def find_methods(columns, classical=None, deep=None, regression=None, deep_prefix="Deep"):
    """The counting methods to compare, as ``{name: [Method, ...]}`` per object name.

    Named columns (any of ``classical``, ``deep``, ``regression``) give one comparison. Otherwise every
    ``Count_<Name>`` with a ``Count_<deep_prefix><Name>`` or ``DeepCount_<Name>`` partner is found.

    Raises
    ------
    ValueError
        If a named column is missing, or no comparison is found; the message lists the count columns.
    """
    named = {CLASSICAL: classical, DEEP: deep, REGRESSION: regression}
    if any(named.values()):
        missing = [column for column in named.values() if column and column not in columns]
        if missing:
            raise ValueError(f"Image.csv has no column {', '.join(missing)}. Count columns: {_counts(columns)}.")
        methods = [Method(label, column, _objects_of(column)) for label, column in named.items() if column]
        return {_name_of(methods[0].column, deep_prefix): methods}
    found = {}
    for column in columns:
        if not column.startswith("Count_") or column.startswith(f"Count_{deep_prefix}"):
            continue
        name = column[len("Count_"):]
        methods = [Method(CLASSICAL, column, name)]
        if f"Count_{deep_prefix}{name}" in columns:
            methods.append(Method(DEEP, f"Count_{deep_prefix}{name}", f"{deep_prefix}{name}"))
        if f"DeepCount_{name}" in columns:
            methods.append(Method(REGRESSION, f"DeepCount_{name}"))
        if len(methods) > 1:
            found[name] = methods
    if not found:
        raise ValueError(f"No pair of count columns to compare (Count_<Name> with Count_{deep_prefix}<Name> or "
                         f"DeepCount_<Name>). Count columns: {_counts(columns)}. Name them with --classical, "
                         "--deep and --regression.")
    return found


def _counts(columns):
    return ", ".join(c for c in columns if c.startswith(("Count_", "DeepCount_"))) or "none"


def _objects_of(column):
    return column[len("Count_"):] if column.startswith("Count_") else None


def _name_of(column, deep_prefix):
    name = column.split("_", 1)[-1]
    return name[len(deep_prefix):] if column.startswith(f"Count_{deep_prefix}") else name


def image_column(columns, image_name=None):
    """The image whose files the report shows and matches truth by: ``image_name``, or a nuclear stain."""
    names = [column[len("FileName_"):] for column in columns if column.startswith("FileName_")]
    if image_name is not None:
        if image_name not in names:
            raise ValueError(f"Image.csv has no FileName_{image_name} column; its images are: "
                             f"{', '.join(names) or 'none'}.")
        return image_name
    if not names:
        return None
    stains = [name for name in names if any(stain in name.lower() for stain in NUCLEAR_STAINS)]
    return (stains or names)[0]


def truth_from_csv(path, file_names):
    """True counts for each image file name from a CSV with columns ``image`` and ``true_count``.

    ``image`` matches a file name, with or without its extension. Images missing from the CSV get NaN.
    """
    columns, rows = _read_csv(path)
    if not {"image", "true_count"} <= set(columns):
        raise ValueError(f"Truth table {path} needs the columns image,true_count; it has {', '.join(columns)}.")
    truth = {}
    for row in rows:
        name = Path(row["image"]).name
        truth[name] = truth[Path(name).stem] = number(row["true_count"])
    values = [truth.get(name, truth.get(Path(name).stem, math.nan)) for name in file_names]
    if all(math.isnan(value) for value in values):
        raise ValueError(f"No image of the run is named in {path} (e.g. {file_names[0]!r}); its image column must "
                         "hold the file names of the images.")
    return values
