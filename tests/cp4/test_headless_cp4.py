"""Headless runs of CellProfiler 4.2.8: ``cellprofiler -c -r -p PIPE -i IMAGES -o OUT --plugins-directory plugins``."""

import math
import shutil

import pytest

from cp4_support import PIPELINES, WEIGHTS, cellprofiler, read_image_table, run_headless

pytestmark = pytest.mark.slow
COUNT_COLUMNS = ("Count_Nuclei", "Count_DeepNuclei", "DeepCount_Nuclei")


def relative_error(predicted, true):
    return abs(float(predicted) - true) / true


@pytest.fixture(scope="module")
def bundled_models():
    """The bundled models the shipped pipelines name; a failure, not a skip, when they are missing."""
    from cellcount_core.models.bundled import DEFAULT_COUNTER, DEFAULT_SEGMENTER, bundled_models

    models = bundled_models()
    missing = [name for name in (DEFAULT_SEGMENTER, DEFAULT_COUNTER) if name not in models]
    if missing:
        pytest.fail(f"bundled models {missing} are missing from {WEIGHTS}: train them (training/) first")
    return models


@pytest.fixture(scope="module")
def library_counts(bundled_models, synthetic_images):
    """{file name: (objects, regression count)} from cellcount_core itself, on the same files, in this process
    (cell size Automatic, as the pipelines run DeepSegment and DeepCount)."""
    import imageio.v3 as iio

    from cellcount_core.running.inference import predict_count_at_cell_scale
    from cellcount_core.objects.segmentation import segment_image

    folder, true_counts = synthetic_images
    counts = {}
    for name in true_counts:
        image = iio.imread(folder / name)
        counts[name] = (segment_image(image, model="nuclei-segmenter", device="CPU").count,
                        predict_count_at_cell_scale(image, model="nuclei-counter", device="CPU")[0])
    return counts


def check_deep_counts(row, true, library):
    """The deep counts equal the library's (a CellProfiler 4.2.8 matter); the objects lie near the truth.

    The bundled counter's accuracy is a model matter, checked on real data in tests/test_bundled_models.py.
    """
    objects, regression = library
    assert abs(float(row["Count_DeepNuclei"]) - objects) <= 1, (row, "library gives", objects)
    assert float(row["DeepCount_Nuclei"]) == pytest.approx(regression, rel=1e-3), (row, "library gives", regression)
    model_says = f"{row['FileName_DNA']}: the bundled model gives %s for {true} cells in the library as well"
    assert relative_error(row["Count_DeepNuclei"], true) < 0.15, model_says % row["Count_DeepNuclei"]


def test_a_4_2_8_built_pipeline_runs_with_custom_model_files(cp4, synthetic_images, tiny_segmenter, tiny_counter,
                                                             tmp_path):
    """Plumbing with small random models (no bundled model needed): every column arrives in Image.csv."""
    from cellprofiler_core.preferences import ABSOLUTE_FOLDER_NAME

    from cellcount_cellprofiler import pipeline_builder as builder

    deep = builder.deep_modules()
    for module, model in zip((deep[0], deep[2]), (tiny_segmenter, tiny_counter)):
        module.model_source.value = "Custom model file"
        module.model_directory.value = f"{ABSOLUTE_FOLDER_NAME}|{model.parent}"
        module.model_file.value = model.name
        module.device.value = "CPU"
    deep[1].threshold_method.value = "Manual"
    modules = builder.input_modules() + [builder.classical_module()] + deep + [builder.export_module()]
    pipeline = tmp_path / "custom_models.cppipe"
    pipeline.write_text(builder.pipeline_text(modules))
    images, true_counts = synthetic_images
    output = tmp_path / "out"
    output.mkdir()
    rows = run_headless(pipeline, images, output)
    assert sorted(row["FileName_DNA"] for row in rows) == sorted(true_counts)
    for row in rows:
        assert float(row["Count_Nuclei"]) > 0 and float(row["Count_DeepNuclei"]) >= 0
        assert math.isfinite(float(row["DeepCount_Nuclei"])) and float(row["DeepCount_Nuclei"]) >= 0
    assert (output / "DeepNuclei.csv").exists() and (output / "Nuclei.csv").exists()


