"""Replace each IdentifyPrimaryObjects of a pipeline by DeepSegment + DeepThreshold, or add them beside it.

DeepThreshold makes objects of the same name with IdentifyPrimaryObjects' size, border and hole options, so
every downstream module keeps working. With ``compare=True`` the classical module stays, and the deep modules
are added after it under new names (``Deep<Name>``), with DeepCount and a spreadsheet export of all counts.
The pipeline is changed in place; use CellProfiler's own ``Pipeline.load`` and ``dump`` around it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from cellcount_core.models.bundled import DEFAULT_COUNTER, DEFAULT_SEGMENTER
from cellcount_core.models.model_files import model_paths

PRIMARY = "IdentifyPrimaryObjects"
# Columns that name each module by its number (ExecutionTime_05IdentifyPrimaryObjects): a swap renumbers them.
BOOKKEEPING_PREFIXES = ("ExecutionTime_", "ModuleError_")
COMPARE_EXPORT_PREFIX = "DeepCompare_"
TRAILING_MODULES = ("ExportToDatabase", "CreateBatchFiles")  # modules that should stay last
# Stored values of the deep modules' "Model source" setting, part of the .cppipe format.
BUNDLED_SOURCE, CUSTOM_SOURCE = "Bundled model", "Custom model file"


class SwapRefused(ValueError):
    """The pipeline cannot be swapped; the message says why and what to do."""


@dataclass
class SwapResult:
    """What a swap did: the objects swapped, the measurement columns it added and removed, and notes."""

    swapped: list = field(default_factory=list)
    added_columns: list = field(default_factory=list)
    removed_columns: list = field(default_factory=list)
    notes: list = field(default_factory=list)


def measurement_columns(pipeline):
    """{(object, feature)} the pipeline makes, without the per-module bookkeeping columns."""
    return {(column[0], column[1]) for column in pipeline.get_measurement_columns()
            if not column[1].startswith(BOOKKEEPING_PREFIXES)}


def swap_pipeline(pipeline, *, compare=False, prefix="Deep", segmenter=DEFAULT_SEGMENTER, counter=DEFAULT_COUNTER):
    """Swap every IdentifyPrimaryObjects of a loaded pipeline for the deep modules.

    Parameters
    ----------
    pipeline : cellprofiler_core.pipeline.Pipeline
        Loaded without errors (a pipeline that lost modules while loading must not be swapped).
    compare : bool
        Keep IdentifyPrimaryObjects and add the deep modules after it, making ``<prefix><Name>`` objects and
        the ``DeepCount_<Name>`` measurement, with every count exported by ExportToSpreadsheet.
    prefix : str
        Prefix of the deep objects' names in compare mode.
    segmenter, counter : str
        Bundled model name or model file for DeepSegment and DeepCount.

    Returns
    -------
    SwapResult

    Raises
    ------
    SwapRefused
        If there is nothing to swap, the pipeline is 3-D, a new name is taken, or a module uses a
        measurement only IdentifyPrimaryObjects makes.
    """
    primaries = [module for module in pipeline.modules(False) if module.module_name == PRIMARY]
    _refuse_unswappable(pipeline, primaries)
    before = measurement_columns(pipeline)
    names = _names_in_use(pipeline)
    result = SwapResult()
    for primary in primaries:
        result.notes += _swap_one(pipeline, primary, names, before, compare, prefix, segmenter, counter)
        result.swapped.append(primary.y_name.value)
    if compare:
        result.notes += _ensure_spreadsheet_export(pipeline)
    after = measurement_columns(pipeline)
    result.added_columns, result.removed_columns = sorted(after - before), sorted(before - after)
    _refuse_dangling_references(pipeline, result.removed_columns)
    return result


def _swap_one(pipeline, primary, names, columns, compare, prefix, segmenter, counter):
    """Replace one IdentifyPrimaryObjects (or add the deep modules after it); notes on what was done."""
    objects = primary.y_name.value
    deep_objects = prefix + objects if compare else objects
    if compare:
        _refuse_taken(deep_objects, names, columns, objects, prefix)
    probability = _unused_name(f"{deep_objects}Probability", names)
    names.add(probability)
    modules = [_segment_module(primary, probability, segmenter), _threshold_module(primary, probability, deep_objects)]
    if compare:
        modules.append(_count_module(primary, objects, counter))
    first = primary.module_num + (1 if compare else 0)
    summary = _summary(primary, modules, first, compare)
    modules[0].notes = ([] if compare else list(primary.notes)) + [summary]
    if not compare:
        pipeline.remove_module(primary.module_num)
    _insert(pipeline, modules, first)
    if primary.limit_choice.value == "Continue":
        return [summary]
    return [summary, f"IdentifyPrimaryObjects '{objects}' erased all its objects in images with more than "
                     f"{primary.maximum_object_count.value}; DeepThreshold has no such limit."]


def _refuse_unswappable(pipeline, primaries):
    if not primaries:
        raise SwapRefused("The pipeline has no IdentifyPrimaryObjects module, so there is nothing to swap. "
                          "Add DeepSegment + DeepThreshold by hand in CellProfiler instead.")
    if pipeline.volumetric():
        raise SwapRefused("The pipeline processes images as 3-D (NamesAndTypes 'Process as 3D?' is Yes); "
                          "IdentifyPrimaryObjects, DeepSegment and DeepThreshold work on 2-D images, so it cannot "
                          "be swapped. Process the planes as 2-D images.")


def _names_in_use(pipeline):
    """Every image and object name the pipeline's modules provide."""
    from cellprofiler_core.setting.text import Name

    return {setting.value for module in pipeline.modules(False) for setting in module.visible_settings()
            if isinstance(setting, Name)}


