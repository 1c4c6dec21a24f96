"""``run_batch``: check a pipeline, split its image sets into chunks, run them on Dask, merge the tables.

The same as ``cellcount batch`` from Python::

    from cellcount_cellprofiler.batch.runner import run_batch
    outcome = run_batch("pipeline.cppipe", "images/", "out/", workers=4)
    outcome.failed  # [] when every image set ran
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from cellcount_cellprofiler.batch.chunks import plan_chunks
from cellcount_cellprofiler.batch.cellprofiler_run import LOG_NAME, RunSpec
from cellcount_cellprofiler.batch.merge import merge_tables, write_failures
from cellcount_cellprofiler.batch.preflight import PreflightError, run_preflight  # noqa: F401 (part of the API)
from cellcount_cellprofiler.batch.scheduler import ChunkScheduler, finished_leaves, pending_leaves
from cellcount_cellprofiler.batch.state import DONE, SPLIT, BatchFolder, sha256_of_file, sha256_of_lines
from cellcount_cellprofiler.plugin_folder import plugins_dir

#: Most image sets per chunk by default: CellProfiler's fixed cost per process (start-up, plugins, models: 11 to
#: 16 s here) is then about a tenth of a chunk's time for the deep pipeline; see BENCHMARKS.md, "Batch runs".
DEFAULT_CHUNK_SIZE = 100


def default_chunk_size(image_sets, workers):
    """DEFAULT_CHUNK_SIZE, or fewer so that every worker gets at least two chunks."""
    return max(1, min(DEFAULT_CHUNK_SIZE, math.ceil(image_sets / (2 * workers))))


IMAGE_SETS = "image_sets.json"  # the pre-flight's list of image sets, kept in OUT


@dataclass
class BatchOutcome:
    """What a batch run did and where its results are."""

    output: Path
    image_sets: int
    chunks: int
    done: int  # image sets with results
    failed: list = field(default_factory=list)  # {"ImageNumber", "image", "reason", "log"} per failed image set
    ran: int = 0  # chunk attempts started by this run (0: everything was already done)
    tables: list = field(default_factory=list)
    manifest: Path | None = None
    dashboard: str | None = None

    @property
    def ok(self):
        return not self.failed


def run_batch(pipeline, images=None, output="batch_output", *, chunk_size=None, workers=2,
              cluster="local", cluster_options=None, retries=2, gpus_per_worker=0, plugins_directory=None,
              readers=(), progress=True, announce=print):
    """Run ``pipeline`` (.cppipe or Batch_data.h5) on ``images`` in chunks on a Dask cluster; see the module doc.

    ``chunk_size`` None means :func:`default_chunk_size`; a resumed batch keeps the chunk size it started with.

    Raises PreflightError before submitting anything when the pipeline would fail or be cut short, and
    ValueError when ``output`` holds another batch.
    """
    pipeline, folder = Path(pipeline).resolve(), BatchFolder(Path(output).resolve())
    images = Path(images).resolve() if images else None
    plugins = Path(plugins_directory or plugins_dir()).resolve()
    folder.root.mkdir(parents=True, exist_ok=True)
    image_sets = _complete_batch(folder, pipeline, images)
    checked = folder.root / f"{IMAGE_SETS}.new"  # kept only once OUT is known to hold this batch
    if image_sets is None:
        image_sets = run_preflight(pipeline, images, plugins, checked)
    chunk_size = folder.claim({"pipeline": str(pipeline), "pipeline_sha256": sha256_of_file(pipeline),
                               "images": str(images) if images else None, "image_sets": len(image_sets.numbers),
                               "image_sets_sha256": sha256_of_lines(image_sets.names),
                               "chunk_size": chunk_size or default_chunk_size(len(image_sets.numbers), workers)})
    if checked.exists():
        os.replace(checked, folder.root / IMAGE_SETS)
    file_list = _write_file_list(folder.root, image_sets.file_list)
    chunks = plan_chunks(image_sets.units(), chunk_size)
    pending = [leaf for chunk in chunks for leaf in pending_leaves(folder, chunk)]
    outcome = BatchOutcome(folder.root, len(image_sets.numbers), len(chunks), 0)
    if pending:
        environments = _worker_environments(cluster, workers, gpus_per_worker)

        def make_spec(chunk, attempt_folder):
            return RunSpec(str(pipeline), chunk.first, chunk.last, str(attempt_folder), str(plugins),
                           str(images) if images else None, file_list, tuple(readers), environments)

        outcome.ran, outcome.dashboard = _run_pending(pending, folder, make_spec, cluster, workers, cluster_options,
                                                      gpus_per_worker, retries, len(image_sets.numbers), progress,
                                                      announce)
    leaves = [leaf for chunk in chunks for leaf in finished_leaves(folder, chunk)]
    done = [leaf for leaf in leaves if leaf.status == DONE]
    outcome.done = sum(leaf.chunk.size for leaf in done)
    outcome.failed = [{"ImageNumber": number, "image": image_sets.name_of(number), "reason": leaf.reason,
                       "log": str(_last_log(leaf))}
                      for leaf in leaves if leaf.status != DONE for number in leaf.chunk.numbers]
    manifest_path = folder.root / "manifest.json"
    if outcome.ran or not manifest_path.exists():
        outcome.tables = merge_tables([(folder.output_folder(leaf), leaf.image_number_offset) for leaf in done],
                                      folder.root)
        write_failures(outcome.failed, folder.root)
        folder.write_manifest(_manifest(outcome, pipeline, images, chunk_size, cluster, chunks, folder))
    outcome.manifest = manifest_path
    return outcome


def _complete_batch(folder, pipeline, images):
    """The image sets of the batch in OUT when it is complete for this pipeline and these files, else None.

    A complete batch needs no pre-flight (nor CellProfiler at all) to be told there is nothing to do.
    """
    from cellcount_cellprofiler.batch.image_sets import ImageSets, list_image_files

    recorded = folder.recorded()
    if recorded is None or recorded["pipeline_sha256"] != sha256_of_file(pipeline) or \
            not (folder.root / IMAGE_SETS).exists():
        return None
    image_sets = ImageSets(**json.loads((folder.root / IMAGE_SETS).read_text()))
    if images is not None and image_sets.file_list and image_sets.file_list != list_image_files(images):
        return None
    chunks = plan_chunks(image_sets.units(), recorded["chunk_size"])
    return None if any(pending_leaves(folder, chunk) for chunk in chunks) else image_sets


def _write_file_list(root, files):
    """OUT/file_list.txt, the input files every chunk's CellProfiler reads (so all number image sets alike)."""
    if not files:
        return None
    path = root / "file_list.txt"
    path.write_text("".join(f"{name}\n" for name in files))
    return str(path)


