"""OpenMP threads wait passively unless the user chose otherwise (cellcount_core.running.threads)."""

import os
import subprocess
import sys

from cellcount_core.running.threads import prefer_passive_waiting


def test_passive_waiting_is_asked_for_unless_the_user_chose_a_policy():
    environ = {}
    assert prefer_passive_waiting(environ) == "PASSIVE" and environ == {"OMP_WAIT_POLICY": "PASSIVE"}
    chosen = {"OMP_WAIT_POLICY": "active"}
    assert prefer_passive_waiting(chosen) == "active" and chosen == {"OMP_WAIT_POLICY": "active"}


def test_importing_inference_asks_for_passive_waiting_for_the_torch_it_loads():
    code = ("import sys; import cellcount_core.running.inference, os; "
            "print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)")
    env = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    printed = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert printed.stdout.split() == ["PASSIVE", "True"]
    printed = subprocess.run([sys.executable, "-c", code], env={**env, "OMP_WAIT_POLICY": "ACTIVE"},
                             capture_output=True, text=True, check=True)
    assert printed.stdout.split() == ["ACTIVE", "True"]
