"""`cellcount batch --cluster slurm` through dask-jobqueue's SLURMCluster on a single-node SLURM on this machine.

Only `make test-cluster` runs it: it starts SLURM (tests/cluster/start_slurm.sh) and sets CELLCOUNT_TEST_CLUSTER.
"""

import os
import subprocess
import sys

import pytest
from batch_helpers import assert_same_tables, copy_images, manifest_chunks, write_classical_pipeline

pytestmark = [
    pytest.mark.cellprofiler, pytest.mark.slow, pytest.mark.data,
    pytest.mark.skipif(os.environ.get("CELLCOUNT_TEST_CLUSTER") != "slurm",
                       reason="needs a SLURM on this machine: `make test-cluster` starts one and runs this test"),
]
SLURM_OPTIONS = ["cores=1", "processes=1", "memory=2GB", "walltime=00:20:00", "queue=debug", "interface=lo"]


def slurm_jobs():
    """{job id: (name, state)} of the jobs SLURM's job completion log records (sacct -c)."""
    listed = subprocess.run(["sacct", "-c", "-n", "-P", "-o", "JobID,JobName,State"], capture_output=True,
                            text=True, check=True).stdout
    return {line.split("|")[0]: tuple(line.split("|")[1:3]) for line in listed.splitlines() if line}


def test_batch_on_slurm_equals_the_local_batch(shared_data, cellprofiler, tmp_path):
    pipeline = write_classical_pipeline(tmp_path / "classical.cppipe")
    images = copy_images(shared_data, tmp_path / "images", 4)
    jobs_before = slurm_jobs()
    common = [sys.executable, "-m", "cellcount_cellprofiler.cli", "batch", "--no-progress", str(pipeline), "-i",
              str(images), "--chunk-size", "2", "--workers", "2"]
    on_slurm = subprocess.run(common + ["-o", str(tmp_path / "slurm"), "--cluster", "slurm"]
                              + [arg for option in SLURM_OPTIONS + [f"log_directory={tmp_path / 'dask-logs'}"]
                                 for arg in ("--cluster-option", option)],
                              capture_output=True, text=True, timeout=900)
    assert on_slurm.returncode == 0, on_slurm.stdout + on_slurm.stderr[-3000:]
    local = subprocess.run(common + ["-o", str(tmp_path / "local")], capture_output=True, text=True, timeout=900)
    assert local.returncode == 0, local.stdout + local.stderr[-3000:]

    assert_same_tables(tmp_path / "slurm", tmp_path / "local")
    assert all(chunk["status"] == "done" for chunk in manifest_chunks(tmp_path / "slurm").values())
    new_jobs = {job: record for job, record in slurm_jobs().items() if job not in jobs_before}
    assert any(name == "dask-worker" for name, _ in new_jobs.values()), f"sacct shows no Dask worker job: {new_jobs}"
    print("SLURM jobs of this batch (sacct -c):", new_jobs)
