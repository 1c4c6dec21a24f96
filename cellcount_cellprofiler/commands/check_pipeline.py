"""``cellcount check-pipeline``: load a pipeline as headless CellProfiler would and fail loudly on any problem."""

from pathlib import Path


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "check-pipeline",
        help="check that a pipeline loads, its settings are valid and its model files load",
        description="Load PIPELINE as a headless CellProfiler run would, name every module that did not load "
                    "and why, report setting errors and check every model file the deep modules name. Exits 1 "
                    "on any problem: run it before submitting cluster jobs, since a headless run silently drops "
                    "every module after one that fails to load and still exits 0. Give it the same "
                    "--plugins-directory as the cellprofiler command it checks; without one it reads the folders "
                    "a headless cellprofiler run reads without one.",
    )
    parser.add_argument("pipeline", metavar="PIPELINE", type=Path, help=".cppipe, .json or Batch_data.h5 file")
    parser.add_argument("--plugins-directory", type=Path, metavar="DIR",
                        help="the plugin folder you give CellProfiler (default: none, as CellProfiler without "
                             "--plugins-directory: its official_plugins folder)")
    parser.add_argument("-i", "--image-directory", type=Path, metavar="DIR",
                        help="Default Input Folder, as for cellprofiler -i (model folders may be relative to it)")
    parser.add_argument("-o", "--output-directory", type=Path, metavar="DIR",
                        help="Default Output Folder, as for cellprofiler -o")
    parser.add_argument("--verbose", action="store_true", help="show CellProfiler's own log messages")
    parser.set_defaults(run=run)


def run(args):
    from cellcount_cellprofiler.pipeline_check import check_pipeline
    from cellcount_cellprofiler.pipeline_loading import (PluginFolders, cellprofiler_default_plugin_folders,
                                                         headless_cellprofiler, quiet_cellprofiler, require_file)

    require_file(args.pipeline)
    with quiet_cellprofiler(args.verbose), \
            headless_cellprofiler(args.plugins_directory, cellprofiler_default=True) as plugin_folder:
        _set_default_folders(args.image_directory, args.output_directory)
        given = args.plugins_directory and plugin_folder
        folders = PluginFolders(given, [plugin_folder] if given else cellprofiler_default_plugin_folders())
        report = check_pipeline(args.pipeline, plugin_folder, folders)
    from cellprofiler_core import __version__

    print(report.text(__version__))
    return 0 if report.ok else 1


def _set_default_folders(image_directory, output_directory):
    from cellprofiler_core.preferences import set_default_image_directory, set_default_output_directory

    for folder, setter in ((image_directory, set_default_image_directory),
                           (output_directory, set_default_output_directory)):
        if folder is not None:
            if not folder.is_dir():
                raise FileNotFoundError(f"{folder} is not a folder. Name an existing folder.")
            setter(str(folder.resolve()))
