"""cellcount plugins-dir and install-plugins, from this checkout and from a real non-editable pip install."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cellcount_cellprofiler.cli import main

REPO = Path(__file__).resolve().parents[1]
PLUGIN_FILES = {"_model_settings.py", "_run_errors.py", "deepcount.py", "deepsegment.py", "deepthreshold.py"}


def test_plugins_dir_prints_the_folder_holding_the_plugins(capsys):
    assert main(["plugins-dir"]) == 0
    folder = Path(capsys.readouterr().out.strip())
    assert PLUGIN_FILES <= {path.name for path in folder.glob("*.py")}


def test_install_plugins_copies_the_plugin_files(tmp_path, capsys):
    assert main(["install-plugins", str(tmp_path / "plugins")]) == 0
    copied = {path.name for path in (tmp_path / "plugins").iterdir()}
    assert copied == PLUGIN_FILES
    for name in copied:
        assert (tmp_path / "plugins" / name).read_bytes() == (REPO / "plugins" / name).read_bytes()
    assert f"to {tmp_path / 'plugins'}" in capsys.readouterr().out


def test_install_plugins_refuses_cellprofilers_official_plugins_folder(tmp_path, capsys):
    assert main(["install-plugins", str(tmp_path / "CellProfiler" / "official_plugins")]) == 2
    assert "official plugins folder, which the CellProfiler GUI deletes" in capsys.readouterr().err
    assert not (tmp_path / "CellProfiler").exists()


@pytest.mark.cellprofiler
@pytest.mark.slow
def test_installed_copies_load_in_cellprofiler(tmp_path):
    assert main(["install-plugins", str(tmp_path)]) == 0
    completed = subprocess.run([str(Path(sys.executable).with_name("cellcount")), "check-pipeline",
                                str(REPO / "pipelines" / "compare_counts.cppipe"), "--plugins-directory",
                                str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert "Modules: 9 in the file, 9 loaded" in completed.stdout, completed.stdout + completed.stderr
    assert "did not load" not in completed.stdout


@pytest.mark.slow
def test_plugins_dir_of_a_non_editable_pip_install(tmp_path):
    """pip install (not editable) into a target folder: plugins-dir points into the installed package."""
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv*", "runs", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "demo_output"))
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(target), str(source)], check=True, timeout=600)
    environment = dict(os.environ, PYTHONPATH=str(target))
    completed = subprocess.run([str(target / "bin" / "cellcount"), "plugins-dir"], capture_output=True, text=True,
                               env=environment, cwd=tmp_path, timeout=120)
    assert completed.returncode == 0, completed.stderr
    folder = Path(completed.stdout.strip())
    assert folder == target / "cellcount_cellprofiler" / "plugins"
    assert PLUGIN_FILES <= {path.name for path in folder.glob("*.py")}
    copied = subprocess.run([str(target / "bin" / "cellcount"), "install-plugins", str(tmp_path / "mine")],
                            capture_output=True, text=True, env=environment, cwd=tmp_path, timeout=120)
    assert copied.returncode == 0, copied.stderr
    assert {path.name for path in (tmp_path / "mine").iterdir()} == PLUGIN_FILES