def _worker_environments(cluster, workers, gpus_per_worker):
    """{worker name: environment} for the CellProfiler processes (GPUs, CPU threads); None: every worker."""
    from cellcount_cellprofiler.batch.gpus import MEMORY_FRACTION_VARIABLE, local_worker_environments, visible_gpus

    if cluster != "local":
        return {None: {MEMORY_FRACTION_VARIABLE: f"{gpus_per_worker:g}"}} if 0 < gpus_per_worker < 1 else {}
    shared = {} if "OMP_NUM_THREADS" in os.environ else {"OMP_NUM_THREADS": str(max(1, os.cpu_count() // workers))}
    gpu_ids = visible_gpus() if gpus_per_worker else []
    return {None: shared, **local_worker_environments(workers, gpus_per_worker, gpu_ids)}


def _run_pending(pending, folder, make_spec, cluster, workers, cluster_options, gpus_per_worker, retries, total,
                 progress, announce):
    """Start the cluster, run the pending chunks with a progress bar; (attempts started, dashboard address)."""
    from distributed import Client
    from tqdm import tqdm

    from cellcount_cellprofiler.batch.clusters import dashboard_address, gpu_job_options, start_cluster

    remaining = sum(record.chunk.size for record in pending)
    announce(f"{remaining} of {total} image sets to run in {len(pending)} chunk(s) on {workers} {cluster} worker(s).")
    options = gpu_job_options(cluster, gpus_per_worker, dict(cluster_options or {}))
    with start_cluster(cluster, workers, options) as dask_cluster, Client(dask_cluster) as client:
        dashboard = dashboard_address(dask_cluster)
        announce(f"Dask dashboard: {dashboard}" if dashboard else "No Dask dashboard (it needs: pip install bokeh).")
        with tqdm(total=total, initial=total - remaining, unit="image set", disable=not progress,
                  file=sys.stderr) as bar:
            scheduler = ChunkScheduler(client, folder, make_spec, retries, lambda record: bar.update(record.chunk.size))
            scheduler.run(pending)
    return sum(scheduler.attempts_this_run.values()), dashboard


def _last_log(record):
    """The CellProfiler log of a chunk's last attempt."""
    if not record.attempts:
        return ""
    return Path(record.attempts[-1]["output"]) / LOG_NAME


def _manifest(outcome, pipeline, images, chunk_size, cluster, chunks, folder):
    records = [leaf for chunk in chunks for leaf in _all_records(folder, chunk)]
    return {"pipeline": str(pipeline), "images": str(images) if images else None, "cluster": cluster,
            "chunk_size": chunk_size, "written": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "image_sets": outcome.image_sets, "done": outcome.done, "failed": outcome.failed,
            "tables": [str(path.relative_to(folder.root)) for path in outcome.tables],
            "chunks": [record.summary() for record in records]}


def _all_records(folder, chunk):
    """The chunk's record followed by those of its parts when it was split, in image-number order."""
    record = folder.read(chunk)
    parts = [part for half in chunk.halves() for part in _all_records(folder, half)] if record.status == SPLIT else []
    return [record] + parts
