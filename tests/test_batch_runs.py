"""`cellcount batch` end to end: real CellProfiler chunks on a LocalCluster of 2 workers, on DSB2018 images.

Each test compares the merged tables with one plain headless run of the same pipeline on the same images.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from batch_helpers import assert_same_tables, copy_images, manifest_chunks, plain_run, table, write_classical_pipeline

pytestmark = [pytest.mark.cellprofiler, pytest.mark.slow, pytest.mark.data]
PIPELINES = Path(__file__).resolve().parents[1] / "pipelines"
BATCH = [sys.executable, "-m", "cellcount_cellprofiler.cli", "batch", "--no-progress"]


@pytest.fixture(scope="module")
def classical_pipeline(cellprofiler, tmp_path_factory):
    return write_classical_pipeline(tmp_path_factory.mktemp("pipeline") / "classical.cppipe")


@pytest.fixture(scope="module")
def four_images(shared_data, tmp_path_factory):
    return copy_images(shared_data, tmp_path_factory.mktemp("data") / "images", 4)


@pytest.fixture(scope="module")
def classical_reference(classical_pipeline, four_images, tmp_path_factory):
    return plain_run(classical_pipeline, four_images, tmp_path_factory.mktemp("reference"))


def batch_command(pipeline, images, output, *extra):
    return BATCH + [str(pipeline), "-i", str(images), "-o", str(output), "--chunk-size", "2", "--workers", "2",
                    *extra]


def test_deep_pipeline_in_chunks_equals_one_plain_run(shared_data, cellprofiler, tmp_path):
    images = copy_images(shared_data, tmp_path / "images", 2)
    reference = plain_run(PIPELINES / "compare_counts.cppipe", images, tmp_path / "reference")
    from cellcount_cellprofiler.batch.runner import run_batch

    outcome = run_batch(PIPELINES / "compare_counts.cppipe", images, tmp_path / "batch", chunk_size=1, workers=2,
                        progress=False, announce=lambda line: None)
    assert outcome.ok and outcome.done == 2 and outcome.chunks == 2
    assert_same_tables(tmp_path / "batch", reference, ("Image.csv", "Nuclei.csv", "DeepNuclei.csv"))
    rows = table(tmp_path / "batch" / "Image.csv")
    assert sorted(int(row["ImageNumber"]) for row in rows) == [1, 2]
    deep_objects = table(tmp_path / "batch" / "DeepNuclei.csv")
    for row in rows:  # each image's object rows carry its number, as many as it counted
        count = sum(obj["ImageNumber"] == row["ImageNumber"] for obj in deep_objects)
        assert count == int(float(row["Count_DeepNuclei"]))
    chunks = manifest_chunks(tmp_path / "batch")
    assert sorted(chunks) == [(1, 1), (2, 2)]
    assert all(chunk["status"] == "done" and chunk["exit_code"] == 0 and chunk["host"] for chunk in chunks.values())
    assert (tmp_path / "batch" / "chunks" / "000001-000001" / "attempt-1" / "cellprofiler.log").exists()


def chunk_processes(batch, first):
    """The batch's CellProfiler processes for the chunk starting at image set ``first``."""
    found = []
    for process in psutil.Process(batch.pid).children(recursive=True):
        try:
            command = process.cmdline()
        except psutil.NoSuchProcess:
            continue
        if "cellprofiler" in command and command[command.index("-f") + 1] == str(first):
            found.append(process)
    return found


