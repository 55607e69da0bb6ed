"""Stages tested alone on small generated data, with truth built in the test: sub-pixel
peaks, the coarse correlation peak, pairing, raster href selection, the result item."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pystac
import pytest
from affine import Affine
from rasterio.crs import CRS
from runs import default_run

from sn9cloud.engine.coarse import coarse_align, correlation_peak, parabola_vertex
from sn9cloud.engine.features import structure_features
from sn9cloud.engine.match import subpixel_peaks
from sn9cloud.engine.types import Grid
from sn9cloud.errors import InputError
from sn9cloud.stac.catalog import raster_href
from sn9cloud.stac.items import PublishedFile, build_result_item
from sn9cloud.stac.pairing import PairingOptions, explicit_pairs, overlap, pair_items
from sn9cloud.stac.validate import validate

SAR_EXT = "https://stac-extensions.github.io/sar/v1.1.0/schema.json"


# ---- peaks ------------------------------------------------------------------------------

def _paraboloid(n: int, cx: float, cy: float) -> np.ndarray:
    yy, xx = np.mgrid[0:n, 0:n].astype(float)
    return 1.0 - 0.05 * ((xx - cx) ** 2 + (yy - cy) ** 2)


def test_subpixel_peaks_find_a_paraboloid_vertex_exactly() -> None:
    truth = [(4.3, 4.0), (3.6, 5.45), (5.0, 4.0), (4.49, 3.51)]
    surf = np.stack([_paraboloid(9, cx, cy) for cx, cy in truth])
    flat = surf.reshape(len(surf), -1).argmax(axis=1)
    iy, ix = np.divmod(flat, 9)
    dx, dy = subpixel_peaks(surf, iy, ix)
    np.testing.assert_allclose(ix + dx, [t[0] for t in truth], atol=1e-9)
    np.testing.assert_allclose(iy + dy, [t[1] for t in truth], atol=1e-9)


def test_subpixel_peak_is_zero_where_the_peak_is_not_a_maximum() -> None:
    flat = np.ones((1, 5, 5))  # a plateau: no curvature, no refinement
    dx, dy = subpixel_peaks(flat, np.array([2]), np.array([2]))
    assert (dx[0], dy[0]) == (0.0, 0.0)
    assert parabola_vertex(1.0, 1.0, 1.0) == 0.0
    assert parabola_vertex(0.0, 1.0, 0.0) == 0.0
    assert parabola_vertex(0.5, 1.0, 0.0) == pytest.approx(-1 / 6)  # towards the left side
    assert -0.5 <= parabola_vertex(0.99, 1.0, -5.0) <= 0.5  # clipped to half a pixel


def _wrapped_bump(h: int, w: int, sx: float, sy: float, width: float = 2.0) -> np.ndarray:
    """A Gaussian NCC surface in FFT-wrapped layout with its peak at lag (sx, sy)."""
    dy = np.fft.fftfreq(h, 1.0 / h)[:, None]
    dx = np.fft.fftfreq(w, 1.0 / w)[None, :]
    return np.exp(-((dx - sx) ** 2 + (dy - sy) ** 2) / (2 * width**2))


def test_coarse_peak_finds_negative_and_subpixel_lags_within_the_search() -> None:
    s = _wrapped_bump(64, 80, -7.3, 5.2)
    shift, value, margin = correlation_peak(s, (20.0, 20.0), exclude=3)
    np.testing.assert_allclose(shift, [-7.3, 5.2], atol=0.15)
    assert value == pytest.approx(s.max())
    assert 0 < margin < value
    # a higher peak outside the search range is ignored
    s2 = s + 1.5 * _wrapped_bump(64, 80, 30.0, 0.0)
    shift2, _, _ = correlation_peak(s2, (20.0, 20.0), exclude=3)
    np.testing.assert_allclose(shift2, [-7.3, 5.2], atol=0.15)
    shift3, _, m3 = correlation_peak(s2, (40.0, 40.0), exclude=3)
    np.testing.assert_allclose(shift3, [30.0, 0.0], atol=0.15)
    assert m3 > 0


def test_coarse_alignment_recovers_a_known_shift() -> None:
    rng = np.random.default_rng(1)
    import cv2

    base = cv2.GaussianBlur(rng.random((160, 160), dtype=np.float32), (0, 0), 2.5)
    moved = np.roll(base, (9, -13), axis=(0, 1))  # content moves down 9, left 13
    valid = np.ones_like(base, bool)
    res = coarse_align(structure_features(base), valid, structure_features(moved), valid,
                       (40.0, 40.0))
    np.testing.assert_allclose(res.shift, [-13.0, 9.0], atol=0.3)
    assert res.peak > 0.5 and res.margin > 0.1


# ---- pairing ------------------------------------------------------------------------------

def _item(item_id: str, x0: float, days: float = 0.0, sar: bool = False,
          collection: str | None = None, size: float = 0.01) -> pystac.Item:
    geom = {"type": "Polygon", "coordinates": [[[x0, 0.0], [x0 + size, 0.0],
                                                [x0 + size, size], [x0, size], [x0, 0.0]]]}
    it = pystac.Item(item_id, geom, [x0, 0.0, x0 + size, size],
                     datetime(2023, 2, 6, tzinfo=UTC) + timedelta(days=days),
                     {"sar:frequency_band": "X"} if sar else {}, collection=collection)
    if sar:
        it.stac_extensions.append(SAR_EXT)
    return it


def test_pairing_takes_the_largest_overlap_then_the_nearest_time() -> None:
    sar = _item("s", 0.0, sar=True)
    far = _item("o-far", 0.008)  # 20% overlap: under the 30% minimum
    half = _item("o-half", 0.005)  # 50%
    most = _item("o-most", 0.001, days=3.0)  # 90%
    most_sooner = _item("o-most-sooner", 0.001, days=1.0)  # 90%, nearer in time
    assert overlap(half, sar) == pytest.approx(0.5)
    pairs, problems = pair_items([far, half, sar, most, most_sooner])
    assert not problems
    assert [(p.optical.id, p.sar.id) for p in pairs] == [("o-most-sooner", "s")]
    assert pairs[0].overlap == pytest.approx(0.9)
    pairs, problems = pair_items([far, half, sar, most],
                                 PairingOptions(max_days=2.0))
    assert [p.optical.id for p in pairs] == ["o-half"]


def test_pairing_problems_are_reported_per_sar_item() -> None:
    alone = _item("s-alone", 5.0, sar=True)
    by_collection = _item("s-coll", 0.0, collection="umbra")  # SAR by configuration
    opt = _item("o", 0.0)
    pairs, problems = pair_items([alone, by_collection, opt],
                                 PairingOptions(sar_collections=("umbra",)))
    assert [(p.optical.id, p.sar.id) for p in pairs] == [("o", "s-coll")]
    assert [p.name for p in problems] == ["s-alone"]
    assert "no optical item overlaps SAR item s-alone by at least 30%" in problems[0].reason
    _, problems = pair_items([opt])
    assert [p.name for p in problems] == ["catalog"]
    pairs, problems = explicit_pairs([opt, alone], [("o", "s-alone"), ("o", "nope")])
    assert [(p.optical.id, p.sar.id, p.overlap) for p in pairs] == [("o", "s-alone", 0.0)]
    assert "item(s) not in the catalog: nope" in problems[0].reason


# ---- raster href selection ---------------------------------------------------------------

def _with_assets(assets: dict[str, dict[str, object]], sar: bool = False) -> pystac.Item:
    it = _item("x", 0.0, sar=sar)
    it.set_self_href("/data/cat/x/x.json")
    for key, a in assets.items():
        it.add_asset(key, pystac.Asset(str(a["href"]), media_type=a.get("type"),  # type: ignore[arg-type]
                                       roles=a.get("roles")))  # type: ignore[arg-type]
    return it


def test_raster_href_prefers_the_modality_keys_and_skips_previews() -> None:
    tif = "image/tiff; application=geotiff; profile=cloud-optimized"
    it = _with_assets({
        "thumbnail": {"href": "./thumb.tif", "type": tif, "roles": ["thumbnail"]},
        "pan_analytic": {"href": "./pan.tif", "type": tif},
        "visual": {"href": "./visual.tif", "type": tif},
        "metadata": {"href": "./meta.xml", "type": "application/xml"}})
    assert raster_href(it, sar=False) == "/data/cat/x/visual.tif"
    sar = _with_assets({"vh": {"href": "./vh.tif"}, "vv": {"href": "./vv.TIF"},
                        "preview": {"href": "./p.png", "type": "image/png"}}, sar=True)
    assert raster_href(sar, sar=True) == "/data/cat/x/vv.TIF"
    other = _with_assets({"b": {"href": "s3://bkt/b.tif"},
                          "a": {"href": "s3://bkt/a.tif", "roles": ["data"]}})
    assert raster_href(other, sar=False) == "s3://bkt/a.tif"  # the data role, then by name
    with pytest.raises(InputError, match=r"item x: no GeoTIFF raster asset \(assets: notes\)"):
        raster_href(_with_assets({"notes": {"href": "./n.txt", "type": "text/plain"}}),
                    sar=False)


# ---- the result item ---------------------------------------------------------------------

def test_result_item_says_what_computed_it(schemas: Path) -> None:
    optical, sar = _item("opt-1", 0.0), _item("sar-1", 0.0, days=1.0, sar=True)
    grid = Grid(100, 80, Affine(0.5, 0, 435000, 0, -0.5, 4181000), CRS.from_epsg(32637))
    f = PublishedFile("./offsets-abc.tif", 1234, "ab" * 32)
    report = {"model": "affine", "inliers": 40, "estimated_error_px": 0.81234567,
              "timings_s": {"total": 1.0}}
    items = {}
    for values in ({}, {"engine.model": "affine"}, {"matcher": "baseline"}):
        run = default_run(**values)
        it = build_result_item(run=run, optical=optical, sar=sar, optical_href="o.tif",
                               sar_href="s.tif", optical_item_href="../o.json",
                               sar_item_href=None, grid=grid, report=report, cog=f,
                               report_file=f, thumbnail=f, collection_id="results",
                               processed_at=datetime(2026, 12, 1, tzinfo=UTC))
        assert it["id"] == run.result_id("opt-1", "sar-1")
        p = it["properties"]
        assert p["datetime"] == "2023-02-07T00:00:00Z"  # the SAR acquisition
        assert p["sn9cloud:config"] == run.effective
        assert p["sn9cloud:config_hash"] == run.config_hash
        assert (p["sn9cloud:matcher"], p["sn9cloud:model"]) == (run.config.matcher,
                                                               run.field_model)
        assert p["sn9cloud:report"]["estimated_error_px"] == 0.8123
        assert it["assets"]["offsets"]["proj:code"] == "EPSG:32637"
        assert it["assets"]["offsets"]["proj:shape"] == [80, 100]
        assert it["assets"]["offsets"]["file:checksum"] == "1220" + "ab" * 32
        assert [ln["rel"] for ln in it["links"]].count("derived_from") == 1
        assert len(validate(it, schemas)) == 5
        items[run.config.matcher + run.field_model] = it
    assert len({it["id"] for it in items.values()}) == 3
    assert len({it["properties"]["title"] for it in items.values()}) == 3
    assert "thin-plate-spline" in items["enginenonrigid"]["properties"]["processing:lineage"]
    assert "thin-plate" not in items["engineaffine"]["properties"]["processing:lineage"]
    assert "baseline workflow" in items["baselineaffine"]["properties"]["processing:lineage"]
