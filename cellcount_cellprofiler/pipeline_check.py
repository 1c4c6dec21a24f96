"""Pre-flight check of a pipeline: every module loads, every setting is valid, every model file loads.

Run it before submitting cluster jobs: a headless CellProfiler run silently drops every module after one
that fails to load and still exits 0, and a model problem only shows on the first image.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cellcount_cellprofiler.pipeline_loading import CELLCOUNT_MODULES, describe_import_error, load_pipeline


@dataclass
class Finding:
    """Something found in one module: its position in the pipeline file, its name and the message."""

    position: int
    module_name: str
    message: str

    def __str__(self):
        return f"module {self.position} {self.module_name}: {self.message}"


@dataclass
class CheckReport:
    """The outcome of :func:`check_pipeline`; ``ok`` is True when nothing stops the pipeline from running."""

    path: str
    plugin_folder: str
    file_modules: list
    loaded_count: int
    stops_silently: bool = True  # a headless run drops modules after a failed one without an error (.cppipe)
    load_problems: list = field(default_factory=list)
    setting_problems: list = field(default_factory=list)
    model_problems: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    disabled: list = field(default_factory=list)
    models: list = field(default_factory=list)
    advice: list = field(default_factory=list)  # how to fix what was found, printed after the problems

    @property
    def problems(self):
        return self.load_problems + self.setting_problems + self.model_problems

    @property
    def ok(self):
        return not self.problems

    def truncation(self):
        """What a headless run would silently drop, in words; None when every module loads."""
        positions = [problem.position for problem in self.load_problems if problem.position]
        if not positions or not self.stops_silently:
            return None
        first = min(positions)
        dropped = self.file_modules[first:]
        after = f" and the {len(dropped)} module(s) after it ({', '.join(dropped)})" if dropped else ""
        return (f"A headless run of this pipeline would stop loading at module {first} "
                f"({self.file_modules[first - 1]}): it{after} would be dropped without an error, and the run "
                "would exit 0 without their output.")

    def text(self, cellprofiler_version):
        """The report as printed by ``cellcount check-pipeline``."""
        modules = f"Modules: {len(self.file_modules)} in the file, {self.loaded_count} loaded"
        if self.disabled:
            modules += f", {len(self.disabled)} disabled and not checked ({', '.join(self.disabled)})"
        lines = [f"Pipeline: {self.path}", f"CellProfiler {cellprofiler_version}, plugin folder: {self.plugin_folder}",
                 modules]
        lines += [f"Model loads: {model}" for model in self.models]
        lines += [f"Warning: {warning}" for warning in self.warnings]
        if self.ok:
            lines.append("OK: every module loads, its settings are valid and every model file loads.")
            return "\n".join(lines)
        lines.append(f"FAILED: {len(self.problems)} problem(s)")
        lines += [f"  {problem}" for problem in self.problems]
        truncation = self.truncation()
        if truncation:
            lines.append(truncation)
        lines += self.advice
        return "\n".join(lines)


def check_pipeline(path, plugin_folder, folders=None):
    """Load ``path`` in the running headless CellProfiler and check its modules, settings and models.

    CellProfiler must have been started with ``plugin_folder`` as its plugin directory, or with none (its own
    default folders) when ``folders`` (a :class:`~cellcount_cellprofiler.pipeline_loading.PluginFolders`)
    says so; the report then names the folders and, if the cellcount modules are missing, how to give them.

    Returns
    -------
    CheckReport
    """
    from cellprofiler_core.setting import ValidationError

    loaded = load_pipeline(path, plugin_folder)
    pipeline, checked_models = loaded.pipeline, {}
    report = CheckReport(str(path), folders.describe() if folders else str(plugin_folder), loaded.file_modules,
                         len(pipeline.modules(False)), stops_silently=not loaded.is_json,
                         load_problems=loaded.problems)
    if folders is not None and folders.given is None:
        report.advice += _plugin_folder_advice(loaded.problems)
    for module in pipeline.modules(False):
        position = loaded.position_of(module)
        if not module.enabled:
            report.disabled.append(f"{position} {module.module_name}")
            continue
        try:
            module.test_valid(pipeline)
        except ValidationError as error:
            setting = error.get_setting()
            label = f'setting "{setting.text}": ' if setting is not None else ""
            report.setting_problems.append(Finding(position, module.module_name, label + error.message))
        else:
            if hasattr(module, "model_path"):
                problem, description = _check_model(module, checked_models)
                if problem:
                    report.model_problems.append(Finding(position, module.module_name, f"model: {problem}"))
                elif description not in report.models:
                    report.models.append(description)
        try:
            module.test_module_warnings(pipeline)
        except ValidationError as warning:
            report.warnings.append(str(Finding(position, module.module_name, warning.message)))
    return report


def _plugin_folder_advice(load_problems):
    """How to give CellProfiler the cellcount plugins, when they did not load from its default folders."""
    from cellcount_cellprofiler.plugin_folder import plugins_dir

    if not any(problem.module_name in CELLCOUNT_MODULES for problem in load_problems):
        return []
    return [f"Fix: give CellProfiler cellcount's plugin folder, {plugins_dir()}: run `cellprofiler -c -r -p "
            "PIPELINE ... --plugins-directory $(cellcount plugins-dir)` and check the same command with "
            "`cellcount check-pipeline PIPELINE --plugins-directory $(cellcount plugins-dir)`. In the GUI, set "
            "File > Preferences > CellProfiler plugins directory to that folder (headless runs do not read it)."]


def _check_model(module, cache):
    """(problem, None) or (None, description) for the model file a deep module names; loads each file once."""
    from cellcount_core.models.model_files import ModelFileError, load_model

    try:
        path = module.model_path()
    except ModelFileError as error:
        return str(error), None
    if path not in cache:
        try:
            _, card = load_model(path)
        except ModelFileError as error:
            cache[path] = (str(error), None)
        except ImportError as error:
            cache[path] = (f"{path} cannot be loaded: {describe_import_error(error)}", None)
        else:
            cache[path] = (None, f"{card.name} ({card.kind}, {path})")
    return cache[path]
