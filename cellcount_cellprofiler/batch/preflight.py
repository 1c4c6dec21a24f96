"""Pre-flight of a batch, in a CellProfiler process of its own: check the pipeline, then list its image sets.

Running it apart keeps CellProfiler out of the Dask client's process, and works when the caller has already
started CellProfiler (starting it a second time in one process loses the plugin modules).
``python -m cellcount_cellprofiler.batch.preflight PIPELINE RESULT.json [--images DIR] [--plugins-directory DIR]``
writes the image sets to RESULT.json, or prints what is wrong and exits 2.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from cellcount_cellprofiler.batch.image_sets import ImageSets

REFUSED = 2


class PreflightError(ValueError):
    """The pipeline would fail or be cut short: nothing was submitted."""


def run_preflight(pipeline, images, plugins_directory, result_path):
    """ImageSets of ``pipeline`` on ``images`` once it passes ``check-pipeline``; PreflightError otherwise."""
    command = [sys.executable, "-m", __name__, str(pipeline), str(result_path), "--plugins-directory",
               str(plugins_directory)]
    if images is not None:
        command += ["--images", str(images)]
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        message = completed.stdout.strip() if completed.returncode == REFUSED else completed.stderr[-3000:]
        raise PreflightError(f"{message}\nNothing was submitted: fix the pipeline first.")
    return ImageSets(**json.loads(Path(result_path).read_text()))


def check_and_list(pipeline, images, plugins_directory):
    """ImageSets after ``check-pipeline``'s checks and an ExportToSpreadsheet check, in this process."""
    from cellcount_cellprofiler.batch.image_sets import find_image_sets
    from cellcount_cellprofiler.pipeline_check import check_pipeline
    from cellcount_cellprofiler.pipeline_loading import headless_cellprofiler, load_pipeline, quiet_cellprofiler

    with quiet_cellprofiler(), headless_cellprofiler(plugins_directory) as plugins:
        from cellprofiler_core import __version__
        from cellprofiler_core.preferences import set_default_image_directory

        if images is not None:
            set_default_image_directory(str(images))
        report = check_pipeline(pipeline, plugins)
        if not report.ok:
            raise PreflightError(report.text(__version__))
        loaded = load_pipeline(pipeline, plugins).pipeline
        if not any(module.enabled and module.module_name == "ExportToSpreadsheet" for module in loaded.modules()):
            raise PreflightError(f"{pipeline} has no enabled ExportToSpreadsheet module, so its chunks would write "
                                 "no tables to merge. Add ExportToSpreadsheet (into the Default Output Folder).")
        return find_image_sets(pipeline, loaded, images)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pipeline", type=Path)
    parser.add_argument("result", type=Path)
    parser.add_argument("--images", type=Path)
    parser.add_argument("--plugins-directory", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        image_sets = check_and_list(args.pipeline, args.images, args.plugins_directory)
    except (PreflightError, ValueError, FileNotFoundError) as error:
        print(error)
        return REFUSED
    args.result.write_text(json.dumps(asdict(image_sets)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
