"""Shared pieces of the benchmarks: the machine's description, model files, cached synthetic images, child
processes that report their peak memory, and Markdown tables.

The numbers depend on the machine and on whatever else runs on it: every result records the date, the machine
and the load average, and comparisons are made within one run.
"""

import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(os.environ.get("CELLCOUNT_BENCH_RESULTS", Path(__file__).resolve().parent / "results"))
#: Synthetic images and model files are cached here between runs (a 10k image with its maps takes 0.8 GB).
CACHE = Path(os.environ.get("CELLCOUNT_BENCH_CACHE", "/tmp/cellcount-bench"))
#: Architectures benchmarked with their default parameters (and random weights: speed does not depend on them).
SEGMENTERS = ("dcc_unet", "unet", "small_unet", "resunet", "c_resunet")
COUNTERS = ("density_counter",)


def machine():
    """Date, CPU, cores, memory, load average, GPU and library versions, as a dict."""
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    memory_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                     if line.startswith("MemTotal"))
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gb": round(memory_kb / 2**20, 1),
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def describe(info):
    """One line of Markdown describing a `machine()` record."""
    load = ", ".join(f"{v:.2f}" for v in info["load_average"])
    return (f"{info['date']}; {info['cpu']}, {info['cores']} cores ({info['torch_threads']} torch threads), "
            f"{info['memory_gb']} GB; GPU: {info['gpu'] or 'none'}; Python {info['python']}, torch {info['torch']}; "
            f"load average {load} (1/5/15 min) at the start")


def model_files():
    """{name: model file} for every benchmarked architecture (random weights) and every bundled model."""
    import torch

    from cellcount_core.models.bundled import bundled_models
    from cellcount_core.models.model_files import ModelCard, save_model
    from cellcount_core.models.networks import create_model

    folder = CACHE / "models"
    files = {}
    for name in SEGMENTERS + COUNTERS:
        path = folder / f"{name}.safetensors"
        if not path.is_file():
            torch.manual_seed(0)
            kind = "counter" if name in COUNTERS else "segmenter"
            card = ModelCard(name=name, kind=kind, architecture=name, params={},
                             default_threshold={"value": 0.5, "method": "manual"})
            save_model(create_model(name).eval(), card, folder / name)
        files[name] = path
    for name, card in bundled_models().items():
        files[f"bundled {name}"] = card
    return files


def bundled_or(kind, fallback):
    """(label, model file): the bundled default model of a kind if installed, else the random-weight `fallback`."""
    from cellcount_core.models.bundled import DEFAULT_COUNTER, DEFAULT_SEGMENTER, bundled_models

    name = DEFAULT_SEGMENTER if kind == "segmenter" else DEFAULT_COUNTER
    bundled = bundled_models()
    if name in bundled:
        return f"bundled {name}", bundled[name]
    return f"{fallback} (random weights)", model_files()[fallback]


def synthetic(side, seed=0, width=None):
    """Paths of a cached side x side (or side x width) 16-bit synthetic image, its ideal probability map and its
    truth (JSON).

    About 230 cells per megapixel (diameters 14-24 px, 30 % clustered, 20 % touching). Made in a child process,
    so that the caller's peak memory does not include the generator's.
    """
    width = side if width is None else width
    stem = CACHE / (f"synthetic_{side}_{seed}" if width == side else f"synthetic_{side}x{width}_{seed}")
    paths = {"image": stem.with_suffix(".tif"), "ideal": stem.with_suffix(".npy"), "truth": stem.with_suffix(".json")}
    if not paths["truth"].is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "benchmarks.common", str(side), str(seed), str(stem), str(width)],
                       check=True)
    return paths


def _make_synthetic(side, seed, stem, width):
    import numpy as np
    import tifffile

    from cellcount_core.images.synthetic import ideal_probability, synthetic_cells

    cells = synthetic_cells((side, width), n_cells=int(230 * side * width / 1e6), seed=seed)
    tifffile.imwrite(f"{stem}.tif", cells.image)
    np.save(f"{stem}.npy", ideal_probability(cells.labels))
    Path(f"{stem}.json").write_text(json.dumps({"count": cells.count, "diameter": cells.diameter}))


def peak_rss_mb():
    """This process's peak resident memory in MB: VmHWM, which unlike ``ru_maxrss`` does not include the RSS of
    the parent that started it (Linux carries ``ru_maxrss`` across exec)."""
    status = Path("/proc/self/status")
    if status.is_file():
        return next(int(line.split()[1]) for line in status.read_text().splitlines()
                    if line.startswith("VmHWM")) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def report(**values):
    """Print `values` with this process's peak resident memory (MB) as the last line of JSON (child side)."""
    values["peak_rss_mb"] = round(peak_rss_mb())
    print(json.dumps(values), flush=True)


def run_child(module, *args, code=None):
    """Run ``python -m module args`` and return the JSON dict its `report` printed.

    `code`: a folder whose ``cellcount_core`` the child imports instead of this checkout's (see `code_at`).
    """
    env, cwd = None, None
    if code is not None:  # ``-m`` puts the working folder first on sys.path; the benchmarks come from here
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        cwd = code
    done = subprocess.run([sys.executable, "-m", module, *map(str, args)], check=True, capture_output=True,
                          text=True, env=env, cwd=cwd)
    return json.loads(done.stdout.strip().splitlines()[-1])


def code_at(revision):
    """A folder holding ``cellcount_core`` as it was at a git revision of this repository (cached)."""
    root = Path(__file__).resolve().parent.parent
    commit = subprocess.run(["git", "rev-parse", "--short", revision], cwd=root, check=True, capture_output=True,
                            text=True).stdout.strip()
    folder = CACHE / f"code-{commit}"
    if not (folder / "cellcount_core").is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", commit, "cellcount_core"], cwd=root, check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def save(name, payload):
    """Write a result as ``results/<name>.json``; return its path."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=1))
    return path


def finish(name, info, rows, **extra):
    """Record the load at the end, save ``{"machine": info, **extra, "rows": rows}`` and print the table.

    Each ``extra`` item is also printed under the machine line (e.g. ``Segmenter: ...``).
    """
    info["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    save(name, {"machine": info, **extra, "rows": rows})
    notes = "".join(f"{key.replace('_', ' ').capitalize()}: {value}\n" for key, value in extra.items()
                    if isinstance(value, str))
    print(f"\n{describe(info)}; load at the end {info['load_average_end']}\n{notes}")
    print(table(rows, list(rows[0])))


def table(rows, columns):
    """Markdown table of dict rows, in the given column order."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    _make_synthetic(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
