"""Network speed: CPU seconds per megapixel of each network, the work per megapixel (FLOPs, activation bytes),
the GPU floor those imply, and measured GPU megapixels per second where CUDA is present.

    python -m benchmarks.network_speed [--repeats 2] [--gpu-image 4096]

CPU: batches of 4 tiles of 512 x 512 through the same tile function as `predict_probability` (normalization,
channels-last, float32). "s/MP image" adds the tiling overhead of a large image (512-px tiles overlapping by
64 px process about 1.39 pixels per pixel of a 10k image). GPU floor: the larger of FLOPs / peak bf16 tensor
throughput and activation bytes (bf16, each written once and read once) / memory bandwidth, per image
megapixel. "GPU memory bound": float32 weights plus every activation of a batch in bf16 as if none were freed
(an upper bound on what a batch of 4 tiles needs on a GPU).
"""

import argparse
import time

import numpy as np

from benchmarks.common import COUNTERS, finish, machine, model_files

TILE, OVERLAP, BATCH = 512, 64, 4
#: Peak dense bf16 tensor throughput (FLOP/s) and memory bandwidth (B/s) from the vendors' data sheets.
GPU_SPECS = {
    "H100 SXM": (989e12, 3.35e12),
    "H100 PCIe": (756e12, 2.0e12),
    "H200": (989e12, 4.8e12),
}
REFERENCE_GPU = "H100 SXM"


def gpu_spec(name):
    """(name, (FLOP/s, B/s)) of the data-sheet entry for a CUDA device name; the reference GPU when unknown."""
    name = name or ""
    key = "H200" if "H200" in name else "H100 PCIe" if "H100" in name and "PCIe" in name else REFERENCE_GPU
    return key, GPU_SPECS[key]


def tiling_overhead(side=10_000, multiple=8):
    """Pixels processed per image pixel for a large image cut into TILE tiles overlapping by OVERLAP."""
    from cellcount_core.running.tiling import plan_tiles

    plan = plan_tiles((side, side), TILE, OVERLAP, multiple)
    return len(plan.tiles) * plan.tile_shape[0] * plan.tile_shape[1] / side**2


def conv_flops(module, inputs, output):
    """Multiply-add FLOPs (2 per multiply-add) of one convolution: 2 k_h k_w C_in C_out / groups per output pixel
    (per input pixel for a transposed convolution)."""
    from torch import nn

    per_pixel = 2 * module.kernel_size[0] * module.kernel_size[1] * module.in_channels * module.out_channels
    per_pixel //= module.groups
    pixels = inputs[0].shape[-2:] if isinstance(module, nn.ConvTranspose2d) else output.shape[-2:]
    return per_pixel * pixels[0] * pixels[1]


def work_per_megapixel(network):
    """Work of one megapixel of tile input: (GFLOP, {"1/s": GFLOP at 1/s of the input resolution}, bf16 MB).

    FLOPs are summed from `conv_flops` over every convolution and checked against torch's own FLOP counter;
    megabytes are the bf16 outputs of every leaf module, each written once and read once.
    """
    import torch
    from torch import nn
    from torch.utils.flop_counter import FlopCounterMode

    by_scale, output_elements = {}, []

    def record(module, inputs, output):
        output_elements.append(output.numel())
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            scale = f"1/{TILE // output.shape[-1]}"
            by_scale[scale] = by_scale.get(scale, 0) + conv_flops(module, inputs, output)

    hooks = [m.register_forward_hook(record) for m in network.modules() if not list(m.children())]
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        network(torch.zeros(1, 1, TILE, TILE))
    for hook in hooks:
        hook.remove()
    total = sum(by_scale.values())
    if total != counter.get_total_flops():
        raise RuntimeError(f"FLOP formula {total} disagrees with torch's counter {counter.get_total_flops()}")
    per_mp = 1e6 / (TILE * TILE)
    return (total * per_mp / 1e9, {k: round(v * per_mp / 1e9, 1) for k, v in by_scale.items()},
            2 * 2 * sum(output_elements) * per_mp / 1e6)


