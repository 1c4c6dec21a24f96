"""A batch's state on disk, so that a rerun with the same OUT does only what is not complete.

OUT/batch.json records what the batch is (pipeline, image sets, chunk size); OUT/chunks/FIRST-LAST/ holds one
folder per chunk with ``status.json`` and one ``attempt-N/`` folder per CellProfiler run (its tables and log).
A chunk is done when its status says so and the attempt it names still holds its image table.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cellcount_cellprofiler.batch.chunks import Chunk
from cellcount_cellprofiler.batch.tables import find_image_table

DONE, FAILED, SPLIT = "done", "failed", "split"


@dataclass
class ChunkRecord:
    """What is known of one chunk: its status, every attempt's record and, when done, the attempt that counts."""

    chunk: Chunk
    status: str = "pending"
    attempts: list = field(default_factory=list)
    output: str | None = None  # the done attempt's folder, relative to the chunk's folder
    image_number_offset: int = 0
    reason: str = ""

    def summary(self):
        """The chunk as the manifest lists it."""
        last = self.attempts[-1] if self.attempts else {}
        return {"first": self.chunk.first, "last": self.chunk.last, "image_sets": self.chunk.size,
                "status": self.status, "attempts": len(self.attempts), "seconds": last.get("seconds"),
                "host": last.get("host"), "exit_code": last.get("exit_code"), "reason": self.reason,
                "output": self.output, "history": self.attempts}


def _write_json(path, data):
    """Write JSON so that a reader never sees half a file (write aside, then rename)."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, indent=1))
    os.replace(temporary, path)


class BatchFolder:
    """The OUT folder of a batch."""

    def __init__(self, root):
        self.root = Path(root)
        self.chunks = self.root / "chunks"

    def chunk_folder(self, chunk):
        return self.chunks / chunk.name

    def recorded(self):
        """The description of the batch OUT holds (batch.json), or None."""
        path = self.root / "batch.json"
        return json.loads(path.read_text()) if path.exists() else None

    def claim(self, description):
        """Start or resume the batch described by ``description``; ValueError if OUT holds a different batch.

        Returns the chunk size to use: the one recorded when OUT already holds this batch.
        """
        self.chunks.mkdir(parents=True, exist_ok=True)
        recorded = self.recorded()
        if recorded is not None:
            different = [key for key in ("pipeline_sha256", "image_sets_sha256") if recorded[key] != description[key]]
            if different:
                raise ValueError(f"{self.root} holds another batch (its {' and '.join(different)} differ: another "
                                 "pipeline or other images). Give a new output folder (-o), or empty this one.")
            return recorded["chunk_size"]
        _write_json(self.root / "batch.json", description)
        return description["chunk_size"]

    def read(self, chunk):
        """The chunk's record from disk; a done chunk whose tables are gone counts as pending."""
        path = self.chunk_folder(chunk) / "status.json"
        if not path.exists():
            return ChunkRecord(chunk)
        data = json.loads(path.read_text())
        record = ChunkRecord(chunk, data["status"], data["attempts"], data.get("output"),
                             data.get("image_number_offset", 0), data.get("reason", ""))
        if record.status == DONE and find_image_table(self.output_folder(record)) is None:
            record.status = "pending"
        return record

    def write(self, record):
        folder = self.chunk_folder(record.chunk)
        folder.mkdir(parents=True, exist_ok=True)
        data = asdict(record)
        data["chunk"] = [list(unit) for unit in record.chunk.units]
        _write_json(folder / "status.json", data)

    def next_attempt_folder(self, record):
        """A new, unused attempt folder for the chunk (numbers go on across reruns)."""
        folder = self.chunk_folder(record.chunk)
        used = [int(path.name.split("-")[1]) for path in folder.glob("attempt-*") if path.name.split("-")[1].isdigit()]
        return folder / f"attempt-{max(used, default=0) + 1}"

    def output_folder(self, record):
        return self.chunk_folder(record.chunk) / (record.output or "missing")

    def write_manifest(self, manifest):
        _write_json(self.root / "manifest.json", manifest)


def sha256_of_file(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def sha256_of_lines(lines):
    return hashlib.sha256("\n".join(map(str, lines)).encode()).hexdigest()
