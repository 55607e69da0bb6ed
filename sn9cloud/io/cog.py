"""Writing the offset map as a COG, window by window, atomically.

The map is written to a tiled temporary GeoTIFF next to the destination, converted with
rio-cogeo, then renamed into place (or uploaded with boto3): a reader never sees half a
file, and a failure leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from typing import Literal

import numpy as np
import rasterio
from rasterio.windows import Window
from rio_cogeo.cogeo import cog_translate
from rio_cogeo.profiles import cog_profiles

from sn9cloud.engine.executor import SERIAL, Executor
from sn9cloud.engine.offsets import windows
from sn9cloud.engine.types import Array, Grid
from sn9cloud.errors import OutputError
from sn9cloud.io.s3 import client, is_s3, split_s3

BLOCK = 512
LOOKAHEAD = 4  # windows computed ahead of the writer
GDAL_CACHE_MB = 256


def check_writable(path: str, role: str = "output", inputs: tuple[str, ...] = (),
                   ours: Callable[[str], bool] | None = None) -> None:
    """Fail before any work if the output cannot or must not be written: an existing
    path is replaced only if it is a regular file (never a device, folder, link or pipe),
    none of the ``inputs``, and, where ``ours`` says so, one sn9cloud wrote."""
    if is_s3(path):
        bucket, key = split_s3(path)
        if not bucket or not key or key.endswith("/"):
            raise OutputError(f"{role} {path}: not an s3://bucket/key path")
        if path in inputs:
            raise OutputError(f"{role} {path}: is an input; write the result elsewhere")
        return
    if "://" in path or path.lower().startswith("/vsi"):
        raise OutputError(f"{role} {path}: not a local path or s3:// URL")
    d = os.path.dirname(os.path.abspath(path)) or "."
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise OutputError(f"{role} {path}: is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise OutputError(f"{role} {path}: exists and is not a regular file (a device, "
                              "link, pipe or socket); choose another path")
        for i in inputs:
            if "://" not in i and os.path.exists(i) and os.path.samefile(path, i):
                raise OutputError(f"{role} {path}: is the input {i}; write the result "
                                  "elsewhere")
        if ours is not None and not ours(path):
            raise OutputError(f"{role} {path}: exists and was not written by sn9cloud; "
                              "remove it or choose another path")
    if not os.path.isdir(d):
        raise OutputError(f"{role} {path}: directory {d} does not exist")
    if not os.access(d, os.W_OK):
        raise OutputError(f"{role} {path}: directory {d} is not writable")


def is_offset_cog(path: str) -> bool:
    """Whether ``path`` is an offset map sn9cloud wrote (its tags say so)."""
    try:
        with rasterio.open(path, driver="GTiff") as ds:
            return "sn9cloud_version" in ds.tags()
    except Exception:
        return False


def build_offsets_cog(
    workdir: str,
    grid: Grid,
    window_fn: Callable[[tuple[int, int, int, int]], Array],
    tags: dict[str, str] | None = None,
    executor: Executor | None = None,
    threads: int | None = None,
) -> str:
    """Build a 2-band float32 COG (dx, dy) on ``grid`` in ``workdir``; return its path.

    ``window_fn`` gives the (2, h, w) offsets of one window: memory stays one window;
    ``executor`` computes them, GDAL compresses with ``threads`` (the executor's by default).
    """
    ex = executor or SERIAL
    gdal_threads = str(threads or ex.threads)
    raw = os.path.join(workdir, "raw.tif")
    cog = os.path.join(workdir, "offsets.tif")
    # the intermediate is uncompressed: compression happens once, in the COG pass, on
    # every core; a small GDAL cache keeps memory flat whatever the scene size
    profile = {
        "driver": "GTiff", "width": grid.width, "height": grid.height, "count": 2,
        "dtype": "float32", "crs": grid.crs, "transform": grid.transform,
        "tiled": True, "blockxsize": BLOCK, "blockysize": BLOCK, "BIGTIFF": "IF_SAFER",
    }
    wins = [(w,) for w in windows(grid, BLOCK)]
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB), rasterio.open(raw, "w", **profile) as dst:
        # the executor computes the next windows while GDAL writes this one
        blocks = ex.imap(window_fn, wins, lookahead=LOOKAHEAD)
        for ((r, c, h, w),), block in zip(wins, blocks, strict=True):
            if not np.all(np.isfinite(block)):
                raise OutputError(f"non-finite offsets in window {r},{c}")
            dst.write(block.astype(np.float32), window=Window(c, r, w, h))
        dst.set_band_description(1, "dx")
        dst.set_band_description(2, "dy")
        dst.update_tags(**(tags or {}))
        dst.update_tags(1, units="pixel", role="dx")
        dst.update_tags(2, units="pixel", role="dy")
    out_profile = cog_profiles.get("deflate")
    out_profile.update({"predictor": 3, "blockxsize": BLOCK, "blockysize": BLOCK,
                        "BIGTIFF": "IF_SAFER"})
    cog_translate(raw, cog, out_profile, in_memory=False, quiet=True,
                  overview_resampling="average", use_cog_driver=False,
                  config={"GDAL_NUM_THREADS": gdal_threads, "GDAL_CACHEMAX": GDAL_CACHE_MB})
    os.unlink(raw)
    return cog


def write_image_cog(
    path: str | os.PathLike[str],
    array: Array,
    transform: object,
    crs: object,
    nodata: float | None = None,
    block: int = 512,
    overview_resampling: Literal["nearest", "average"] = "nearest",
    threads: int = 1,
) -> None:
    """A (bands, H, W) or (H, W) array as a deflate COG at a local ``path``: for sample
    catalogs, benchmark scenes and fixtures (offset maps go through `build_offsets_cog`)."""
    bands = array if array.ndim == 3 else array[None]
    raw = f"{path}.raw.tif"
    try:
        with rasterio.open(raw, "w", driver="GTiff", width=bands.shape[2],
                           height=bands.shape[1], count=bands.shape[0], dtype=bands.dtype,
                           crs=crs, transform=transform, nodata=nodata, tiled=True,
                           blockxsize=block, blockysize=block, BIGTIFF="IF_SAFER") as ds:
            ds.write(bands)
        profile = cog_profiles.get("deflate")
        profile.update({"blockxsize": block, "blockysize": block, "BIGTIFF": "IF_SAFER"})
        cog_translate(raw, str(path), profile, quiet=True,
                      overview_resampling=overview_resampling,
                      config={"GDAL_NUM_THREADS": str(threads)})
    finally:
        if os.path.exists(raw):
            os.unlink(raw)


def write_offsets_cog(
    path: str,
    grid: Grid,
    window_fn: Callable[[tuple[int, int, int, int]], Array],
    tags: dict[str, str] | None = None,
    threads: int = 1,
    inputs: tuple[str, ...] = (),
) -> None:
    """Write the offset COG to ``path`` (local or s3://) atomically: built in a scratch
    folder beside it, renamed in only when complete, the folder removed on every exit."""
    check_writable(path, inputs=inputs, ours=is_offset_cog)
    tmpdir = tempfile.mkdtemp(
        prefix=".sn9cloud-", dir=None if is_s3(path) else os.path.dirname(os.path.abspath(path))
    )
    try:
        cog = build_offsets_cog(tmpdir, grid, window_fn, tags, threads=threads)
        if is_s3(path):
            bucket, key = split_s3(path)
            client().upload_file(cog, bucket, key)
        else:
            os.replace(cog, path)
    except OutputError as e:
        raise OutputError(f"output {path}: {e}") from e
    except Exception as e:  # any GDAL/boto failure becomes one clear line
        raise OutputError(f"output {path}: could not be written ({str(e).splitlines()[0]})") from e
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
