"""Reading rasters into the engine's `GeoImage`, local or s3://, decimated on read.

A scene far larger than the working grid is read through its overviews (``out_shape``),
so reading costs what the engine needs, not the scene's full size.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import RasterioIOError
from rasterio.io import DatasetReader

from sn9cloud.engine.types import GeoImage, Grid
from sn9cloud.errors import InputError
from sn9cloud.io.s3 import gdal_env


def check_exists(path: str, role: str) -> None:
    if "://" not in str(path) and not os.path.exists(path):
        raise InputError(f"{role} {path}: no such file")


@contextmanager
def open_raster(path: str, role: str) -> Iterator[DatasetReader]:
    """Open a local or s3:// raster with the GDAL settings; a missing or unreadable file
    becomes an `InputError` naming the input."""
    check_exists(path, role)
    with rasterio.Env(**gdal_env()):
        try:
            ds = rasterio.open(path)
        except RasterioIOError as e:
            raise InputError(f"{role} {path}: not a readable raster ({_short(e)})") from e
        with ds:
            yield ds


def open_grid(path: str, role: str) -> Grid:
    """The grid (size, transform, CRS) of a raster without reading its pixels."""
    with open_raster(path, role) as ds:
        return Grid(ds.width, ds.height, ds.transform, ds.crs)


def read_image(path: str, role: str, max_size: int | None = None) -> tuple[GeoImage, Grid]:
    """Read a raster, decimated so that its longer side is at most ``max_size`` px; also
    its full-resolution grid, so that nobody opens the file twice."""
    with open_raster(path, role) as ds:
        try:
            factor = 1.0
            if max_size and max(ds.width, ds.height) > max_size:
                factor = max(ds.width, ds.height) / max_size
            h = max(1, round(ds.height / factor))
            w = max(1, round(ds.width / factor))
            bands = list(range(1, min(ds.count, 3) + 1))
            arr = ds.read(bands, out_shape=(len(bands), h, w), resampling=Resampling.average,
                          masked=True)
            transform = ds.transform * ds.transform.scale(ds.width / w, ds.height / h)
        except RasterioIOError as e:
            raise InputError(f"{role} {path}: pixels not readable ({_short(e)})") from e
        full = Grid(ds.width, ds.height, ds.transform, ds.crs)
    mask = np.ma.getmaskarray(arr).any(axis=0)
    data = np.asarray(arr.filled(0), dtype=np.float32) if arr.dtype.kind == "f" else arr.data
    valid = np.asarray(~mask)
    return GeoImage(array=data, transform=transform, crs=full.crs, valid=valid), full


def _short(e: Exception) -> str:
    return str(e).splitlines()[0][:200]
