"""Reading rasters into the engine's `GeoImage`, local or s3://, decimated on read.

A scene far larger than the working grid is read through its overviews (``out_shape``),
so reading costs what the engine needs, not the scene's full size.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import RasterioIOError
from rasterio.io import DatasetReader

from sn9cloud.engine.types import GeoImage, Grid
from sn9cloud.errors import InputError
from sn9cloud.io.limits import Limits
from sn9cloud.io.net import resolve_redirects
from sn9cloud.io.policy import ReadPolicy, is_url, strip_credentials
from sn9cloud.io.s3 import gdal_env

#: the only format read: GeoTIFF (COG or not); a VRT or any other format under a .tif name
#: (which could point GDAL anywhere) is not opened
DRIVERS = ("GTiff",)


def check_exists(path: str, role: str) -> None:
    if is_url(str(path)):
        return
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"{role} {path}: no such file") from None
    except OSError as e:
        raise InputError(f"{role} {path}: cannot be read ({e.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{role} {path}: not a regular file")


@contextmanager
def open_raster(path: str, role: str, policy: ReadPolicy | None = None,
                limits: Limits | None = None) -> Iterator[DatasetReader]:
    """Open a local, s3:// or http(s) GeoTIFF with the GDAL settings; a missing or
    unreadable file becomes an `InputError` naming the input. Under a ``policy`` an
    http(s) href is opened where its redirects lead only if each hop is allowed; with
    ``limits`` a raster declaring more pixels than allowed is refused before any read."""
    if any(ord(c) < 32 for c in str(path)) or str(path).lower().startswith(("/vsi", "<")):
        raise InputError(f"{role} {str(path)[:200]!r}: not a file path or URL")
    check_exists(path, role)
    target = path
    if str(path).startswith(("http://", "https://")):
        target = resolve_redirects(path, policy)
    with rasterio.Env(**gdal_env()):
        try:
            ds = rasterio.open(target, driver=DRIVERS[0])
        except RasterioIOError as e:
            raise InputError(f"{role} {strip_credentials(path)}: not a readable GeoTIFF "
                             f"({_short(e)})") from e
        with ds:
            if limits is not None:
                limits.check_raster(role, strip_credentials(path), ds.width, ds.height)
            yield ds


def open_grid(path: str, role: str, policy: ReadPolicy | None = None,
              limits: Limits | None = None) -> Grid:
    """The grid (size, transform, CRS) of a raster without reading its pixels."""
    with open_raster(path, role, policy, limits) as ds:
        return Grid(ds.width, ds.height, ds.transform, ds.crs)


def read_image(path: str, role: str, max_size: int | None = None,
               policy: ReadPolicy | None = None,
               limits: Limits | None = None) -> tuple[GeoImage, Grid]:
    """Read a raster, decimated so that its longer side is at most ``max_size`` px; also
    its full-resolution grid, so that nobody opens the file twice."""
    with open_raster(path, role, policy, limits) as ds:
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
            raise InputError(f"{role} {strip_credentials(path)}: pixels not readable "
                             f"({_short(e)})") from e
        full = Grid(ds.width, ds.height, ds.transform, ds.crs)
    mask = np.ma.getmaskarray(arr).any(axis=0)
    if arr.dtype.kind == "f":
        mask |= ~np.isfinite(arr.data).all(axis=0)  # NaN and inf are no data, not pixels
        data = np.where(mask, 0, np.asarray(arr.data, dtype=np.float32)).astype(np.float32)
    else:
        data = arr.data
    valid = np.asarray(~mask)
    if not valid.any():
        raise InputError(f"{role} {strip_credentials(path)}: no valid pixels (all no-data, "
                         "NaN or infinite)")
    return GeoImage(array=data, transform=transform, crs=full.crs, valid=valid), full


def _short(e: Exception) -> str:
    return str(e).splitlines()[0][:200]
