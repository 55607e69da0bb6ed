"""Learned models: the SpaceNet 9 baseline's keypoint heatmap detectors (U-Net)."""

from pathlib import Path

#: the detectors that come with the package (installed with it, wheel included); this
#: module imports no torch, so that finding them costs nothing
SHIPPED = Path(__file__).resolve().parent / "shipped"