def _refuse_taken(deep_objects, names, columns, objects, prefix):
    if deep_objects in names:
        raise SwapRefused(f"--compare would name the deep objects {deep_objects}, but the pipeline already makes "
                          f"an image or objects of that name. Choose another prefix than {prefix!r}.")
    if ("Image", f"DeepCount_{objects}") in columns:
        raise SwapRefused(f"The pipeline already measures DeepCount_{objects}, so it already compares counts "
                          f"of {objects}. Swap the original pipeline instead.")


def _unused_name(name, names):
    candidates = (name if index == 1 else f"{name}{index}" for index in range(1, len(names) + 2))
    return next(candidate for candidate in candidates if candidate not in names)


def _segment_module(primary, probability, model):
    from cellcount_cellprofiler.pipeline_builder import new_module

    module = new_module("DeepSegment", x_name=primary.x_name.value, y_name=probability)
    _set_model(module, model)
    return _like(module, primary)


def _threshold_module(primary, probability, objects):
    from cellcount_cellprofiler.pipeline_builder import new_module

    module = new_module(
        "DeepThreshold",
        x_name=probability,
        y_name=objects,
        size_range=primary.size_range.value,
        exclude_size=primary.exclude_size.value,
        exclude_border=primary.exclude_border_objects.value,
        fill_holes=primary.fill_holes.value != "Never",
        split_touching=primary.unclump_method.value != "None",
    )
    return _like(module, primary)


def _count_module(primary, objects, model):
    from cellcount_cellprofiler.pipeline_builder import new_module

    module = new_module("DeepCount", x_name=primary.x_name.value, count_name=objects)
    _set_model(module, model)
    return _like(module, primary)


def _like(module, primary):
    """Give a new module the replaced module's enabled and show-window state."""
    module.enabled = primary.enabled
    module.show_window = primary.show_window
    return module


def _set_model(module, model):
    """Point a deep module at a bundled model (a plain name) or a model file (a path that exists)."""
    if "/" not in model and "\\" not in model and not Path(model).suffix:
        module.model_source.value = BUNDLED_SOURCE
        module.bundled_model.value = model
        return
    from cellprofiler_core.preferences import ABSOLUTE_FOLDER_NAME

    card, weights = model_paths(Path(model).expanduser().resolve())
    if not card.is_file():
        raise FileNotFoundError(f"Model file {model} not found (looked for its card {card}). Give a bundled model "
                                "name or the path of a .safetensors model file with its .json card beside it.")
    module.model_source.value = CUSTOM_SOURCE
    module.model_directory.value = f"{ABSOLUTE_FOLDER_NAME}|{weights.parent}"
    module.model_file.value = weights.name


def _summary(primary, modules, first, compare):
    """One sentence on what replaced (or joined) an IdentifyPrimaryObjects module, for notes and the report."""
    low, high = primary.size_range.value
    yes_no = {True: "yes", False: "no"}
    segment, threshold = modules[0], modules[1]
    added = f"DeepSegment '{segment.y_name.value}' + DeepThreshold '{threshold.y_name.value}'"
    if compare:
        added += f" + DeepCount 'DeepCount_{modules[2].count_name.value}'"
    verb = "joined by" if compare else "replaced by"
    return (f"cellcount swap: IdentifyPrimaryObjects '{primary.y_name.value}' on image '{primary.x_name.value}' "
            f"{verb} {added} (modules {first}-{first + len(modules) - 1}): diameter range {low}-{high} pixels "
            f"(discard outside: {yes_no[threshold.exclude_size.value]}), discard border objects: "
            f"{yes_no[threshold.exclude_border.value]}, fill holes: {yes_no[threshold.fill_holes.value]}, split "
            f"touching: {yes_no[threshold.split_touching.value]}; threshold: the model's tuned threshold.")


def _insert(pipeline, modules, first):
    for offset, module in enumerate(modules):
        module.set_module_num(first + offset)
        pipeline.add_module(module)


def _ensure_spreadsheet_export(pipeline):
    """Make sure every count reaches an ExportToSpreadsheet table; notes on what was added."""
    from cellcount_cellprofiler.pipeline_builder import new_module

    exporters = [module for module in pipeline.modules() if module.module_name == "ExportToSpreadsheet"
                 and module.wants_everything.value and not module.pick_columns.value]
    if exporters:
        return []
    modules = pipeline.modules(False)
    position = len(modules) + 1
    while position > 1 and modules[position - 2].module_name in TRAILING_MODULES:
        position -= 1
    export = new_module("ExportToSpreadsheet", wants_prefix=True, prefix=COMPARE_EXPORT_PREFIX,
                        wants_overwrite_without_warning=True)
    _insert(pipeline, [export], position)
    return [f"Added ExportToSpreadsheet (module {position}): it writes {COMPARE_EXPORT_PREFIX}Image.csv and one "
            f"{COMPARE_EXPORT_PREFIX}<objects>.csv per object set to the Default Output Folder, for "
            "`cellcount compare`."]


def _refuse_dangling_references(pipeline, removed_columns):
    """Refuse when a module's setting names a measurement that the swap removed."""
    uses = []
    for module in pipeline.modules(False):
        for setting in module.settings():
            text = str(setting.value_text)
            for _, feature in removed_columns:
                if re.search(rf"(?<![A-Za-z0-9_]){re.escape(feature)}(?![A-Za-z0-9_])", text):
                    uses.append(f"module {module.module_num} {module.module_name} setting \"{setting.text}\" "
                                f"uses {feature}")
    if uses:
        raise SwapRefused("These measurements are made by IdentifyPrimaryObjects but not by DeepThreshold, and "
                          "the pipeline uses them:\n  " + "\n  ".join(uses) + "\nChange those settings first, "
                          "or keep IdentifyPrimaryObjects with --compare.")
