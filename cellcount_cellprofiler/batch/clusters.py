"""The Dask cluster a batch runs on: a LocalCluster, or a dask-jobqueue cluster configured the usual Dask way.

dask-jobqueue reads its settings (cores, memory, queue, account, walltime, job directives, ...) from the Dask
configuration: ``~/.config/dask/jobqueue.yaml`` or ``DASK_JOBQUEUE__SLURM__CORES=...`` style variables.
``--cluster-option KEY=VALUE`` overrides one keyword of the cluster class for this run.
"""

from __future__ import annotations

import importlib.util

import yaml

JOBQUEUE_CLUSTERS = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster", "lsf": "LSFCluster"}
CLUSTER_KINDS = ("local", *JOBQUEUE_CLUSTERS)


def parse_cluster_options(pairs):
    """{key: value} from ``KEY=VALUE`` strings; values are read as YAML (``4`` is a number, ``[a, b]`` a list)."""
    options = {}
    for pair in pairs or ():
        key, separator, value = pair.partition("=")
        if not separator or not key.strip():
            raise ValueError(f"--cluster-option {pair!r} is not KEY=VALUE, e.g. --cluster-option queue=short.")
        options[key.strip()] = yaml.safe_load(value) if value.strip() else ""
    return options


def gpu_job_options(kind, gpus_per_worker, options):
    """Job directives requesting GPUs for each worker's job (SLURM ``--gres``); other systems need them given."""
    if not gpus_per_worker or kind == "local" or "job_extra_directives" in options:
        return options
    if kind != "slurm":
        raise ValueError(f"--gpus-per-worker with --cluster {kind}: request the GPUs the way your site does, with "
                         "--cluster-option 'job_extra_directives=[\"...\"]' (see docs/CLUSTER.md).")
    gpus = max(1, int(gpus_per_worker))
    return {**options, "job_extra_directives": [f"--gres=gpu:{gpus}"]}


def start_cluster(kind, workers, options=None):
    """A started Dask cluster of ``workers`` workers (one CellProfiler process at a time each)."""
    options = dict(options or {})
    if kind == "local":
        from distributed import LocalCluster

        settings = {"n_workers": workers, "threads_per_worker": 1, "processes": True, "dashboard_address": ":0"}
        return LocalCluster(**{**settings, **options})
    if kind not in JOBQUEUE_CLUSTERS:
        raise ValueError(f"--cluster {kind!r} is not one of {', '.join(CLUSTER_KINDS)}.")
    import dask_jobqueue

    cluster_class = getattr(dask_jobqueue, JOBQUEUE_CLUSTERS[kind])
    try:
        cluster = cluster_class(**options)
    except ValueError as error:
        raise ValueError(f"dask-jobqueue's {cluster_class.__name__} could not be configured: {error} Set it in the "
                         f"Dask configuration (jobqueue.{kind}.* in ~/.config/dask/jobqueue.yaml) or with "
                         "--cluster-option KEY=VALUE.") from error
    cluster.scale(workers)
    return cluster


def dashboard_address(cluster):
    """The Dask dashboard's address, or None when there is none (it needs the bokeh package)."""
    if importlib.util.find_spec("bokeh") is None:
        return None
    return getattr(cluster, "dashboard_link", None)
