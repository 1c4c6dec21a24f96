"""Helpers of the CellProfiler 4.2.8 tests: paths, pipeline loading with errors caught, headless runs."""

import csv
import os
import subprocess
import sys
from pathlib import Path

CP4_VERSION = "4.2.8"
REPO = Path(__file__).resolve().parents[2]
PLUGINS = REPO / "plugins"
PIPELINES = REPO / "pipelines"
WEIGHTS = REPO / "cellcount_core" / "weights"
DEFAULT_JAVA_HOME = "/usr/lib/jvm/java-17-openjdk-amd64"
# Two small images with known counts: (number of cells, diameter range), as the first two demo images.
IMAGES = ((25, (14, 20)), (60, (12, 18)))
PLUGIN_MODULES = {"deepsegment": "DeepSegment", "deepthreshold": "DeepThreshold", "deepcount": "DeepCount"}


def load_pipeline(path_or_file):
    """Load a pipeline; return (pipeline, [LoadException...]) instead of letting a failed module vanish."""
    from cellprofiler_core.pipeline import LoadException, Pipeline

    pipeline = Pipeline()
    errors = []
    pipeline.add_listener(lambda _, event: errors.append(event) if isinstance(event, LoadException) else None)
    pipeline.load(path_or_file if hasattr(path_or_file, "read") else str(path_or_file))
    return pipeline, errors


def cellprofiler(*arguments, cwd):
    """Run the venv's ``cellprofiler`` command headless with the plugin folder; return the CompletedProcess."""
    command = [str(Path(sys.executable).with_name("cellprofiler")), "-c", "-r", *map(str, arguments),
               "--plugins-directory", str(PLUGINS)]
    env = dict(os.environ)
    env.setdefault("JAVA_HOME", DEFAULT_JAVA_HOME)
    completed = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env, cwd=str(cwd))
    completed.said = f"$ {' '.join(command)}\n{completed.stdout[-2000:]}{completed.stderr[-4000:]}"
    return completed


def read_image_table(output, said=""):
    """Image.csv's rows; a failure that quotes CellProfiler when the table is missing."""
    table = output / "Image.csv"
    assert table.exists(), f"no Image.csv: modules were probably dropped while loading. CellProfiler said:\n{said}"
    with open(table, newline="") as handle:
        return list(csv.DictReader(handle))


def run_headless(pipeline, images, output):
    """``cellprofiler -c -r -p PIPE -i IMAGES -o OUT --plugins-directory plugins``; returns Image.csv's rows."""
    completed = cellprofiler("-p", pipeline, "-i", images, "-o", output, cwd=output)
    assert completed.returncode == 0, f"exit status {completed.returncode}:\n{completed.said}"
    assert "Could not load" not in completed.stderr, f"a module failed to load:\n{completed.said}"
    return read_image_table(output, completed.said)
