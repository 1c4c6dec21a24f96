"""How torch's CPU threads wait between operations: passively, so that a busy machine does not slow them down.

torch runs a network's operations on all cores with OpenMP (libgomp). By default an OpenMP thread that has
finished its share spins, waiting for the others; where the cores are shared (CellProfiler's one worker per
core, other jobs, a cluster node) the thread it waits for is often not running, and every one of a network's
hundreds of operations then costs a scheduler time slice. Measured with the bundled segmenter on 2 cores at a
load of 8 (`benchmarks/thread_waiting.py`, BENCHMARKS.md section 2): spinning, two threads took 15 times as long
as one on a 128 x 128 image and 1.5 times at 1024 x 1024; waiting passively, 1.1 and 1.3 times. In
CellProfiler the deep/classical time ratio fell from 5.4 to 2.2 (696 x 520) and from 3.2 to 1.9 (1k).

libgomp reads ``OMP_WAIT_POLICY`` once, when torch loads it, so :func:`prefer_passive_waiting` must run before the
first ``import torch``; ``cellcount_core.running`` calls it on import, before any of its modules imports torch.
A value the user set is kept.
"""

import os

#: The variable libgomp reads, and the value used unless the user set one.
WAIT_POLICY_VARIABLE = "OMP_WAIT_POLICY"
PASSIVE = "PASSIVE"


def prefer_passive_waiting(environ=os.environ):
    """Ask OpenMP threads to sleep rather than spin while they wait, unless ``OMP_WAIT_POLICY`` is already set.

    Returns the policy in effect for an OpenMP runtime loaded from now on.
    """
    return environ.setdefault(WAIT_POLICY_VARIABLE, PASSIVE)
