"""CPU seconds per megapixel of each bundled network, plain float32 against the form inference runs on the CPU
(`running/cpu_model`: batch norms folded, bf16 where the CPU has it natively), measured in turns.

    python -m benchmarks.cpu_model_speed [--rounds 7] [--sizes 704x528 1024 2048 512x4]

Each size is one network call through the tile function of `predict_probability` (normalization, channels-last,
activation): WIDTHxHEIGHT or SIDE is one image-sized tile, as the automatic CPU tiling runs images up to 2048
pixels; SIDExN is a batch of N tiles (`network_speed`'s 512 x 4). The two forms alternate call by call, the order
reversed every round, after one untimed call each; times are medians. "max |difference|" is between the two forms'
outputs on the random input.
"""

import argparse
import statistics
import time

import numpy as np

from benchmarks.common import finish, machine


def parse_size(size):
    """(batch, height, width) of "WxH", "SIDE" or "SIDExN" (N tiles of SIDE, N < 16)."""
    if "x" not in size:
        return 1, int(size), int(size)
    first, second = (int(n) for n in size.split("x"))
    return (second, first, first) if second < 16 else (1, second, first)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--sizes", nargs="+", default=["704x528", "1024", "2048", "512x4"])
    args = parser.parse_args(argv)
    from cellcount_core.images.normalization import scale_to_range
    from cellcount_core.models.bundled import resolve_model
    from cellcount_core.models.model_files import load_model
    from cellcount_core.running.cpu_model import cpu_model, native_bf16  # first: OpenMP threads wait passively
    from cellcount_core.running.inference import _tile_function
    import torch

    info = machine()
    rows = []
    for name in ("nuclei-segmenter", "nuclei-counter"):
        network, card = load_model(resolve_model(name), "cpu")
        activation = torch.sigmoid if card.kind == "segmenter" else None
        forms = {"float32": network.to(memory_format=torch.channels_last)}
        forms["cpu form"] = cpu_model(load_model(resolve_model(name), "cpu")[0])
        runs = {form: _tile_function(model, activation, lambda batch: scale_to_range(batch, 0.0, 1.0))
                for form, model in forms.items()}
        for size in args.sizes:
            shape = parse_size(size)
            batch = np.random.default_rng(0).random((shape[0], 1, *shape[1:]), dtype=np.float32)
            outputs = {form: np.asarray(run(batch.copy())) for form, run in runs.items()}  # warm-up
            times = {form: [] for form in runs}
            for number in range(args.rounds):
                for form in list(runs)[:: 1 if number % 2 == 0 else -1]:
                    start = time.perf_counter()
                    np.asarray(runs[form](batch.copy()))
                    times[form].append(time.perf_counter() - start)
            megapixels = batch.size / 1e6
            plain, fast = (statistics.median(times[form]) / megapixels for form in runs)
            rows.append({"network": name, "input": f"{shape[0]} x {shape[1]} x {shape[2]}",
                         "float32 s/MP": round(plain, 3), "cpu form s/MP": round(fast, 3),
                         "cpu form / float32": round(fast / plain, 2),
                         "max |difference|": float(f"{np.abs(outputs['cpu form'] - outputs['float32']).max():.2g}")})
            print(rows[-1], flush=True)
    finish("cpu_model_speed", info, rows, native_bf16=native_bf16())


if __name__ == "__main__":
    main()
