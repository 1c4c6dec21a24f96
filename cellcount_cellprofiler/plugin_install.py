"""Copy the cellcount plugin files into a folder CellProfiler reads plugins from."""

import os
import shutil
from pathlib import Path

from cellcount_cellprofiler.plugin_folder import plugins_dir

OFFICIAL_PLUGINS = "official_plugins"  # CellProfiler 5's folder of official plugins, which its GUI wipes


def official_plugins_folder():
    """CellProfiler 5's official plugins folder, or None where CellProfiler (or that folder) is not known."""
    try:
        from cellprofiler_core.utilities.core.plugins import get_official_plugins_directory
    except ImportError:
        return None
    return Path(get_official_plugins_directory())


def plugin_files():
    """The plugin files to copy: the modules and the helpers they import (not the package's __init__.py)."""
    return sorted(path for path in plugins_dir().glob("*.py") if path.name != "__init__.py")


def install_plugins(folder):
    """Copy the plugin files into ``folder`` (created); return the paths written.

    Raises
    ------
    ValueError
        If ``folder`` is CellProfiler 5's official plugins folder (its GUI deletes and refills it) or the
        plugin folder itself.
    """
    folder = Path(folder).expanduser().resolve()
    official = official_plugins_folder()
    if folder.name == OFFICIAL_PLUGINS or (official is not None and _same(folder, official)):
        raise ValueError(f"{folder} is CellProfiler's official plugins folder, which the CellProfiler GUI deletes "
                         "and refills. Choose your own folder and set it in File > Preferences > CellProfiler "
                         "plugins directory.")
    if _same(folder, plugins_dir()):
        raise ValueError(f"{folder} is where the plugins already are. Name another folder.")
    folder.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy2(source, folder / source.name)) for source in plugin_files()]


def _same(a, b):
    return os.path.realpath(a) == os.path.realpath(b)
