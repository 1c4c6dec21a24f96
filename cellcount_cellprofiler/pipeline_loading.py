"""Load a pipeline as headless CellProfiler does, but name every module that fails to load, and why.

A headless run stops loading at the first module that fails (a missing plugin, a plugin file that cannot be
imported, settings it cannot read), drops that module and every module after it, and still exits 0. Loading
here goes on past each failure, so that all of them are found, and explains each one.
"""

from __future__ import annotations

import importlib.util
import io
import json
import logging
import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

CELLCOUNT_MODULES = ("DeepSegment", "DeepThreshold", "DeepCount")
_MODULE_HEADER = re.compile(r"^([A-Za-z_][\w.]*):\[.*module_num:")


@dataclass
class LoadProblem:
    """A module that did not load: its 1-based position in the file (None if unknown), name and the reason."""

    position: int | None
    module_name: str
    reason: str

    def __str__(self):
        where = f"module {self.position} " if self.position else "module "
        return f"{where}{self.module_name}: did not load: {self.reason}"


class PipelineLoadError(ValueError):
    """The pipeline has modules that did not load; using it would silently drop them."""

    def __init__(self, path, problems):
        self.problems = problems
        listed = "\n".join(f"  {problem}" for problem in problems)
        super().__init__(f"{path}: {len(problems)} module(s) did not load:\n{listed}\n"
                         "Run `cellcount check-pipeline` on it and fix these first.")


@dataclass
class LoadedPipeline:
    """A loaded pipeline with what the file listed and what did not load."""

    pipeline: object
    file_modules: list  # module names in file order
    positions: list  # file position of each loaded module, in the order of pipeline.modules(False)
    problems: list  # LoadProblem
    saved_revision: int | None = None  # DateRevision of the header: 428 for CellProfiler 4.2.8, 500 for 5.0
    is_json: bool = False  # JSON pipelines fail loudly in headless runs; .cppipe ones lose modules silently

    def position_of(self, module):
        """The 1-based position in the file of a loaded module."""
        index = self.pipeline.modules(False).index(module)
        return self.positions[index] if index < len(self.positions) else module.module_num


@contextmanager
def quiet_cellprofiler(verbose=False):
    """Silence CellProfiler's log messages (duplicate-module and MySQL warnings, load tracebacks)."""
    if verbose:
        yield
        return
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(previous)


@dataclass
class PluginFolders:
    """The plugin folders a headless CellProfiler searches: the one given, or CellProfiler's own defaults."""

    given: Path | None  # --plugins-directory, or None when CellProfiler chooses
    searched: list  # the folders CellProfiler reads, in its order (only existing ones are read)

    @property
    def primary(self):
        """The folder failures are explained against: the given one, else CellProfiler's first default."""
        return self.given if self.given is not None else next(iter(self.searched), None)

    def describe(self):
        """Which folder(s) the check used, in words."""
        if self.given is not None:
            return str(self.given)
        listed = ", ".join(f"{folder}{'' if folder.is_dir() else ' (absent)'}" for folder in self.searched)
        return (f"none given, so what a headless `cellprofiler` run without --plugins-directory reads: "
                f"{listed or 'no folder'} (headless runs do not read the GUI's plugins-directory preference)")


def cellprofiler_default_plugin_folders():
    """The plugin folders a headless CellProfiler run without ``--plugins-directory`` reads, in its order.

    Call it after ``set_headless()``. CellProfiler 5 reads its plugins-directory preference, which a headless run
    leaves unset (its headless configuration starts empty; the GUI's preference file is read through wx only),
    then ``official_plugins`` in the user data folder (``~/.local/share/CellProfiler/official_plugins`` on
    Linux). CellProfiler 4.2.8 reads the preference only.
    """
    from cellprofiler_core.preferences import get_plugin_directory

    folders = [get_plugin_directory()]
    try:
        from cellprofiler_core.utilities.core.plugins import get_official_plugins_directory
    except ImportError:  # CellProfiler 4.2.8
        pass
    else:
        folders.append(get_official_plugins_directory())
    return [Path(folder) for folder in folders if folder]