def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_killed_chunk_process_is_retried_and_nothing_is_lost_or_doubled(
        classical_pipeline, four_images, classical_reference, tmp_path):
    output = tmp_path / "batch"
    batch = subprocess.Popen(batch_command(classical_pipeline, four_images, output, "--retries", "1"),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    victim = wait_for(lambda: chunk_processes(batch, 3), 240, "the CellProfiler process of chunk 3-4")[0]
    time.sleep(1.0)  # mid-run: CellProfiler is starting or running
    victim.send_signal(signal.SIGKILL)
    stdout, _ = batch.communicate(timeout=300)
    assert batch.returncode == 0, stdout[-3000:]
    assert_same_tables(output, classical_reference)
    killed = manifest_chunks(output)[(3, 4)]
    assert killed["status"] == "done" and killed["attempts"] == 2
    assert killed["history"][0]["reason"] == "killed by signal SIGKILL"
    assert manifest_chunks(output)[(1, 2)]["attempts"] == 1


def test_an_interrupted_batch_resumes_with_only_the_rest(classical_pipeline, four_images, classical_reference,
                                                         tmp_path):
    output = tmp_path / "batch"
    command = batch_command(classical_pipeline, four_images, output, "--workers", "1")
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    status = output / "chunks" / "000001-000002" / "status.json"
    wait_for(lambda: status.exists(), 240, "the first chunk to finish")
    os.killpg(first.pid, signal.SIGKILL)  # the batch, its Dask workers and CellProfiler processes
    first.wait(timeout=30)
    assert not (output / "manifest.json").exists()

    resumed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "2 of 4 image sets to run in 1 chunk(s)" in resumed.stdout
    assert_same_tables(output, classical_reference)
    assert [path.name for path in (output / "chunks" / "000001-000002").glob("attempt-*")] == ["attempt-1"]

    attempts_before = sorted(output.rglob("attempt-*"))
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stdout + again.stderr[-2000:]
    assert sorted(output.rglob("attempt-*")) == attempts_before  # no CellProfiler ran: the outputs on disk answer


def test_a_corrupt_image_fails_alone(classical_pipeline, four_images, classical_reference, tmp_path):
    images = tmp_path / "images"
    shutil.copytree(four_images, images)
    names = sorted(path.name for path in images.iterdir())
    corrupt = images / names[2]
    corrupt.write_bytes(corrupt.read_bytes()[:500])  # a truncated PNG: image set 3
    output = tmp_path / "batch"
    completed = subprocess.run(batch_command(classical_pipeline, images, output, "--retries", "0"),
                               capture_output=True, text=True, timeout=400)
    assert completed.returncode == 1, completed.stdout + completed.stderr[-3000:]
    assert f"image set 3 {names[2]}" in completed.stdout and "image file is truncated" in completed.stdout
    failures = table(output / "failures.csv")
    assert [(row["ImageNumber"], row["image"]) for row in failures] == [("3", names[2])]
    assert "OSError: image file is truncated" in failures[0]["reason"]
    expected = [row for row in table(classical_reference / "Image.csv") if row["ImageNumber"] != "3"]
    merged = table(output / "Image.csv")
    assert [row["ImageNumber"] for row in merged] == ["1", "2", "4"]
    assert [row["Count_Nuclei"] for row in merged] == [row["Count_Nuclei"] for row in expected]
    objects = table(output / "Nuclei.csv")
    assert objects == [row for row in table(classical_reference / "Nuclei.csv") if row["ImageNumber"] != "3"]
    chunks = manifest_chunks(output)
    assert chunks[(3, 4)]["status"] == "split" and chunks[(3, 3)]["status"] == "failed"
    assert chunks[(4, 4)]["status"] == "done" and chunks[(1, 2)]["status"] == "done"


def test_a_batch_data_file_runs_in_chunks(classical_pipeline, four_images, classical_reference, tmp_path):
    pipeline = write_classical_pipeline(tmp_path / "create_batch_files.cppipe", create_batch_files=True)
    made = subprocess.run([sys.executable, "-m", "cellprofiler", "-c", "-r", "-p", str(pipeline), "-i",
                           str(four_images), "-o", str(tmp_path / "made")], capture_output=True, text=True, timeout=600)
    batch_data = tmp_path / "made" / "Batch_data.h5"
    assert batch_data.exists(), made.stderr[-3000:]
    completed = subprocess.run(BATCH + [str(batch_data), "-o", str(tmp_path / "batch"), "--chunk-size", "2",
                                        "--workers", "2"], capture_output=True, text=True, timeout=400)
    assert completed.returncode == 0, completed.stdout + completed.stderr[-3000:]
    assert sorted(manifest_chunks(tmp_path / "batch")) == [(1, 2), (3, 4)]
    # CellProfiler itself numbers Group_Index from 1 and sets Group_Length = B - A + 1 in a Batch_data.h5 run of
    # image sets A..B (docs/CLUSTER.md); everything else is the plain run's
    assert_same_tables(tmp_path / "batch", classical_reference, ignore=("Group_Index", "Group_Length"))


def test_a_pipeline_that_would_be_cut_short_is_refused_before_anything_runs(cellprofiler, four_images, tmp_path):
    no_plugins = tmp_path / "no_plugins"
    no_plugins.mkdir()
    output = tmp_path / "batch"
    completed = subprocess.run(BATCH + [str(PIPELINES / "compare_counts.cppipe"), "-i", str(four_images), "-o",
                                        str(output), "--plugins-directory", str(no_plugins)],
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 2, completed.stdout + completed.stderr[-2000:]
    assert "DeepSegment: did not load" in completed.stdout and "Nothing was submitted" in completed.stdout
    assert not (output / "chunks").exists() and not (output / "batch.json").exists()
