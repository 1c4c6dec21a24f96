"""Errors of the deep modules name the module and the image set they failed on.

A headless CellProfiler run logs only "Error detected during run of module X" and a traceback; with many
image sets, the user needs to know which files failed. :func:`names_image_set` wraps a module's ``run`` so
that any exception is raised again, of the same type where it can be made from a message (else as
:class:`ImageSetError`), with a message that names the module, its position, the image set number and the
files of that image set. Like ``_model_settings``, this helper file is imported
by the plugin files and never registered as a module (its name starts with an underscore).
"""

import functools

from cellprofiler_core.constants.measurement import IMAGE


class ImageSetError(RuntimeError):
    """A deep module failed on one image set; the message says which module, which image set, which files."""


def names_image_set(run):
    """Decorate a module's ``run(self, workspace)`` so that its errors name the module and the image set."""

    @functools.wraps(run)
    def wrapped(self, workspace):
        try:
            return run(self, workspace)
        except Exception as error:
            if type(error).__name__ == "CancelledException":  # the user stopped the analysis: not a failure
                raise
            message = (f"{self.module_name} (module {self.module_num}) failed on "
                       f"{describe_image_set(workspace.measurements)}: {error}")
            raise _same_kind(error, message) from error

    return wrapped


def _same_kind(error, message):
    """An exception of ``error``'s type with ``message``, or an ImageSetError where that type needs more."""
    try:
        renamed = type(error)(message)
    except Exception:
        return ImageSetError(message)
    return renamed if str(renamed) == message else ImageSetError(message)


def describe_image_set(measurements):
    """"image set N (DNA: /path/file.png, ...)": its number and the file of each image it loaded."""
    number = measurements.image_set_number
    files = []
    features = measurements.get_feature_names(IMAGE) if IMAGE in measurements.get_object_names() else []
    for feature in sorted(features):
        if feature.startswith("FileName_"):
            name = feature[len("FileName_"):]
            path = _current(measurements, f"PathName_{name}")
            file_name = _current(measurements, feature)
            files.append(f"{name}: {path}/{file_name}" if path else f"{name}: {file_name}")
    return f"image set {number}" + (f" ({', '.join(files)})" if files else "")


def _current(measurements, feature):
    if not measurements.has_feature(IMAGE, feature):
        return None
    return measurements.get_current_image_measurement(feature)
