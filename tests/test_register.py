"""`sn9cloud register` end to end on the bundled real pair, other grids, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import rasterio
from click.testing import CliRunner
from rasterio.crs import CRS
from rasterio.warp import Resampling, calculate_default_transform, reproject
from rio_cogeo.cogeo import cog_validate

from sn9cloud.cli import main
from sn9cloud.distortion import Distortion
from sn9cloud.engine.grid import pixel_centres_to_map, sn9_offsets
from sn9cloud.engine.types import Grid

SAMPLE = Path(__file__).resolve().parents[1] / "catalogs" / "sample-pair"


def _truth(optical: Path, sar: Path) -> tuple[np.ndarray, np.ndarray]:
    """Exact SpaceNet 9 offsets of the sample's known distortion, for whatever SAR grid."""
    d = Distortion.from_dict(json.loads((SAMPLE / "truth.json").read_text())
                             ["distortion_optical_px"])
    with rasterio.open(optical) as o, rasterio.open(sar) as s:
        og = Grid(o.width, o.height, o.transform, o.crs)
        sg = Grid(s.width, s.height, s.transform, s.crs)
    yy, xx = np.mgrid[0:og.height, 0:og.width].astype(float)
    ux, uy = d.displacement(xx, yy)
    pix = np.column_stack([xx.ravel(), yy.ravel()])
    feature_map = pixel_centres_to_map(og.transform, pix + np.column_stack([ux.ravel(),
                                                                           uy.ravel()]))
    off = sn9_offsets(og, sg, pix, feature_map).T.reshape(2, og.height, og.width)
    # the overlap: where the unwarped SAR tile had data (its own valid mask)
    with rasterio.open(SAMPLE / "sar.tif") as s0:
        inside = np.ones((og.height, og.width), bool)
        sidx = ~s0.transform * (feature_map[:, 0], feature_map[:, 1])
        inside = ((sidx[0] >= 0) & (sidx[0] < s0.width) & (sidx[1] >= 0)
                  & (sidx[1] < s0.height)).reshape(og.height, og.width)
    return off, inside


def _run(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, list(args))
    return res.exit_code, res.output


def test_register_writes_a_valid_cog_on_the_optical_grid(tmp_path: Path) -> None:
    out, rep = tmp_path / "offsets.tif", tmp_path / "report.json"
    code, text = _run("register", str(SAMPLE / "optical.tif"), str(SAMPLE / "sar.tif"),
                      "-o", str(out), "--report", str(rep))
    assert code == 0, text
    assert cog_validate(str(out))[0]
    with rasterio.open(out) as ds, rasterio.open(SAMPLE / "optical.tif") as opt:
        assert (ds.count, ds.dtypes) == (2, ("float32", "float32"))
        assert (ds.width, ds.height, ds.transform, ds.crs) == (
            opt.width, opt.height, opt.transform, opt.crs)
        assert ds.descriptions == ("dx", "dy")
        off = ds.read()
    assert np.isfinite(off).all()
    truth, inside = _truth(SAMPLE / "optical.tif", SAMPLE / "sar.tif")
    err = np.hypot(*(off - truth)[:, inside])
    georef_only = np.hypot(*truth[:, inside])
    assert err.mean() < 3.0, f"mean error {err.mean():.2f} px"
    assert err.mean() < 0.15 * georef_only.mean()
    report = json.loads(rep.read_text())
    for key in ("matches", "inliers", "residual_rmse_px", "estimated_error_px", "timings_s"):
        assert key in report
    assert report["inliers"] >= 12
    assert {"grid", "features", "coarse", "match_fit", "read", "write"} <= set(report["timings_s"])


def test_affine_model_is_worse_than_nonrigid_on_a_warped_pair(tmp_path: Path) -> None:
    errs = {}
    truth, inside = _truth(SAMPLE / "optical.tif", SAMPLE / "sar.tif")
    for model in ("affine", "nonrigid"):
        out = tmp_path / f"{model}.tif"
        code, text = _run("register", str(SAMPLE / "optical.tif"), str(SAMPLE / "sar.tif"),
                          "-o", str(out), "--model", model)
        assert code == 0, text
        with rasterio.open(out) as ds:
            errs[model] = float(np.hypot(*(ds.read() - truth)[:, inside]).mean())
    assert errs["nonrigid"] < errs["affine"]


