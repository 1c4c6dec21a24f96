"""Chunks of image sets: consecutive runs of whole groups (or single image sets), run by one CellProfiler process."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Chunk:
    """Image sets ``first``..``last`` (1-based, inclusive), made of ``units`` that must not be split."""

    units: tuple  # tuples of image numbers

    @property
    def first(self):
        return self.units[0][0]

    @property
    def last(self):
        return self.units[-1][-1]

    @property
    def numbers(self):
        return [number for unit in self.units for number in unit]

    @property
    def size(self):
        return len(self.numbers)

    @property
    def name(self):
        return f"{self.first:06d}-{self.last:06d}"

    def halves(self):
        """Two chunks of about half the units each; a chunk of one unit cannot be split."""
        if len(self.units) < 2:
            raise ValueError(f"chunk {self.name} is one unit and cannot be split")
        middle = len(self.units) // 2
        return Chunk(self.units[:middle]), Chunk(self.units[middle:])


def plan_chunks(units, chunk_size):
    """Chunks of at least ``chunk_size`` image sets made of consecutive units (a group is never split).

    Raises ValueError when a unit's image numbers are not consecutive, since CellProfiler runs ranges (-f/-l).
    """
    if chunk_size < 1:
        raise ValueError(f"--chunk-size must be at least 1, not {chunk_size}.")
    chunks, current = [], []
    for unit in units:
        if list(unit) != list(range(unit[0], unit[0] + len(unit))):
            raise ValueError(f"the image sets {list(unit)} of one group are not consecutive, so they cannot run as "
                             "one -f/-l range; sort the image sets by group in the pipeline's Groups module.")
        current.append(tuple(unit))
        if sum(map(len, current)) >= chunk_size:
            chunks.append(Chunk(tuple(current)))
            current = []
    if current:
        chunks.append(Chunk(tuple(current)))
    return chunks
