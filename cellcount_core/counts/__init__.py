"""Step 4, counts: counting files into a table, and count and detection errors against ground truth."""
