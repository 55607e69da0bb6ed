"""Learned models: the SpaceNet 9 baseline's keypoint heatmap detectors (U-Net)."""