def cpu_seconds_per_megapixel(path, repeats):
    """Seconds per processed megapixel of a model file's network on the CPU."""
    import torch

    from cellcount_core.running.inference import _tile_function, get_model
    from cellcount_core.images.normalization import scale_to_range

    network, card = get_model(path, "CPU", default=str(path))
    activation = torch.sigmoid if card.kind == "segmenter" else None
    run = _tile_function(network, activation, lambda batch: scale_to_range(batch, 0.0, 1.0))
    batch = np.random.default_rng(0).random((BATCH, 1, TILE, TILE), dtype=np.float32)
    np.asarray(run(batch.copy()))  # warm up
    start = time.perf_counter()
    for _ in range(repeats):
        np.asarray(run(batch.copy()))
    return (time.perf_counter() - start) / repeats / (BATCH * TILE * TILE / 1e6)


def gpu_measurement(path, side):
    """(image MP/s, peak GPU memory GB) of predict_probability on a side x side image, or None without CUDA."""
    import torch

    from cellcount_core.running.inference import predict_count, predict_probability
    from cellcount_core.models.model_files import read_card

    if not torch.cuda.is_available():
        return None
    image = np.random.default_rng(0).integers(0, 65535, (side, side), dtype=np.uint16)
    predict = predict_count if read_card(path).kind == "counter" else predict_probability
    predict(image[:1024, :1024], path, "GPU", batch_size=16)  # warm up
    torch.cuda.reset_peak_memory_stats()
    torch.cuda.synchronize()
    start = time.perf_counter()
    predict(image, path, "GPU", batch_size=16)
    torch.cuda.synchronize()
    return side * side / 1e6 / (time.perf_counter() - start), torch.cuda.max_memory_allocated() / 2**30


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="timed batches per network (after one warm-up)")
    parser.add_argument("--gpu-image", type=int, default=4096, help="side of the image timed on a GPU")
    args = parser.parse_args(argv)
    from cellcount_core.running.inference import get_model
    from cellcount_core.models.model_files import read_card

    info = machine()
    spec_name, spec = gpu_spec(info["gpu"])
    rows = []
    for name, path in model_files().items():
        card = read_card(path)
        network, _ = get_model(path, "CPU", default=str(path))
        if card.input_size:  # a fixed-size regressor runs once per image, not per tile
            continue
        overhead = tiling_overhead(multiple=network.size_divisor)
        gflop, by_scale, act_mb = work_per_megapixel(network)
        cpu = cpu_seconds_per_megapixel(path, args.repeats)
        floor = max(gflop * 1e9 / spec[0], act_mb * 1e6 / spec[1]) * overhead
        measured = gpu_measurement(path, args.gpu_image)
        rows.append({
            "network": name,
            "architecture": card.architecture,
            "params (M)": round(sum(p.numel() for p in network.parameters()) / 1e6, 2),
            "GFLOP/MP": round(gflop, 1),
            "GFLOP/MP by output scale": " + ".join(f"{v} ({k})" for k, v in by_scale.items()),
            "act. MB/MP (bf16)": round(act_mb),
            "CPU s/MP tiles": round(cpu, 2),
            "CPU s/MP image": round(cpu * overhead, 2),
            "tiling overhead": round(overhead, 3),
            "GPU memory bound GB": round((4 * sum(p.numel() for p in network.parameters())
                                          + act_mb / 2 * 1e6 * BATCH * TILE * TILE / 1e6) / 2**30, 2),
            f"GPU floor MP/s ({spec_name})": round(1 / floor),
            "GPU MP/s measured": round(measured[0], 1) if measured else "not measured (no GPU)",
            "GPU peak GB": round(measured[1], 2) if measured else "not measured (no GPU)",
            "kind": "counter" if name in COUNTERS or card.kind == "counter" else "segmenter",
        })
        print(rows[-1], flush=True)
    finish("network_speed", info, rows, gpu_spec={spec_name: spec})


if __name__ == "__main__":
    main()
