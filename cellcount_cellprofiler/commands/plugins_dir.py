"""``cellcount plugins-dir`` and ``cellcount install-plugins``: where CellProfiler finds the cellcount modules."""

from pathlib import Path


def add_parser(subparsers):
    where = subparsers.add_parser(
        "plugins-dir",
        help="print the folder to give CellProfiler as its plugins directory",
        description="Print the folder holding deepsegment.py, deepthreshold.py and deepcount.py: give it to "
                    "CellProfiler (File > Preferences > CellProfiler plugins directory, or "
                    "--plugins-directory for headless runs).",
    )
    where.set_defaults(run=run_plugins_dir)
    install = subparsers.add_parser(
        "install-plugins",
        help="copy the plugin files into a folder of your choice",
        description="Copy the cellcount plugin files into DIR, for a CellProfiler whose plugins directory is "
                    "already set there. cellcount must be installed in the Python that runs CellProfiler, since "
                    "the plugin files import it; copy again after upgrading cellcount.",
    )
    install.add_argument("folder", metavar="DIR", type=Path)
    install.set_defaults(run=run_install_plugins)


def run_plugins_dir(args):
    from cellcount_cellprofiler.plugin_folder import plugins_dir

    print(plugins_dir())
    return 0


def run_install_plugins(args):
    from cellcount_cellprofiler.plugin_install import install_plugins

    written = install_plugins(args.folder)
    print(f"Copied {', '.join(path.name for path in written)} to {written[0].parent}")
    return 0
