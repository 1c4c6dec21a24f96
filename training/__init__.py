"""Training of the cellcount models: data readers, augmentation, weight maps, losses, the training loop, the
segmenter and counter trainers, threshold tuning and evaluation. Run it as ``cellcount-train`` or
``python -m training``; see docs/TRAINING.md.
"""
