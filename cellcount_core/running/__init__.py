"""Step 2, running networks: devices, tiles, the model cache and the cell scale; image -> probability map or count."""
