"""One attempt at one chunk: a headless CellProfiler process for image sets first..last, run on a Dask worker."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from cellcount_cellprofiler.batch.tables import find_image_table, image_number_offset, image_numbers

LOG_NAME = "cellprofiler.log"


@dataclass(frozen=True)
class RunSpec:
    """Everything a worker needs to run CellProfiler on one chunk; paths must be valid on the worker."""

    pipeline: str
    first: int
    last: int
    output: str  # this attempt's output folder
    plugins_directory: str
    image_folder: str | None = None
    file_list: str | None = None
    readers: tuple = ()
    environments: dict = field(default_factory=dict)  # {worker name: extra environment}; key None for every worker

    def command(self):
        """The ``python -m cellprofiler`` command line of this run."""
        command = [sys.executable, "-m", "cellprofiler", "-c", "-r", "-p", self.pipeline,
                   "-f", str(self.first), "-l", str(self.last), "-o", self.output,
                   "--plugins-directory", self.plugins_directory]
        if self.image_folder:
            command += ["-i", self.image_folder]
        if self.file_list:
            command += ["--file-list", self.file_list]
        if self.readers:
            command += ["-e", *self.readers]
        return command

    def environment(self, worker_name):
        extra = dict(self.environments.get(None, {}))
        extra.update(self.environments.get(worker_name, {}))
        return {**os.environ, **extra}


@dataclass
class AttemptResult:
    """How one attempt went: ``ok`` only when CellProfiler exited 0 and wrote every image set of the chunk."""

    ok: bool
    exit_code: int | None
    seconds: float
    host: str
    reason: str
    output: str
    image_number_offset: int = 0

    def record(self):
        return {"ok": self.ok, "exit_code": self.exit_code, "seconds": round(self.seconds, 2), "host": self.host,
                "reason": self.reason, "output": self.output}


def run_chunk(spec):
    """Run CellProfiler for ``spec`` (in a Dask worker or anywhere); never raises for a failed run."""
    output = Path(spec.output)
    output.mkdir(parents=True, exist_ok=True)
    if (output / LOG_NAME).exists():  # Dask reran this attempt after its worker died; that run may go on
        return AttemptResult(False, None, 0.0, socket.gethostname(), "the Dask worker running this attempt died",
                             str(output))
    started = time.monotonic()
    with open(output / LOG_NAME, "w") as log:
        log.write(" ".join(spec.command()) + "\n")
        log.flush()
        exit_code = subprocess.call(spec.command(), stdout=log, stderr=subprocess.STDOUT,
                                    env=spec.environment(_worker_name()))
    seconds = time.monotonic() - started
    host = socket.gethostname()
    if exit_code != 0:
        return AttemptResult(False, exit_code, seconds, host, failure_reason(exit_code, output / LOG_NAME), str(output))
    try:
        offset = _check_outputs(output, spec.first, spec.last)
    except ValueError as error:
        return AttemptResult(False, exit_code, seconds, host, str(error), str(output))
    return AttemptResult(True, exit_code, seconds, host, "", str(output), offset)


def _worker_name():
    try:
        from distributed import get_worker

        return get_worker().name
    except (ImportError, ValueError):
        return None


def _check_outputs(output, first, last):
    """The image-number offset of a finished run's tables; ValueError when they do not cover first..last."""
    image_table = find_image_table(output)
    if image_table is None:
        raise ValueError(f"CellProfiler exited 0 but wrote no image table into {output}: the pipeline was cut short "
                         "or its ExportToSpreadsheet does not write into the Default Output Folder.")
    return image_number_offset(image_numbers(output / image_table), first, last)


_MODULE_ERROR = re.compile(r"Error detected during run of module (\w+)")
_EXCEPTION_LINE = re.compile(r"^([\w.]+(?:Error|Exception)\b.*)$", re.MULTILINE)


def failure_reason(exit_code, log_path):
    """Why a CellProfiler process failed, in one line: the signal that killed it, or its failing module and error."""
    if exit_code is not None and exit_code < 0:
        return f"killed by signal {signal.Signals(-exit_code).name}"
    text = Path(log_path).read_text(errors="replace") if Path(log_path).exists() else ""
    modules, exceptions = _MODULE_ERROR.findall(text), _EXCEPTION_LINE.findall(text)
    detail = f" in module {modules[-1]}" if modules else ""
    detail += f": {exceptions[-1].strip()}" if exceptions else ""
    return f"CellProfiler exited with code {exit_code}{detail} (log: {log_path})"
