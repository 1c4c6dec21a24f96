"""Run chunks on a Dask client: retry failed CellProfiler processes, split chunks to isolate failing image sets.

A chunk whose process fails (non-zero exit, killed, a worker lost, tables missing) runs again, on any worker, up
to ``retries`` more times. A chunk that still fails is split in two and each half runs on its own, down to single
image sets (or single groups), so one bad image fails alone and the rest of its chunk is kept.
"""

from __future__ import annotations

from pathlib import Path

from cellcount_cellprofiler.batch.cellprofiler_run import AttemptResult, run_chunk
from cellcount_cellprofiler.batch.state import DONE, FAILED, SPLIT


def pending_leaves(folder, chunk):
    """Records of the parts of ``chunk`` still to run, following earlier splits recorded on disk."""
    record = folder.read(chunk)
    if record.status == DONE:
        return []
    if record.status == SPLIT:
        return [leaf for half in chunk.halves() for leaf in pending_leaves(folder, half)]
    return [record]


def finished_leaves(folder, chunk):
    """Records of the done and failed parts of ``chunk``, in image-number order."""
    record = folder.read(chunk)
    if record.status == SPLIT:
        return [leaf for half in chunk.halves() for leaf in finished_leaves(folder, half)]
    return [record] if record.status in (DONE, FAILED) else []


class ChunkScheduler:
    """Submits chunk attempts to a Dask ``client`` and acts on each result as it arrives."""

    def __init__(self, client, folder, make_spec, retries, on_finished):
        self.client, self.folder, self.make_spec = client, folder, make_spec
        self.retries, self.on_finished = retries, on_finished
        self.in_flight, self.attempts_this_run = {}, {}
        self.completed = None  # distributed.as_completed over the attempts in flight, made by run()

    def run(self, records):
        """Run every record to done or failed (each failed image set alone)."""
        from distributed import as_completed

        self.completed = as_completed()
        for record in records:
            self._submit(record)
        for future in self.completed:
            record = self.in_flight.pop(future)
            self._handle(record, self._result(future, record))

    def _submit(self, record):
        attempt_folder = self.folder.next_attempt_folder(record)
        attempt_folder.mkdir(parents=True)  # made now, so that the next attempt's number and Dask key are new
        spec = self.make_spec(record.chunk, attempt_folder)
        future = self.client.submit(run_chunk, spec, pure=False, key=f"chunk-{record.chunk.name}-{attempt_folder.name}")
        self.in_flight[future] = record
        self.completed.add(future)
        self.attempts_this_run[record.chunk] = self.attempts_this_run.get(record.chunk, 0) + 1

    def _result(self, future, record):
        try:
            return future.result()
        except Exception as error:  # the worker died or the task could not run: count it as a failed attempt
            return AttemptResult(False, None, 0.0, "unknown", f"the Dask worker failed: {type(error).__name__}: "
                                 f"{error}", str(self.folder.chunk_folder(record.chunk)))

    def _handle(self, record, result):
        record.attempts.append(result.record())
        if result.ok:
            record.status, record.output, record.reason = DONE, Path(result.output).name, ""
            record.image_number_offset = result.image_number_offset
        elif self.attempts_this_run[record.chunk] <= self.retries:
            self.folder.write(record)
            self._submit(record)
            return
        elif len(record.chunk.units) > 1:
            record.status, record.reason = SPLIT, result.reason
            self.folder.write(record)
            for half in record.chunk.halves():
                self._submit(self.folder.read(half))
            return
        else:
            record.status, record.reason = FAILED, result.reason
        self.folder.write(record)
        self.on_finished(record)

