"""The CPU form of a network: batch norms folded into the convolutions, and bf16 where the CPU computes it natively.

Measured on the bundled networks (2-core AMD EPYC with avx512_bf16, 1024 x 1024 and 704 x 528 inputs, BENCHMARKS.md
section 8): folding the eval-mode BatchNorm layers into the convolutions before them takes 0.8 of the time and
changes the outputs by about 1e-6 (float rounding); running the convolutions in bf16 (oneDNN's avx512_bf16
kernels, through ``torch.autocast``) takes 0.4 to 0.5 of the float32 time in all. The first and the last layer
with weights stay float32: the first sees the normalized image (bf16 keeps 8 bits of it), and the last rounds
the output, whose rounded bias made the density counter's counts 2.2 % too high. So kept, on 45 validation
images (24 BBBC005, 20 DSB2018, the StarDist example) the probabilities moved by at most 0.031, the segmented
objects of 5 images by 1 or 2 (6 of 2241 objects, net -4; the mean absolute error against the true counts stayed
3.40) and the counter's counts by at most 0.24 % (mean -0.06 %); tilings and thread counts still agree as in
float32 (tests/test_determinism.py).

CPUs without native bf16 (no avx512_bf16 or AMX), where bf16 would be emulated, get the folded float32 network;
so does everyone with ``CELLCOUNT_CPU_PRECISION=float32`` (read when a model is loaded).
"""

import os

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

#: The variable that forces float32 ("float32"); anything else, or none, means bf16 where the CPU has it.
PRECISION_VARIABLE = "CELLCOUNT_CPU_PRECISION"
_WEIGHTED = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


def native_bf16():
    """Whether this CPU has bf16 instructions (avx512_bf16 or AMX) and the user has not asked for float32."""
    if os.environ.get(PRECISION_VARIABLE, "").strip().lower() == "float32":
        return False
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return torch.backends.mkldnn.is_available() and any(probe() for probe in probes if probe is not None)


def fold_batch_norms(network):
    """Fold every eval-mode BatchNorm2d that follows a Conv2d in an ``nn.Sequential`` into it (in place)."""
    for sequence in [m for m in network.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(sequence) - 1):
            if isinstance(sequence[i], nn.Conv2d) and isinstance(sequence[i + 1], nn.BatchNorm2d):
                sequence[i] = fuse_conv_bn_eval(sequence[i], sequence[i + 1])
                sequence[i + 1] = nn.Identity()
    return network


class Float32(nn.Module):
    """Run a layer in float32 inside a bf16 autocast region."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        with torch.autocast("cpu", enabled=False):
            return self.layer(x.float())


class Bfloat16Network(nn.Module):
    """A network run under CPU bf16 autocast; its output is float32."""

    def __init__(self, network):
        super().__init__()
        self.network = network
        self.size_divisor = network.size_divisor

    def forward(self, x):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.network(x).float()


def cpu_model(network):
    """The fast CPU form of an eval-mode network (modified in place): folded batch norms, channels-last, and on
    CPUs with native bf16 a `Bfloat16Network` whose first and last layers with weights (in the order the
    network registers them, which is the order they run in for every network of ``models.networks``) stay
    float32."""
    network = fold_batch_norms(network).to(memory_format=torch.channels_last)
    if not native_bf16():
        return network
    weighted = [name for name, module in network.named_modules() if isinstance(module, _WEIGHTED)]
    for name in {weighted[0], weighted[-1]}:
        parent, _, child = name.rpartition(".")
        owner = network.get_submodule(parent)
        setattr(owner, child, Float32(getattr(owner, child)))
    return Bfloat16Network(network).eval()
