"""Training of the keypoint detectors (data preparation, dataset, training command)."""
