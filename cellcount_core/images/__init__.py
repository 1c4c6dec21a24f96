"""Step 1, images: reading files, checking arrays, normalizing intensities; synthetic images with known answers."""
