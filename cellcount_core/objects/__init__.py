"""Step 3, from probabilities to objects: thresholds, hole filling, splitting, large images in blocks."""