@contextmanager
def headless_cellprofiler(plugin_folder=None, cellprofiler_default=False):
    """Headless CellProfiler with a plugin folder; yields the folder failures are explained against.

    ``plugin_folder`` None means cellcount's own plugin folder, or, with ``cellprofiler_default``, the folders
    CellProfiler itself reads without ``--plugins-directory`` (:func:`cellprofiler_default_plugin_folders`).
    CellProfiler 4 validates file filters in Java, so its JVM (javabridge) runs until the block ends;
    CellProfiler 5 needs no JVM to load and validate pipelines.
    """
    from cellprofiler_core.preferences import set_headless, set_plugin_directory
    from cellprofiler_core.utilities.core.modules import fill_modules

    from cellcount_cellprofiler.plugin_folder import plugins_dir

    set_headless()
    if plugin_folder is None and cellprofiler_default:
        folder = PluginFolders(None, cellprofiler_default_plugin_folders()).primary
    else:
        folder = Path(plugin_folder or plugins_dir()).resolve()
        if not folder.is_dir():
            raise FileNotFoundError(f"Plugin folder {folder} is not a folder. Name the folder that holds the "
                                    "plugin files (`cellcount plugins-dir` prints cellcount's).")
        set_plugin_directory(str(folder), globally=False)
    fill_modules()
    if importlib.util.find_spec("javabridge") is None:
        yield folder
        return
    from cellprofiler_core.utilities.java import start_java, stop_java

    start_java()
    try:
        yield folder
    finally:
        stop_java()


def require_file(path):
    """``path`` as a Path; FileNotFoundError naming it when it is not a file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Pipeline {path} does not exist. Give the path of a .cppipe, .json or .h5 file.")
    return path


def read_pipeline_text(path):
    """The pipeline text of a .cppipe, .json or .h5 (e.g. Batch_data.h5) pipeline file."""
    path = require_file(path)
    if path.read_bytes()[:8] == b"\x89HDF\r\n\x1a\n":
        from cellprofiler_core.constants.pipeline import M_PIPELINE
        from cellprofiler_core.utilities.measurement import load_measurements

        return load_measurements(str(path)).get_experiment_measurement(M_PIPELINE)
    return path.read_text(encoding="utf-8", errors="replace")


def _is_json(text):
    return text.lstrip().startswith("{")


def listed_module_names(text):
    """Module names in the order a pipeline text lists them (.cppipe text or JSON)."""
    if _is_json(text):
        try:
            return [module["attributes"]["module_name"] for module in json.loads(text)["modules"]]
        except (ValueError, KeyError, TypeError):
            return []
    return [match.group(1) for match in map(_MODULE_HEADER.match, text.splitlines()) if match]


def _header_number(text, key):
    match = re.search(rf"^{key}:(\d+)", text, re.MULTILINE)
    return int(match.group(1)) if match else None


def saved_revision(text):
    """The DateRevision a .cppipe header records (428 for CellProfiler 4.2.8, 500 for 5.0), or None."""
    return _header_number(text, "DateRevision")


def load_pipeline(path, plugin_folder=None):
    """Load a pipeline file in the running (headless) CellProfiler, going on past modules that fail.

    Parameters
    ----------
    path : str or Path
        A .cppipe, .json or .h5 (Batch_data.h5) pipeline.
    plugin_folder : str or Path, optional
        The plugin folder CellProfiler was started with; used to explain failures.

    Returns
    -------
    LoadedPipeline
    """
    text = read_pipeline_text(path)
    names = listed_module_names(text)
    pipeline = _recording_pipeline()
    failures = []

    def on_event(_, event):
        from cellprofiler_core.pipeline import LoadException

        if isinstance(event, LoadException):
            event.cancel_run = False  # go on to the next module, unlike a headless run
            failures.append(event)

    pipeline.add_listener(on_event)
    is_json = _is_json(text)
    try:
        if is_json:
            pipeline.load(str(path))  # JSON pipelines load by file name and raise at the first unknown module
        else:
            pipeline.load(io.StringIO(text))
    except Exception as error:  # a JSON pipeline or a malformed file: no per-module events
        problems = _whole_file_problems(names, error, plugin_folder)
        return LoadedPipeline(pipeline, names, [], problems, saved_revision(text), is_json)
    problems = [
        LoadProblem(position, event.module_name or "(unreadable module)",
                    explain_load_error(event.module_name, event.error, plugin_folder))
        for position, event in zip(pipeline.failed_positions or [None] * len(failures), failures)
    ]
    return LoadedPipeline(pipeline, names, pipeline.loaded_positions, problems + _unread_modules(text, names),
                          saved_revision(text))


def _unread_modules(text, names):
    """A problem for the modules past the header's ModuleCount, which CellProfiler never reads."""
    count = _header_number(text, "ModuleCount")
    if count is None or count >= len(names):
        return []
    return [LoadProblem(count + 1, names[count],
                        f"the header says ModuleCount:{count} but the file lists {len(names)} modules, so "
                        f"CellProfiler reads only the first {count} and ignores this one and those after it. "
                        "Correct ModuleCount, or re-save the pipeline from CellProfiler.")]


