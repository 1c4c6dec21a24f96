"""Step 2, running networks: devices, tiles, the model cache and the cell scale; image -> probability map or count."""

from cellcount_core.running.threads import prefer_passive_waiting

prefer_passive_waiting()  # before any module of this package imports torch: see threads.py
