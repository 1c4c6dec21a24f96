"""CPU speed of each network in the contiguous (NCHW) and the channels-last (NHWC) layout, measured in turns.

    python -m benchmarks.memory_layout [--repeats 2]

Inference uses channels-last on every device (`inference.get_model`); this is the measurement behind that
choice. Batches of 4 tiles of 512 x 512, float32, after one warm-up batch per layout.
"""

import argparse
import time

from benchmarks.common import finish, machine, model_files

BATCH, TILE = 4, 512


def seconds_per_megapixel(network, batch, repeats):
    import torch

    with torch.inference_mode():
        network(batch)
        start = time.perf_counter()
        for _ in range(repeats):
            network(batch)
    return (time.perf_counter() - start) / repeats / (BATCH * TILE * TILE / 1e6)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    import torch

    from cellcount_core.models.model_files import load_model, read_card

    info = machine()
    batch = torch.rand(BATCH, 1, TILE, TILE)
    rows = []
    for name, path in model_files().items():
        if read_card(path).input_size:
            continue
        network, _ = load_model(path, "cpu")
        contiguous = seconds_per_megapixel(network, batch, args.repeats)
        network = network.to(memory_format=torch.channels_last)
        last = seconds_per_megapixel(network, batch.contiguous(memory_format=torch.channels_last), args.repeats)
        rows.append({"network": name, "NCHW s/MP": round(contiguous, 2), "channels-last s/MP": round(last, 2),
                     "speed-up": round(contiguous / last, 2)})
        print(rows[-1], flush=True)
    finish("memory_layout", info, rows)


if __name__ == "__main__":
    main()
