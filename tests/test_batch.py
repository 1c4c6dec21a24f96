"""`cellcount batch` pieces that need no CellProfiler: chunk plans, merging, state on disk, options, GPUs."""

import csv
import json

import pytest

from cellcount_cellprofiler.batch.cellprofiler_run import RunSpec, failure_reason
from cellcount_cellprofiler.batch.chunks import Chunk, plan_chunks
from cellcount_cellprofiler.batch.clusters import gpu_job_options, parse_cluster_options
from cellcount_cellprofiler.batch.gpus import MEMORY_FRACTION_VARIABLE, local_worker_environments, worker_environment
from cellcount_cellprofiler.batch.merge import merge_tables
from cellcount_cellprofiler.batch.state import DONE, BatchFolder, ChunkRecord
from cellcount_cellprofiler.batch.tables import image_number_offset


def single_units(count):
    return [[number] for number in range(1, count + 1)]


def test_chunks_cover_every_image_set_once_and_keep_groups_whole():
    chunks = plan_chunks(single_units(7), 3)
    assert [(chunk.first, chunk.last) for chunk in chunks] == [(1, 3), (4, 6), (7, 7)]
    grouped = plan_chunks([[1, 2], [3, 4, 5], [6], [7, 8]], 3)
    assert [chunk.numbers for chunk in grouped] == [[1, 2, 3, 4, 5], [6, 7, 8]]
    assert sum((chunk.numbers for chunk in grouped), []) == list(range(1, 9))


def test_a_group_that_is_not_a_range_is_refused():
    with pytest.raises(ValueError, match="not consecutive"):
        plan_chunks([[1, 3], [2]], 2)


def test_halves_split_by_units_down_to_one():
    chunk = plan_chunks(single_units(5), 5)[0]
    left, right = chunk.halves()
    assert (left.numbers, right.numbers) == ([1, 2], [3, 4, 5])
    with pytest.raises(ValueError):
        Chunk(((4,),)).halves()


@pytest.mark.parametrize("numbers, offset", [([3, 4], 0), ([1, 2], 2)])
def test_image_numbers_of_a_chunk_map_to_the_batch(numbers, offset):
    assert image_number_offset(numbers, 3, 4) == offset


def test_a_chunk_with_missing_or_doubled_image_sets_is_refused():
    for numbers in ([3], [3, 3, 4], [5, 6]):
        with pytest.raises(ValueError, match="image table lists"):
            image_number_offset(numbers, 3, 4)