def test_shipped_compare_counts_pipeline_counts_close_to_the_truth(cp4, library_counts, synthetic_images, tmp_path):
    images, true_counts = synthetic_images
    rows = run_headless(PIPELINES / "compare_counts.cppipe", images, tmp_path)
    assert sorted(row["FileName_DNA"] for row in rows) == sorted(true_counts)
    for row in rows:
        true = true_counts[row["FileName_DNA"]]
        assert set(COUNT_COLUMNS) <= set(row)
        assert relative_error(row["Count_Nuclei"], true) < 0.3, row
        check_deep_counts(row, true, library_counts[row["FileName_DNA"]])
    objects = (tmp_path / "DeepNuclei.csv").read_text().splitlines()
    assert len(objects) - 1 == sum(int(float(row["Count_DeepNuclei"])) for row in rows)


def test_shipped_deep_count_pipeline_runs(cp4, library_counts, synthetic_images, tmp_path):
    images, true_counts = synthetic_images
    rows = run_headless(PIPELINES / "deep_count.cppipe", images, tmp_path)
    assert len(rows) == len(true_counts)
    assert "Count_Nuclei" not in rows[0]
    for row in rows:
        check_deep_counts(row, true_counts[row["FileName_DNA"]], library_counts[row["FileName_DNA"]])


def test_batch_files_remap_the_custom_model_folder(cp4, synthetic_images, tiny_segmenter, tiny_counter, tmp_path):
    """CreateBatchFiles on 4.2.8 (the Slurm/Nextflow route): the model folder follows the path mapping."""
    from cellprofiler_core.preferences import ABSOLUTE_FOLDER_NAME
    from cellprofiler_core.utilities.core.modules import instantiate_module

    from cellcount_cellprofiler import pipeline_builder as builder

    local, cluster = tmp_path / "local", tmp_path / "cluster"
    shutil.copytree(synthetic_images[0], local / "images")
    for model in (tiny_segmenter, tiny_counter):
        (local / "models").mkdir(parents=True, exist_ok=True)
        for path in model.parent.glob(model.stem + ".*"):
            shutil.copy(path, local / "models" / path.name)
    deep = builder.deep_modules()
    for module, model in zip((deep[0], deep[2]), (tiny_segmenter, tiny_counter)):
        module.model_source.value = "Custom model file"
        module.model_directory.value = f"{ABSOLUTE_FOLDER_NAME}|{local / 'models'}"
        module.model_file.value = model.name
        module.device.value = "CPU"
    deep[1].threshold_method.value = "Manual"
    batch = instantiate_module("CreateBatchFiles")
    batch.mappings[0].local_directory.value = str(local)
    batch.mappings[0].remote_directory.value = str(cluster)
    pipeline = tmp_path / "batch.cppipe"
    pipeline.write_text(builder.pipeline_text(builder.input_modules() + deep + [builder.export_module(), batch]))

    (local / "out").mkdir()
    made = cellprofiler("-p", pipeline, "-i", local / "images", "-o", local / "out", cwd=tmp_path)
    assert (local / "out" / "Batch_data.h5").exists(), made.said
    local.rename(cluster)  # only the cluster's paths exist from now on

    (cluster / "chunk").mkdir()
    chunk = cellprofiler("-p", cluster / "out" / "Batch_data.h5", "-f", 1, "-l", 2, "-o", cluster / "chunk",
                         cwd=tmp_path)
    assert chunk.returncode == 0, chunk.said
    rows = read_image_table(cluster / "chunk", chunk.said)
    assert len(rows) == 2 and all(math.isfinite(float(row["DeepCount_Nuclei"])) for row in rows)
