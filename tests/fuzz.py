"""The hypothesis budget of the property-based tests (test_determinism.py, test_hostile_*.py).

``make test`` runs each property with a few examples chosen the same way every run (derandomized), so the suite
is fast and never flaky. For a longer, random search set ``CELLCOUNT_FUZZ_EXAMPLES``, e.g.
``CELLCOUNT_FUZZ_EXAMPLES=200 .venv/bin/python -m pytest -q tests/test_determinism.py tests/test_hostile_arrays.py``;
a failing example is printed with the seed to reproduce it (docs/RELIABILITY.md).
"""

import os

from hypothesis import HealthCheck, settings

LONG_EXAMPLES = int(os.environ.get("CELLCOUNT_FUZZ_EXAMPLES", "0"))


def fuzz_settings(examples):
    """Settings for one property: ``examples`` in ``make test``, CELLCOUNT_FUZZ_EXAMPLES random ones when set."""
    return settings(max_examples=LONG_EXAMPLES or examples, deadline=None, derandomize=not LONG_EXAMPLES,
                    database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
                    print_blob=True)
