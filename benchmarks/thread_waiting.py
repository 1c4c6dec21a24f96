"""The bundled segmenter with 1 and 2 torch threads, with OpenMP threads spinning or sleeping while they wait.

    python -m benchmarks.thread_waiting [--sides 128 256 512 1024 2048] [--repeats 3]

Each wait policy runs in its own child process (libgomp reads ``OMP_WAIT_POLICY`` when torch loads it):
"default" is libgomp's own (spin a while, then sleep; the child loads torch before ``cellcount_core.running`` can
ask for another), "PASSIVE" what ``cellcount_core.running`` asks for. In each child, `predict_probability` (one
tile) runs on the top-left side x side corner of a cached 2048 x 2048 synthetic image with 1 and 2 threads in
turn; times are medians of the repeats. The two children run one after the other, so compare the thread ratios
within a child more than the children's absolute times.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from benchmarks.common import finish, machine, synthetic


def child(sides, repeats):
    """Print {"side threads": median seconds} as JSON for this process's wait policy."""
    import torch  # first: libgomp reads the wait policy of the environment this process started with

    import tifffile

    from cellcount_core.running.inference import predict_probability

    image = tifffile.imread(synthetic(2048)["image"])
    predict_probability(image[:128, :128])  # loads the model
    times = {}
    for _ in range(repeats):
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for side in sides:
                start = time.perf_counter()
                predict_probability(image[:side, :side])
                times.setdefault(f"{side} {threads}", []).append(time.perf_counter() - start)
    print(json.dumps({key: statistics.median(values) for key, values in times.items()}))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sides", type=int, nargs="+", default=[128, 256, 512, 1024, 2048])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.sides, args.repeats)
    info = machine()
    synthetic(2048)
    rows = []
    for policy in ("default", "PASSIVE"):
        env = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
        if policy != "default":
            env["OMP_WAIT_POLICY"] = policy
        done = subprocess.run([sys.executable, "-m", "benchmarks.thread_waiting", "--child", "--repeats",
                               str(args.repeats), "--sides", *map(str, args.sides)],
                              env=env, capture_output=True, text=True, check=True)
        times = json.loads(done.stdout.strip().splitlines()[-1])
        for side in args.sides:
            one, two = times[f"{side} 1"], times[f"{side} 2"]
            rows.append({"OMP_WAIT_POLICY": policy, "image": f"{side} x {side}", "1 thread s": round(one, 3),
                         "2 threads s": round(two, 3), "2 threads / 1 thread": round(two / one, 2),
                         "load (1 min) after": round(os.getloadavg()[0], 1)})
    finish("thread_waiting", info, rows)


if __name__ == "__main__":
    main()
