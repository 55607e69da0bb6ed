"""A PNG of the offset magnitude, read from the COG's overviews (never the full map)."""

from __future__ import annotations

import cv2
import numpy as np
import rasterio
from rasterio.enums import Resampling


def offset_magnitude_png(cog_path: str, png_path: str, max_size: int = 256) -> float:
    """Write the thumbnail; return the magnitude (px) that maps to the top colour."""
    with rasterio.open(cog_path) as ds:
        f = max(ds.width, ds.height) / max_size
        h, w = max(1, round(ds.height / f)), max(1, round(ds.width / f))
        a = ds.read(out_shape=(2, h, w), resampling=Resampling.average)
    mag = np.hypot(a[0], a[1])
    top = float(np.percentile(mag, 99)) or 1.0
    u8 = np.clip(mag / top * 255.0, 0, 255).astype(np.uint8)
    if not cv2.imwrite(png_path, cv2.applyColorMap(u8, cv2.COLORMAP_VIRIDIS)):
        raise OSError(f"cannot write {png_path}")
    return top
