"""Build pipelines with CellProfiler's own API, so they always load in the installed CellProfiler.

``python -m cellcount_cellprofiler.pipeline_builder`` rewrites the shipped pipelines in ``pipelines/`` after a
module's settings change; the tests rebuild them and compare them with the committed files.
"""

import argparse
import io
from pathlib import Path

from cellcount_cellprofiler.plugin_folder import plugins_dir

IMAGE_NAME = "DNA"
CLASSICAL_OBJECTS = "Nuclei"
DEEP_OBJECTS = "DeepNuclei"
PROBABILITY_IMAGE = "DeepProbability"
COUNT_NAME = "Nuclei"


def start_cellprofiler(plugins=None):
    """Headless CellProfiler with the cellcount plugins (or those of the folder ``plugins``) registered."""
    from cellprofiler_core.preferences import set_headless, set_plugin_directory

    set_headless()
    set_plugin_directory(str(plugins or plugins_dir()), globally=False)
    from cellprofiler_core.utilities.core.modules import fill_modules

    fill_modules()


def new_module(name, **settings):
    """An instance of a CellProfiler module with the given settings attributes set to values."""
    from cellprofiler_core.utilities.core.modules import instantiate_module

    module = instantiate_module(name)
    for attribute, value in settings.items():
        getattr(module, attribute).value = value
    return module


def input_modules():
    """Images + Metadata + NamesAndTypes (every image as one grayscale channel DNA) + Groups."""
    return [
        new_module("Images"),
        new_module("Metadata"),
        new_module("NamesAndTypes", single_image_provider=IMAGE_NAME),
        new_module("Groups"),
    ]


def classical_module():
    """IdentifyPrimaryObjects with CellProfiler's defaults, border objects kept to compare whole-image counts."""
    return new_module(
        "IdentifyPrimaryObjects", x_name=IMAGE_NAME, y_name=CLASSICAL_OBJECTS, exclude_border_objects=False
    )


def deep_modules():
    """DeepSegment -> DeepThreshold (objects) and DeepCount (regression count), all with their defaults."""
    return [
        new_module("DeepSegment", x_name=IMAGE_NAME, y_name=PROBABILITY_IMAGE),
        new_module("DeepThreshold", x_name=PROBABILITY_IMAGE, y_name=DEEP_OBJECTS),
        new_module("DeepCount", x_name=IMAGE_NAME, count_name=COUNT_NAME),
    ]


def export_module():
    """ExportToSpreadsheet: Image.csv plus one CSV per object set, in the output folder, no file prefix."""
    return new_module("ExportToSpreadsheet", wants_prefix=False, wants_overwrite_without_warning=True)


def build_pipeline(modules):
    from cellprofiler_core.pipeline import Pipeline

    pipeline = Pipeline()
    for number, module in enumerate(modules, start=1):
        module.set_module_num(number)
        pipeline.add_module(module)
    return pipeline


def pipeline_text(modules):
    """The .cppipe text of a pipeline made of these modules."""
    buffer = io.StringIO()
    build_pipeline(modules).dump(buffer)
    return buffer.getvalue()


def shipped_pipelines():
    """File name -> .cppipe text of every pipeline this repository ships."""
    return {
        "compare_counts.cppipe": pipeline_text(
            input_modules() + [classical_module()] + deep_modules() + [export_module()]
        ),
        "deep_count.cppipe": pipeline_text(input_modules() + deep_modules() + [export_module()]),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("pipelines"), help="folder for the .cppipe files")
    args = parser.parse_args(argv)
    start_cellprofiler()
    for name, text in shipped_pipelines().items():
        (args.output / name).write_text(text)
        print(f"wrote {args.output / name}")


if __name__ == "__main__":
    main()
