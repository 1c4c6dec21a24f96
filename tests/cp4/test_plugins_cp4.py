"""The plugin files, loaded by CellProfiler 4.2.8's own plugin mechanism (file name = lower-cased class name)."""

import sys

import pytest

from cp4_support import CP4_VERSION, PLUGIN_MODULES, PLUGINS


def test_this_is_cellprofiler_4_2_8_on_python_3_8_or_3_9():
    import cellprofiler
    import cellprofiler_core

    assert cellprofiler_core.__version__ == CP4_VERSION
    assert cellprofiler.__version__ == CP4_VERSION
    assert sys.version_info[:2] in ((3, 8), (3, 9))


def test_fill_modules_registers_the_three_plugins_without_errors(cp4):
    from cellprofiler_core.utilities.core.modules import get_module_names

    assert not [name for name, _ in cp4 if name in PLUGIN_MODULES], f"plugins that failed to load: {cp4}"
    assert set(PLUGIN_MODULES.values()) <= set(get_module_names())


@pytest.mark.parametrize("file_name", sorted(PLUGIN_MODULES))
def test_the_class_is_found_by_the_file_name_rule(cp4, file_name):
    from cellprofiler_core.utilities.core.modules import find_cpmodule, get_module_class

    module = sys.modules[file_name]  # fill_modules imported it from the plugin folder by its file name
    assert module.__file__ == str(PLUGINS / f"{file_name}.py")
    cls = find_cpmodule(module)
    assert cls.__name__.lower() == file_name
    assert cls.module_name == PLUGIN_MODULES[file_name]
    assert get_module_class(PLUGIN_MODULES[file_name]) is cls


@pytest.mark.parametrize("name", sorted(PLUGIN_MODULES.values()))
def test_each_module_instantiates_and_its_settings_round_trip(cp4, name):
    from cellprofiler_core.utilities.core.modules import instantiate_module

    module = instantiate_module(name)
    assert module.module_name == name
    settings = module.settings()
    assert settings and module.visible_settings()
    assert all(":" not in setting.text for setting in settings), "a colon in a label breaks saving"
    values = [setting.unicode_value for setting in settings]
    copy = instantiate_module(name)
    copy.set_settings_from_values(values, module.variable_revision_number, name)
    assert [setting.unicode_value for setting in copy.settings()] == values


def test_plugin_files_do_not_import_torch_at_load_time(cp4):
    """A plugin file that imported torch at the top would vanish from pipelines wherever torch is missing."""
    for file_name in PLUGIN_MODULES:
        source = (PLUGINS / f"{file_name}.py").read_text()
        top_level = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
        assert not [line for line in top_level if "torch" in line], file_name


def test_modules_declare_their_measurements(cp4):
    from cellprofiler_core.constants.measurement import IMAGE
    from cellprofiler_core.pipeline import Pipeline
    from cellprofiler_core.utilities.core.modules import instantiate_module

    pipeline = Pipeline()
    for number, name in enumerate(["DeepSegment", "DeepThreshold", "DeepCount"], start=1):
        module = instantiate_module(name)
        module.set_module_num(number)
        pipeline.add_module(module)
    columns = {(table, feature) for table, feature, *_ in pipeline.get_measurement_columns()}
    assert {(IMAGE, "Count_DeepNuclei"), (IMAGE, "DeepCount_Nuclei"),
            (IMAGE, "DeepSegment_ModelThreshold_DeepProbability"),
            (IMAGE, "Threshold_FinalThreshold_DeepNuclei")} <= columns
    assert ("DeepNuclei", "Location_Center_X") in columns