def test_sar_in_another_crs_and_pixel_size(tmp_path: Path) -> None:
    """The same SAR reprojected to geographic coordinates at a coarser pixel: the common
    grid and the offset convention (SAR corners reprojected into the optical CRS) hold."""
    src = SAMPLE / "sar.tif"
    dst = tmp_path / "sar_4326.tif"
    with rasterio.open(src) as s:
        dst_crs = CRS.from_epsg(4326)
        t, w, h = calculate_default_transform(s.crs, dst_crs, s.width, s.height, *s.bounds)
        t = t * t.scale(1.2)
        w, h = int(w / 1.2), int(h / 1.2)
        prof = s.profile | {"crs": dst_crs, "transform": t, "width": w, "height": h,
                            "driver": "GTiff"}
        with rasterio.open(dst, "w", **prof) as d:
            reproject(rasterio.band(s, 1), rasterio.band(d, 1), resampling=Resampling.bilinear,
                      src_nodata=0, dst_nodata=0)
    out = tmp_path / "o.tif"
    code, text = _run("register", str(SAMPLE / "optical.tif"), str(dst), "-o", str(out))
    assert code == 0, text
    truth, inside = _truth(SAMPLE / "optical.tif", dst)
    with rasterio.open(out) as ds:
        err = np.hypot(*(ds.read() - truth)[:, inside])
    assert err.mean() < 3.5, f"mean error {err.mean():.2f} px"


# ---- bad input: one line naming the input, exit 2, nothing written -------------------

def _write(path: Path, arr: np.ndarray, transform=None, crs="EPSG:32637", nodata=None) -> Path:
    from affine import Affine

    arr = arr if arr.ndim == 3 else arr[None]
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[2], height=arr.shape[1],
                       count=arr.shape[0], dtype=arr.dtype, crs=crs, nodata=nodata,
                       transform=transform or Affine(10, 0, 354000, 0, -10, 4110000)) as ds:
        ds.write(arr)
    return path


def _bad(tmp_path: Path, optical: Path, sar: Path, expect: str, out: Path | None = None) -> None:
    out = out or tmp_path / "out.tif"
    code, text = _run("register", str(optical), str(sar), "-o", str(out))
    assert code == 2, text
    lines = [ln for ln in text.strip().splitlines() if ln]
    assert len(lines) == 1, text
    assert expect in lines[0], lines[0]
    assert not out.exists()
    assert not list(out.parent.glob(".sn9cloud-*"))


def test_missing_file(tmp_path: Path) -> None:
    _bad(tmp_path, tmp_path / "nope.tif", SAMPLE / "sar.tif", "nope.tif: no such file")


def test_not_a_raster(tmp_path: Path) -> None:
    p = tmp_path / "notes.tif"
    p.write_text("this is not an image")
    _bad(tmp_path, SAMPLE / "optical.tif", p, "notes.tif: not a readable GeoTIFF")


def test_no_overlap(tmp_path: Path) -> None:
    from affine import Affine

    with rasterio.open(SAMPLE / "sar.tif") as s:
        arr = s.read()
    far = _write(tmp_path / "far.tif", arr, Affine(10, 0, 500000, 0, -10, 4110000), nodata=0)
    _bad(tmp_path, SAMPLE / "optical.tif", far, "does not overlap")


def test_constant_image(tmp_path: Path) -> None:
    p = _write(tmp_path / "flat.tif", np.full((256, 256), 7, np.uint8))
    _bad(tmp_path, SAMPLE / "optical.tif", p, "SAR image: constant")


def test_all_nodata_image(tmp_path: Path) -> None:
    p = _write(tmp_path / "empty.tif", np.zeros((256, 256), np.uint8), nodata=0)
    _bad(tmp_path, SAMPLE / "optical.tif", p, "no valid pixels")


def test_image_smaller_than_the_matching_window(tmp_path: Path) -> None:
    from affine import Affine

    rng = np.random.default_rng(0)
    small_o = _write(tmp_path / "o.tif", rng.integers(0, 255, (3, 30, 30), dtype=np.uint8),
                     Affine(10, 0, 354000, 0, -10, 4110000))
    small_s = _write(tmp_path / "s.tif", rng.integers(0, 255, (30, 30), dtype=np.uint8),
                     Affine(10, 0, 354000, 0, -10, 4110000))
    _bad(tmp_path, small_o, small_s, "smaller than the")


def test_unwritable_output(tmp_path: Path) -> None:
    out = tmp_path / "missing-dir" / "o.tif"
    code, text = _run("register", str(SAMPLE / "optical.tif"), str(SAMPLE / "sar.tif"),
                      "-o", str(out))
    assert code == 2 and "does not exist" in text
    assert not out.exists()


def test_unrelated_pair_is_declined_not_answered(tmp_path: Path) -> None:
    """Pure noise against a real optical tile: too few consistent matches -> an error,
    never a silent offset map."""
    rng = np.random.default_rng(3)
    with rasterio.open(SAMPLE / "optical.tif") as o:
        noise = _write(tmp_path / "noise.tif",
                       rng.gamma(1.0, 60, (o.height, o.width)).clip(1, 255).astype(np.uint8),
                       o.transform, crs=o.crs)
    _bad(tmp_path, SAMPLE / "optical.tif", noise, "cannot be registered reliably")
