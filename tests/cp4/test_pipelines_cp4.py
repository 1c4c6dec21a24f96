"""The shipped pipelines (saved by CellProfiler 5, DateRevision 500) as CellProfiler 4.2.8 loads them."""

import io

import pytest

from cp4_support import PIPELINES, load_pipeline

INPUT_MODULES = ["Images", "Metadata", "NamesAndTypes", "Groups"]
SHIPPED = {
    "compare_counts.cppipe": INPUT_MODULES + [
        "IdentifyPrimaryObjects", "DeepSegment", "DeepThreshold", "DeepCount", "ExportToSpreadsheet"],
    "deep_count.cppipe": INPUT_MODULES + ["DeepSegment", "DeepThreshold", "DeepCount", "ExportToSpreadsheet"],
}


def settings_of(module):
    return [(setting.text, setting.unicode_value) for setting in module.settings()]


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_pipeline_loads_every_module(cp4, name):
    text = (PIPELINES / name).read_text()
    assert "DateRevision:500" in text  # saved by CellProfiler 5: 4.2.8 warns about the newer revision, then loads
    pipeline, errors = load_pipeline(PIPELINES / name)
    assert not errors, [(error.module_name, str(error.error)) for error in errors]
    assert [module.module_name for module in pipeline.modules()] == SHIPPED[name]


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_pipeline_has_the_settings_a_4_2_8_built_pipeline_has(cp4, name):
    """Loaded in 4.2.8, the CellProfiler 5 file gives the same module settings as the builder run on 4.2.8.

    Input modules differ by design (CellProfiler 5 added settings to Images and Metadata, and the two versions
    default NamesAndTypes' intensity range differently): there only the image name and type are compared.
    """
    from cellcount_cellprofiler.pipeline_builder import shipped_pipelines

    shipped, errors = load_pipeline(PIPELINES / name)
    assert not errors
    native, errors = load_pipeline(io.StringIO(shipped_pipelines()[name]))
    assert not errors
    for loaded, built in zip(shipped.modules(), native.modules()):
        assert loaded.module_name == built.module_name
        if loaded.module_name in INPUT_MODULES:
            continue
        assert settings_of(loaded) == settings_of(built), loaded.module_name
    names_and_types = dict(settings_of(shipped.modules()[2]))
    assert names_and_types["Name to assign these images"] == "DNA"
    assert names_and_types["Select the image type"] == "Grayscale image"


def test_builder_writes_pipelines_that_4_2_8_saves_and_reloads(cp4, tmp_path):
    from cellcount_cellprofiler.pipeline_builder import shipped_pipelines

    for name, text in shipped_pipelines().items():
        assert "DateRevision:428" in text
        (tmp_path / name).write_text(text)
        pipeline, errors = load_pipeline(tmp_path / name)
        assert not errors
        assert [module.module_name for module in pipeline.modules()] == SHIPPED[name]
        again = io.StringIO()
        pipeline.dump(again)
        assert again.getvalue() == text
