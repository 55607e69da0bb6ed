"""The SpaceNet 9 metric on the real tie-point files, with rasters of the real geometry."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import sn9_geometry as g
from click.testing import CliRunner
from rasterio.crs import CRS

from sn9cloud.cli import main
from sn9cloud.errors import InputError
from sn9cloud.score import read_tiepoints, score_offsets

EXPECTED_ZERO = {
    "02_tiepoints_train_01": 105.558,
    "02_tiepoints_train_02": 85.526,
    "03_tiepoints_train_01": 104.723,
}


def _sparse_raster(path: Path, size: tuple[int, int], transform, count: int, dtype: str) -> None:
    """A raster of the real size and geotransform whose blocks are never written (GDAL
    sparse files read as zeros): the real geometry at almost no disk cost."""
    with rasterio.open(path, "w", driver="GTiff", width=size[0], height=size[1], count=count,
                       dtype=dtype, crs=CRS.from_epsg(g.EPSG), transform=transform,
                       tiled=True, blockxsize=512, blockysize=512, sparse_ok=True,
                       compress="deflate"):
        pass


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory, data: Path) -> dict:
    out = {}
    for name in g.NAMES:
        s = g.load(name)
        d = tmp_path_factory.mktemp(name)
        _sparse_raster(d / "optical.tif", s.opt_size, s.opt_transform, 3, "uint8")
        _sparse_raster(d / "sar.tif", s.sar_size, s.sar_transform, 1, "uint8")
        _sparse_raster(d / "zeros.tif", s.opt_size, s.opt_transform, 2, "float32")
        out[name] = (s, d)
    return out


@pytest.mark.parametrize("name", g.NAMES)
def test_all_zero_map_scores_as_the_challenge_did(scenes: dict, name: str) -> None:
    s, d = scenes[name]
    res = CliRunner().invoke(main, ["score", str(d / "zeros.tif"), "--tiepoints",
                                    str(s.csv_path), "--optical", str(d / "optical.tif"),
                                    "--sar", str(d / "sar.tif")])
    assert res.exit_code == 0, res.output
    last = json.loads(res.output.strip().splitlines()[-1])
    assert set(last) == {"mean_px", "mean_m", "score", "n"}
    assert last["mean_px"] == pytest.approx(EXPECTED_ZERO[name], abs=5e-4)
    assert last["n"] == len(s.opt_rc)
    assert last["score"] == pytest.approx(100 / (1 + 0.01 * EXPECTED_ZERO[name]), abs=1e-3)


def test_exact_reference_map_scores_zero(scenes: dict, tmp_path: Path) -> None:
    s, d = scenes["02_tiepoints_train_01"]
    # reference offsets written at the tie-points only; the rest stays zero
    ref = np.round((s.sar_xy - s.opt_xy) / [s.opt_transform.a, s.opt_transform.e])
    path = tmp_path / "ref.tif"
    with rasterio.open(d / "zeros.tif") as src:
        profile = src.profile
    with rasterio.open(path, "w", **profile) as dst:
        for (r, c), (dx, dy) in zip(s.opt_rc.astype(int), ref, strict=True):
            dst.write(np.array([[[dx]], [[dy]]], np.float32),
                      window=rasterio.windows.Window(c, r, 1, 1))
    sc = score_offsets(str(path), str(s.csv_path), str(d / "optical.tif"), str(d / "sar.tif"))
    assert sc.mean_px == pytest.approx(0.0, abs=1e-6)
    assert sc.score == pytest.approx(100.0)


@pytest.mark.parametrize(
    "text, problem",
    [
        ("sar_row,sar_col,optical_row\n1,2,3\n", "missing column"),
        ("sar_row,sar_col,optical_row,optical_col\n1,2,nan,4\n", "non-integer or NaN"),
        ("sar_row,sar_col,optical_row,optical_col\n1,2,3,4\n1,2,3,4\n", "duplicate"),
        ("sar_row,sar_col,optical_row,optical_col\n1,x,3,4\n", "not numeric"),
    ],
)
def test_bad_tiepoints_are_refused(tmp_path: Path, text: str, problem: str) -> None:
    p = tmp_path / "tp.csv"
    p.write_text(text)
    with pytest.raises(InputError, match=problem):
        read_tiepoints(p)


def test_points_outside_the_optical_image_are_refused(scenes: dict, tmp_path: Path) -> None:
    _, d = scenes["02_tiepoints_train_01"]
    p = tmp_path / "tp.csv"
    p.write_text("sar_row,sar_col,optical_row,optical_col\n10,10,99999,5\n")
    res = CliRunner().invoke(main, ["score", str(d / "zeros.tif"), "--tiepoints", str(p),
                                    "--optical", str(d / "optical.tif"),
                                    "--sar", str(d / "sar.tif")])
    assert res.exit_code == 2
    assert "outside the optical image" in res.output