def write_csv(path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def test_merge_renumbers_each_chunk_and_keeps_object_rows_with_their_images(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    write_csv(first / "Image.csv", ["ImageNumber", "Count_Nuclei"], [["1", "2"]])
    write_csv(first / "Nuclei.csv", ["ImageNumber", "ObjectNumber"], [["1", "1"], ["1", "2"]])
    write_csv(first / "Experiment.csv", ["Key", "Value"], [["Run", "a"]])
    # the second chunk numbered its image sets from 1 and has one more column
    write_csv(second / "Image.csv", ["ImageNumber", "Count_Nuclei", "Extra"], [["1", "1", "x"]])
    write_csv(second / "Nuclei.csv", ["ImageNumber", "ObjectNumber"], [["1", "1"]])
    write_csv(second / "Experiment.csv", ["Key", "Value"], [["Run", "b"]])
    out = tmp_path / "out"
    tables = merge_tables([(first, 0), (second, 1)], out)
    assert sorted(path.name for path in tables) == ["Experiment.csv", "Image.csv", "Nuclei.csv"]
    assert read_csv(out / "Image.csv") == [["ImageNumber", "Count_Nuclei", "Extra"], ["1", "2", ""], ["2", "1", "x"]]
    assert read_csv(out / "Nuclei.csv") == [["ImageNumber", "ObjectNumber"], ["1", "1"], ["1", "2"], ["2", "1"]]
    assert read_csv(out / "Experiment.csv") == [["Key", "Value"], ["Run", "a"]]


def test_a_done_chunk_whose_tables_are_gone_runs_again(tmp_path):
    folder = BatchFolder(tmp_path)
    chunk = Chunk(((1,), (2,)))
    attempt = folder.next_attempt_folder(ChunkRecord(chunk))
    write_csv(attempt / "Image.csv", ["ImageNumber"], [["1"], ["2"]])
    folder.write(ChunkRecord(chunk, DONE, [{"ok": True}], attempt.name))
    assert folder.read(chunk).status == DONE
    assert folder.next_attempt_folder(folder.read(chunk)).name == "attempt-2"
    (attempt / "Image.csv").unlink()
    assert folder.read(chunk).status == "pending"


def test_an_output_folder_holding_another_batch_is_refused(tmp_path):
    folder = BatchFolder(tmp_path)
    description = {"pipeline_sha256": "p", "image_sets_sha256": "i", "chunk_size": 10}
    assert folder.claim(description) == 10
    assert folder.claim({**description, "chunk_size": 4}) == 10  # a resume keeps the recorded chunks
    with pytest.raises(ValueError, match="another batch"):
        folder.claim({**description, "image_sets_sha256": "other"})
    assert json.loads((tmp_path / "batch.json").read_text())["chunk_size"] == 10


def test_failure_reasons_name_the_signal_or_the_error(tmp_path):
    assert failure_reason(-9, tmp_path / "none.log") == "killed by signal SIGKILL"
    log = tmp_path / "cellprofiler.log"
    log.write_text("ModuleNotFoundError: No module named 'MySQLdb'\n[CP - ERROR] x: Error detected during run of "
                   "module NamesAndTypes\nTraceback:\n    raise OSError(msg) from e\nOSError: image file is truncated\n")
    reason = failure_reason(1, log)
    assert reason.startswith("CellProfiler exited with code 1 in module NamesAndTypes: OSError: image file is truncated")


def test_an_attempt_rerun_after_its_worker_died_fails_without_starting_cellprofiler(tmp_path):
    from cellcount_cellprofiler.batch.cellprofiler_run import LOG_NAME, run_chunk

    (tmp_path / LOG_NAME).write_text("the first run of this attempt, whose worker died\n")
    result = run_chunk(RunSpec("p.cppipe", 1, 2, str(tmp_path), "plugins"))
    assert not result.ok and result.reason == "the Dask worker running this attempt died"
    assert (tmp_path / LOG_NAME).read_text().startswith("the first run")


def test_cluster_options_are_read_as_yaml_values():
    options = parse_cluster_options(["cores=4", "memory=8GB", "job_extra_directives=['--gres=gpu:1']", "queue=short"])
    assert options == {"cores": 4, "memory": "8GB", "job_extra_directives": ["--gres=gpu:1"], "queue": "short"}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_cluster_options(["cores"])


def test_gpus_for_slurm_jobs_are_requested_with_gres():
    assert gpu_job_options("slurm", 2, {})["job_extra_directives"] == ["--gres=gpu:2"]
    assert gpu_job_options("local", 2, {}) == {}
    with pytest.raises(ValueError, match="job_extra_directives"):
        gpu_job_options("pbs", 1, {})


def test_whole_gpus_per_worker():
    environments = local_worker_environments(2, 2, ["0", "1", "2", "3"])
    assert environments == {0: {"CUDA_VISIBLE_DEVICES": "0,1"}, 1: {"CUDA_VISIBLE_DEVICES": "2,3"}}
    with pytest.raises(ValueError, match="fewer --workers"):
        worker_environment(2, 2, ["0", "1", "2", "3"])


def test_several_workers_share_a_gpu_with_a_memory_fraction():
    environments = local_worker_environments(4, 0.5, ["5", "7"])
    assert [environment["CUDA_VISIBLE_DEVICES"] for environment in environments.values()] == ["5", "5", "7", "7"]
    assert {environment[MEMORY_FRACTION_VARIABLE] for environment in environments.values()} == {"0.5"}
    with pytest.raises(ValueError, match="no GPU"):
        worker_environment(0, 1, [])
    assert worker_environment(0, 0, []) == {}


def test_the_memory_fraction_variable_is_the_one_the_plugins_read():
    from cellcount_core.running import gpu

    assert MEMORY_FRACTION_VARIABLE == gpu.MEMORY_FRACTION_VARIABLE


def probe_environment(spec):
    """Run on a Dask worker: the GPU variables its CellProfiler process would get."""
    from cellcount_cellprofiler.batch.cellprofiler_run import _worker_name

    environment = spec.environment(_worker_name())
    return environment.get("CUDA_VISIBLE_DEVICES"), environment.get(MEMORY_FRACTION_VARIABLE)


@pytest.mark.slow
def test_each_local_worker_passes_its_own_gpus_to_cellprofiler(monkeypatch):
    from distributed import Client

    from cellcount_cellprofiler.batch.clusters import start_cluster
    from cellcount_cellprofiler.batch.runner import _worker_environments

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,4")
    environments = _worker_environments("local", 2, 1)
    spec = RunSpec("p.cppipe", 1, 1, "out", "plugins", environments=environments)
    with start_cluster("local", 2) as cluster, Client(cluster) as client:
        workers = client.scheduler_info()["workers"]
        seen = sorted(client.submit(probe_environment, spec, workers=[address], pure=False).result()
                      for address in workers)
    assert seen == [("3", None), ("4", None)]


def test_default_chunks_give_every_worker_two_and_stay_under_the_cap():
    from cellcount_cellprofiler.batch.runner import DEFAULT_CHUNK_SIZE, default_chunk_size

    assert default_chunk_size(10, 2) == 3
    assert default_chunk_size(1, 4) == 1
    assert default_chunk_size(100_000, 8) == DEFAULT_CHUNK_SIZE
