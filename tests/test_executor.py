"""Executors stream every job once and in order, however many there are beyond the
look-ahead; the COG writer built on them covers every window."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS

from sn9cloud.engine.executor import LocalExecutor
from sn9cloud.engine.types import Grid
from sn9cloud.io.cog import build_offsets_cog


def _square(x: int) -> int:
    return x * x


def test_local_imap_yields_every_job_in_order() -> None:
    for n in (0, 1, 3, 4, 5, 17):
        assert list(LocalExecutor().imap(_square, [(i,) for i in range(n)], lookahead=4)) == [
            i * i for i in range(n)]


def test_cog_writer_covers_every_window(tmp_path: Path) -> None:
    grid = Grid(2600, 1100, Affine(0.3, 0, 435000, 0, -0.3, 4181000), CRS.from_epsg(32637))

    def ramp(w: tuple[int, int, int, int]) -> np.ndarray:
        r0, c0, h, wd = w
        yy, xx = np.mgrid[r0:r0 + h, c0:c0 + wd].astype(np.float32)
        return np.stack([xx, yy])

    cog = build_offsets_cog(str(tmp_path), grid, ramp)  # 6 x 3 windows of 512 px
    with rasterio.open(cog) as ds:
        a = ds.read()
    yy, xx = np.mgrid[0:1100, 0:2600].astype(np.float32)
    np.testing.assert_array_equal(a[0], xx)
    np.testing.assert_array_equal(a[1], yy)


class _Elsewhere:
    """An executor that is not this process's own (as a Ray cluster's), run here."""

    threads = 1

    def map(self, fn, jobs):  # type: ignore[no-untyped-def]
        return [fn(*j) for j in jobs]


def test_feature_strips_equal_the_whole_image() -> None:
    import cv2

    from sn9cloud.engine.features import structure_features

    rng = np.random.default_rng(0)
    a = cv2.GaussianBlur(rng.random((1000, 700), dtype=np.float32), (0, 0), 2)
    for presmooth in (0.0, 1.0):
        whole = structure_features(a, presmooth=presmooth)
        strips = structure_features(a, presmooth=presmooth, executor=_Elsewhere())  # 4 jobs
        np.testing.assert_array_equal(whole, strips)
