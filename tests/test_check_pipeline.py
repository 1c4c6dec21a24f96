"""cellcount check-pipeline: every module that did not load is named with the reason, setting and model errors
are reported, and the command exits non-zero on any of them."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.cellprofiler

CELLCOUNT = str(Path(sys.executable).with_name("cellcount"))
PIPELINES = Path(__file__).resolve().parents[1] / "pipelines"
UNKNOWN_MODULE = """NoSuchModule:[module_num:6|svn_version:'Unknown'|variable_revision_number:1|show_window:False|notes:[]|batch_state:array([], dtype=uint8)|enabled:True|wants_pause:False]
    Some setting:1

"""


def use_custom_model(module, weights):
    module.model_source.value = "Custom model file"
    module.model_directory.value = f"Elsewhere...|{weights.parent}"
    module.model_file.value = weights.name


def deep_pipeline_text(segmenter, counter, **threshold_settings):
    """Input modules, IdentifyPrimaryObjects, DeepSegment/DeepThreshold/DeepCount on custom models, export."""
    from cellcount_cellprofiler.pipeline_builder import (classical_module, deep_modules, export_module,
                                                         input_modules, pipeline_text)

    segment, threshold, count = deep_modules()
    use_custom_model(segment, segmenter)
    use_custom_model(count, counter)
    for name, value in threshold_settings.items():
        getattr(threshold, name).value = value
    return pipeline_text(input_modules() + [classical_module(), segment, threshold, count, export_module()])


def check(text, folder):
    from cellcount_cellprofiler.pipeline_check import check_pipeline
    from cellcount_cellprofiler.plugin_folder import plugins_dir

    path = Path(folder) / "pipeline.cppipe"
    path.write_text(text)
    return check_pipeline(path, plugins_dir())


def with_unknown_module(text):
    """The pipeline with a module CellProfiler does not know inserted as module 6."""
    count = int(text.split("ModuleCount:")[1].split("\n")[0])
    text = text.replace(f"ModuleCount:{count}", f"ModuleCount:{count + 1}")
    at = text.index("DeepSegment:[")
    return text[:at] + UNKNOWN_MODULE + text[at:]


def test_valid_pipeline_passes_and_lists_its_models(cellprofiler, tmp_path, tiny_segmenter, tiny_counter):
    report = check(deep_pipeline_text(tiny_segmenter, tiny_counter), tmp_path)
    assert report.ok, report.problems
    assert report.loaded_count == len(report.file_modules) == 9
    assert [model.split(" ")[0] for model in report.models] == ["tiny-segmenter", "tiny-counter"]
    assert report.text("5").endswith("OK: every module loads, its settings are valid and every model file loads.")


def test_unknown_module_is_named_with_the_modules_a_headless_run_would_drop(cellprofiler, tmp_path, tiny_segmenter,
                                                                           tiny_counter):
    report = check(with_unknown_module(deep_pipeline_text(tiny_segmenter, tiny_counter)), tmp_path)
    assert not report.ok
    [problem] = report.load_problems
    assert (problem.position, problem.module_name) == (6, "NoSuchModule")
    assert "not a module of this CellProfiler" in problem.reason and "--plugins-directory" in problem.reason
    assert report.loaded_count == 9 and not report.setting_problems and not report.model_problems
    assert report.truncation() == (
        "A headless run of this pipeline would stop loading at module 6 (NoSuchModule): it and the 4 module(s) "
        "after it (DeepSegment, DeepThreshold, DeepCount, ExportToSpreadsheet) would be dropped without an "
        "error, and the run would exit 0 without their output.")


def test_setting_errors_name_the_module_and_setting(cellprofiler, tmp_path, tiny_counter):
    text = deep_pipeline_text(tmp_path / "absent.safetensors", tiny_counter, exclude_size=True, size_range=(30, 10))
    report = check(text, tmp_path)
    problems = {(finding.position, finding.module_name): finding.message for finding in report.setting_problems}
    assert set(problems) == {(6, "DeepSegment"), (7, "DeepThreshold")}
    assert problems[(6, "DeepSegment")].startswith('setting "Model file": ')
    assert f"Model card {tmp_path / 'absent.json'} not found" in problems[(6, "DeepSegment")]
    assert problems[(7, "DeepThreshold")] == ('setting "Diameter range of objects, in pixel units (Min,Max)": '
                                             "30 is greater than 10")


def test_corrupt_model_weights_are_reported(cellprofiler, tmp_path, tiny_segmenter, tiny_counter):
    broken = tmp_path / "broken-segmenter.safetensors"
    shutil.copy(tiny_segmenter.with_suffix(".json"), broken.with_suffix(".json"))
    broken.write_bytes(b"these are not weights")
    report = check(deep_pipeline_text(broken, tiny_counter), tmp_path)
    [finding] = report.model_problems
    assert (finding.position, finding.module_name) == (6, "DeepSegment")
    assert "corrupt" in finding.message and str(broken) in finding.message
    assert not report.setting_problems


def test_modules_past_the_header_module_count_are_reported(cellprofiler, tmp_path, tiny_segmenter, tiny_counter):
    text = deep_pipeline_text(tiny_segmenter, tiny_counter).replace("ModuleCount:9", "ModuleCount:8")
    [problem] = check(text, tmp_path).load_problems
    assert (problem.position, problem.module_name) == (9, "ExportToSpreadsheet")
    assert "ModuleCount:8" in problem.reason


def test_disabled_modules_are_listed_and_not_checked(cellprofiler, tmp_path, tiny_segmenter):
    text = deep_pipeline_text(tiny_segmenter, tmp_path / "absent.safetensors")
    at = text.index("DeepCount:[")
    text = text[:at] + text[at:].replace("enabled:True", "enabled:False", 1)
    report = check(text, tmp_path)
    assert report.disabled == ["8 DeepCount"]
    assert report.ok, report.problems


def test_a_module_reading_an_image_no_module_makes_is_reported(cellprofiler, tmp_path, tiny_segmenter, tiny_counter):
    text = deep_pipeline_text(tiny_segmenter, tiny_counter)
    at = text.index("DeepSegment:[")
    text = text[:at] + text[at:].replace("enabled:True", "enabled:False", 1)  # nothing makes DeepProbability now
    [finding] = check(text, tmp_path).setting_problems
    assert str(finding) == 'module 7 DeepThreshold: setting "Select the probability image": DeepProbability not in DNA'



def test_json_pipeline_with_an_unknown_module(cellprofiler, tmp_path):
    """JSON pipelines make a headless run fail loudly; the unknown module is still named."""
    import json

    from cellcount_cellprofiler.pipeline_builder import build_pipeline, classical_module, export_module, input_modules
    from cellcount_cellprofiler.pipeline_check import check_pipeline
    from cellcount_cellprofiler.plugin_folder import plugins_dir
    from cellprofiler_core.pipeline.io import dump

    with open(tmp_path / "pipeline.json", "w") as handle:
        dump(build_pipeline(input_modules() + [classical_module(), export_module()]), handle, version=6)
    data = json.loads((tmp_path / "pipeline.json").read_text())
    data["modules"][4]["attributes"]["module_name"] = "NoSuchModule"
    (tmp_path / "pipeline.json").write_text(json.dumps(data))
    report = check_pipeline(tmp_path / "pipeline.json", plugins_dir())
    [problem] = report.load_problems
    assert (problem.position, problem.module_name) == (5, "NoSuchModule")
    assert report.truncation() is None


# ---------------------------------------------------------------- the command, as cluster users run it

def run_check(*arguments, data_home):
    """``cellcount check-pipeline ARGUMENTS``; ``data_home`` is $XDG_DATA_HOME, where CellProfiler 5 keeps its
    official_plugins folder (a folder of the test's own, so that the user's plugins never count)."""
    return subprocess.run([CELLCOUNT, "check-pipeline", *map(str, arguments)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "XDG_DATA_HOME": str(data_home)})


@pytest.mark.slow
@pytest.mark.parametrize("name", ["compare_counts.cppipe", "deep_count.cppipe"])
def test_shipped_pipelines_pass(name, tmp_path):
    from cellcount_cellprofiler.plugin_folder import plugins_dir

    completed = run_check(PIPELINES / name, "--plugins-directory", plugins_dir(), data_home=tmp_path)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert f"plugin folder: {plugins_dir()}" in completed.stdout
    assert "nuclei-segmenter (segmenter" in completed.stdout and "nuclei-counter (counter" in completed.stdout


@pytest.mark.slow
def test_without_a_plugin_folder_the_check_judges_cellprofilers_own_default_and_fails(tmp_path):
    """A headless `cellprofiler` run without --plugins-directory reads only $XDG_DATA_HOME/CellProfiler/
    official_plugins (its plugins-directory preference is unset in headless runs): it would drop the deep modules."""
    from cellcount_cellprofiler.plugin_folder import plugins_dir

    completed = run_check(PIPELINES / "deep_count.cppipe", data_home=tmp_path)
    assert completed.returncode == 1, completed.stdout + completed.stderr
    said = completed.stdout
    official = tmp_path / "CellProfiler" / "official_plugins"
    assert (f"plugin folder: none given, so what a headless `cellprofiler` run without --plugins-directory reads: "
            f"{official} (absent)") in said
    assert f"module 5 DeepSegment: did not load: it is a cellcount plugin, but the plugin folder {official}" in said
    assert "would stop loading at module 5 (DeepSegment)" in said
    assert (f"Fix: give CellProfiler cellcount's plugin folder, {plugins_dir()}: run `cellprofiler -c -r -p "
            "PIPELINE ... --plugins-directory $(cellcount plugins-dir)`") in said


@pytest.mark.slow
def test_without_a_plugin_folder_the_plugins_in_cellprofilers_default_folder_count(tmp_path):
    from cellcount_cellprofiler.plugin_install import plugin_files

    official = tmp_path / "CellProfiler" / "official_plugins"
    official.mkdir(parents=True)
    for source in plugin_files():
        shutil.copy(source, official / source.name)
    completed = run_check(PIPELINES / "deep_count.cppipe", data_home=tmp_path)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert f"run without --plugins-directory reads: {official} (headless runs" in completed.stdout
    assert "Fix:" not in completed.stdout


@pytest.mark.slow
def test_plugin_folder_without_the_cellcount_plugins_fails_loudly(tmp_path):
    completed = run_check(PIPELINES / "compare_counts.cppipe", "--plugins-directory", tmp_path, data_home=tmp_path)
    assert completed.returncode == 1
    said = completed.stdout
    for position, name in ((6, "DeepSegment"), (7, "DeepThreshold"), (8, "DeepCount")):
        assert f"module {position} {name}: did not load: it is a cellcount plugin, but the plugin folder" in said
    assert "cellcount plugins-dir" in said
    assert "would stop loading at module 6 (DeepSegment)" in said


@pytest.mark.slow
def test_plugin_file_that_fails_to_import_is_named_with_the_missing_package(tmp_path):
    from cellcount_cellprofiler.plugin_install import install_plugins

    install_plugins(tmp_path / "plugins")
    (tmp_path / "plugins" / "runsomething.py").write_text(
        "import package_that_is_not_installed\n\nclass RunSomething:\n    pass\n")
    text = (PIPELINES / "compare_counts.cppipe").read_text()
    (tmp_path / "pipeline.cppipe").write_text(with_unknown_module(text).replace("NoSuchModule", "RunSomething"))
    completed = run_check(tmp_path / "pipeline.cppipe", "--plugins-directory", tmp_path / "plugins",
                          data_home=tmp_path)
    assert completed.returncode == 1
    assert ("module 6 RunSomething: did not load: its plugin file "
            f"{tmp_path / 'plugins' / 'runsomething.py'} fails to import: it needs the Python package "
            "'package_that_is_not_installed'") in completed.stdout


def test_a_missing_pipeline_file_is_named(tmp_path):
    completed = run_check(tmp_path / "absent.cppipe", data_home=tmp_path)
    assert completed.returncode == 2
    assert f"Pipeline {tmp_path / 'absent.cppipe'} does not exist" in completed.stderr


@pytest.mark.slow
def test_batch_data_file_is_checked(cellprofiler, tmp_path):
    """The Batch_data.h5 that CreateBatchFiles writes for cluster runs is read like a pipeline file."""
    from cellcount_cellprofiler.demo import write_synthetic_images
    from cellcount_cellprofiler.pipeline_builder import (classical_module, export_module, input_modules, new_module,
                                                         pipeline_text)

    modules = input_modules() + [classical_module(), export_module(), new_module("CreateBatchFiles")]
    (tmp_path / "batch.cppipe").write_text(pipeline_text(modules))
    write_synthetic_images(tmp_path / "images")
    subprocess.run([sys.executable, "-m", "cellprofiler", "-c", "-r", "-p", str(tmp_path / "batch.cppipe"), "-i",
                    str(tmp_path / "images"), "-o", str(tmp_path / "out")], capture_output=True, timeout=600)
    completed = run_check(tmp_path / "out" / "Batch_data.h5", data_home=tmp_path)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "Modules: 7 in the file, 7 loaded" in completed.stdout
