"""``cellcount batch``: headless CellProfiler runs of image-set chunks on Dask (local, SLURM, PBS, SGE, LSF)."""

from pathlib import Path


def add_parser(subparsers):
    from cellcount_cellprofiler.batch.clusters import CLUSTER_KINDS
    from cellcount_cellprofiler.batch.runner import DEFAULT_CHUNK_SIZE

    parser = subparsers.add_parser(
        "batch",
        help="run a pipeline on many images in chunks on a Dask cluster, retry failures, merge the tables",
        description="Check PIPELINE as check-pipeline does, split its image sets into chunks and run each chunk as "
                    "a headless CellProfiler process (-f/-l) on a Dask worker: a LocalCluster by default, or a "
                    "SLURM/PBS/SGE/LSF cluster through dask-jobqueue (configured in the Dask configuration). Failed "
                    "chunks are retried and split to isolate failing image sets; the ExportToSpreadsheet tables "
                    "are merged into OUT with manifest.json and failures.csv. Rerun the same command to finish an "
                    "interrupted batch. Exits 1 when any image set failed, 2 when nothing could be submitted.",
    )
    parser.add_argument("pipeline", metavar="PIPELINE", type=Path, help=".cppipe, .json or Batch_data.h5 file")
    parser.add_argument("-i", "--images", type=Path, metavar="IMAGES",
                        help="image folder (needed for a .cppipe; optional for a Batch_data.h5)")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUT", help="output folder")
    parser.add_argument("--chunk-size", type=int, metavar="N",
                        help=f"image sets per CellProfiler process (default {DEFAULT_CHUNK_SIZE}, or fewer so that "
                             "each worker gets two chunks; a resumed batch keeps its chunk size)")
    parser.add_argument("--workers", type=int, default=2, metavar="N",
                        help="Dask workers: local processes, or jobs on a batch system (default 2)")
    parser.add_argument("--cluster", choices=CLUSTER_KINDS, default="local", help="where to run (default local)")
    parser.add_argument("--cluster-option", action="append", default=[], metavar="KEY=VALUE",
                        help="a keyword of the Dask cluster class, overriding the Dask configuration; repeatable "
                             "(e.g. queue=short, walltime=01:00:00, memory=8GB, cores=4)")
    parser.add_argument("--retries", type=int, default=2, metavar="N",
                        help="reruns of a failed chunk before it is split to find the failing image sets (default 2)")
    parser.add_argument("--gpus-per-worker", type=float, default=0, metavar="N",
                        help="GPUs per worker (CUDA_VISIBLE_DEVICES); a share below 1, e.g. 0.25, puts 4 workers on "
                             "each GPU with CELLCOUNT_GPU_MEMORY_FRACTION=0.25")
    parser.add_argument("--plugins-directory", type=Path, metavar="DIR",
                        help="the plugin folder for CellProfiler (default: cellcount's own)")
    parser.add_argument("--readers", nargs="+", default=[], metavar="READER",
                        help="CellProfiler image readers to enable (-e), e.g. imageio_reader imageio_reader_v3 for "
                             "TIFF on an offline machine")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def run(args):
    from cellcount_cellprofiler.batch.clusters import parse_cluster_options
    from cellcount_cellprofiler.batch.runner import PreflightError, run_batch

    if args.workers < 1 or args.retries < 0:
        raise ValueError("--workers must be at least 1 and --retries at least 0.")
    try:
        outcome = run_batch(args.pipeline, args.images, args.output, chunk_size=args.chunk_size,
                            workers=args.workers, cluster=args.cluster,
                            cluster_options=parse_cluster_options(args.cluster_option), retries=args.retries,
                            gpus_per_worker=args.gpus_per_worker, plugins_directory=args.plugins_directory,
                            readers=args.readers, progress=not args.no_progress)
    except PreflightError as error:
        print(error)
        return 2
    print(summary(outcome))
    return 0 if outcome.ok else 1


def summary(outcome, listed=20):
    """What the batch did, what failed and where the results are, in a few lines."""
    lines = [f"{outcome.done} of {outcome.image_sets} image sets done in {outcome.chunks} chunk(s)"
             + ("" if outcome.ran else "; nothing to do: every chunk was already complete") + "."]
    if outcome.failed:
        lines.append(f"FAILED: {len(outcome.failed)} image set(s) (listed in {outcome.output / 'failures.csv'}):")
        lines += [f"  image set {failure['ImageNumber']} {failure['image']}: {failure['reason']}"
                  for failure in outcome.failed[:listed]]
        if len(outcome.failed) > listed:
            lines.append(f"  ... and {len(outcome.failed) - listed} more")
        lines.append("Fix or remove them and run the same command again: only what is not complete runs.")
    lines.append(f"Tables: {outcome.output}; manifest: {outcome.manifest}")
    return "\n".join(lines)
