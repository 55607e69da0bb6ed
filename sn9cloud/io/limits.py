"""Limits on the work an input may cause, checked before any work: the size a raster
declares (a 2 MB sparse GeoTIFF can declare 200,000 x 200,000 px) and the scratch space
an offset map needs (its raw and COG copies: 8 bytes per optical pixel each, more with
overviews)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from sn9cloud.errors import InputError, OutputError

DEFAULT_MAX_PIXELS = 2_000_000_000  # a 0.3 m scene 13 km on a side
DEFAULT_MAX_SCRATCH_GB = 64.0
#: scratch bytes per optical pixel: the raw 2-band float32 map and its COG (with overviews,
#: compression not counted on)
SCRATCH_BYTES_PER_PIXEL = 8 * 2.4


@dataclass(frozen=True)
class Limits:
    max_pixels: int = DEFAULT_MAX_PIXELS  # SN9CLOUD_MAX_PIXELS
    max_scratch_gb: float = DEFAULT_MAX_SCRATCH_GB  # SN9CLOUD_MAX_SCRATCH_GB

    def check_raster(self, role: str, path: str, width: int, height: int) -> None:
        if width <= 0 or height <= 0:
            raise InputError(f"{role} {path}: declares no pixels ({width} x {height})")
        if width * height > self.max_pixels:
            raise InputError(f"{role} {path}: declares {width} x {height} px, more than the "
                             f"limit of {self.max_pixels:,} (SN9CLOUD_MAX_PIXELS)")

    def check_scratch(self, folder: str, width: int, height: int) -> None:
        """Room for an offset map of ``width`` x ``height`` px in ``folder``, before any
        work: within the limit and within the free space there."""
        need = width * height * SCRATCH_BYTES_PER_PIXEL
        gb = need / 1e9
        if gb > self.max_scratch_gb:
            raise InputError(f"offset map of {width} x {height} px needs about {gb:.1f} GB "
                             f"of scratch space, more than the limit of "
                             f"{self.max_scratch_gb:g} GB (SN9CLOUD_MAX_SCRATCH_GB)")
        probe = folder
        while not os.path.isdir(probe):
            parent = os.path.dirname(probe)
            if parent == probe:
                return
            probe = parent
        free = shutil.disk_usage(probe).free
        if need > free:
            raise OutputError(f"scratch folder {probe}: {free / 1e9:.1f} GB free, an offset map "
                              f"of {width} x {height} px needs about {gb:.1f} GB")