def load_pipeline_strict(path, plugin_folder=None):
    """Like :func:`load_pipeline`, but raise PipelineLoadError if any module did not load."""
    loaded = load_pipeline(path, plugin_folder)
    if loaded.problems:
        raise PipelineLoadError(path, loaded.problems)
    return loaded


def _recording_pipeline():
    """A Pipeline that records the file position of each module it loads or fails to load."""
    from cellprofiler_core.pipeline import Pipeline

    class RecordingPipeline(Pipeline):
        def __init__(self):
            super().__init__()
            self.loaded_positions, self.failed_positions, self._seen = [], [], 0

        def setup_module(self, *args, **kwargs):
            self._seen += 1
            try:
                module = super().setup_module(*args, **kwargs)
            except Exception:
                self.failed_positions.append(self._seen)
                raise
            self.loaded_positions.append(self._seen)
            return module

    return RecordingPipeline()


def _whole_file_problems(names, error, plugin_folder):
    """Problems for a file that raised while loading: each unknown module, or the file's own error."""
    from cellprofiler_core.utilities.core.modules import get_module_class

    problems = []
    for position, name in enumerate(names, start=1):
        try:
            get_module_class(name)
        except Exception as unknown:
            problems.append(LoadProblem(position, name, explain_load_error(name, unknown, plugin_folder)))
    return problems or [LoadProblem(None, "(pipeline file)", f"CellProfiler could not read it: {error}")]


def explain_load_error(module_name, error, plugin_folder):
    """Why a module did not load, in words that say what to do."""
    from cellprofiler_core.utilities.core.modules import get_module_class

    if module_name is None:
        return f"its header line could not be read ({error}). The file is damaged; re-save it from CellProfiler."
    try:
        get_module_class(module_name)
    except Exception as unknown:
        return _explain_unknown_module(module_name, unknown, plugin_folder)
    return (f"its settings could not be read ({type(error).__name__}: {error}). It may have been saved by a "
            "newer version of CellProfiler or of the plugin; re-save the pipeline with the version you run.")


def _explain_unknown_module(module_name, unknown, plugin_folder):
    plugin_file = Path(plugin_folder) / f"{module_name.lower()}.py" if plugin_folder else None
    if plugin_file is not None and plugin_file.is_file():
        import_error = _import_error(plugin_file)
        if import_error is not None:
            return f"its plugin file {plugin_file} fails to import: {describe_import_error(import_error)}"
        return (f"its plugin file {plugin_file} imports, but CellProfiler registered no module named "
                f"{module_name} from it (the file must define a Module subclass whose module_name is "
                f"{module_name!r}).")
    where = (f"the plugin folder {plugin_folder} has no {module_name.lower()}.py" if plugin_folder
             else "no plugin folder was given")
    if module_name in CELLCOUNT_MODULES:
        from cellcount_cellprofiler.plugin_folder import plugins_dir

        return (f"it is a cellcount plugin, but {where}. Run CellProfiler with --plugins-directory {plugins_dir()} "
                "(the folder `cellcount plugins-dir` prints), or copy the plugins into a folder of your own with "
                "`cellcount install-plugins DIR` and pass that folder.")
    message = str(unknown)
    if message.startswith("Could not find the"):
        message = f"{module_name} is not a module of this CellProfiler"
    return (f"{message}, and {where}. If it is a plugin, pass --plugins-directory with the folder that holds "
            "its file.")


def _import_error(plugin_file):
    """The exception importing a plugin file raises (its folder on sys.path, as CellProfiler does), or None."""
    folder = str(plugin_file.parent)
    spec = importlib.util.spec_from_file_location(f"_cellcount_check_{plugin_file.stem}", plugin_file)
    sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
    except BaseException as error:  # a plugin may raise anything at import, SystemExit included
        return error
    finally:
        sys.path.remove(folder)
    return None


def describe_import_error(error):
    """An import failure in words: a missing package is named with what to install."""
    if isinstance(error, ModuleNotFoundError) and error.name:
        package = error.name.split(".")[0]
        return (f"it needs the Python package '{package}', which is not installed in the Python that runs "
                f"CellProfiler ({sys.executable}). Install it there (e.g. pip install {package}; some packages "
                "install under another name, such as cv2 from opencv-python-headless).")
    return f"{type(error).__name__}: {error}"
