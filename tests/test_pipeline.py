"""`sn9cloud run` on the bundled sample catalog, locally: published items validate offline,
checksums match, offsets score against the known truth, reruns are idempotent, bad input
fails per pair without touching what was published."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rio_cogeo.cogeo import cog_validate
from runs import result_id

from sn9cloud.cli import main
from sn9cloud.score import score_offsets
from sn9cloud.stac.validate import ValidationFailed, validate

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "catalogs" / "sample"
SCHEMAS = ROOT.parent / "shared" / "schemas"
COLLECTION = "sn9cloud-offsets"


def _run(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, list(args))
    return res.exit_code, res.output


def _files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".sn9cloud.lock"}


def _items(out: Path) -> list[tuple[Path, dict]]:
    return [(p, json.loads(p.read_text()))
            for p in sorted((out / COLLECTION).glob("*/sn9-offsets-*.json"))]


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "out"
    code, text = _run("run", str(SAMPLE / "catalog.json"), "--out", str(out))
    assert code == 0, text
    assert "3 published, 0 skipped" in text
    return out


def test_items_validate_offline(published: Path) -> None:
    if not SCHEMAS.exists():
        pytest.skip("../shared/schemas not present")
    docs = [json.loads(p.read_text()) for p in published.rglob("*.json")
            if not p.name.startswith("report-")]
    assert len(docs) == 5  # catalog, collection, three items
    for d in docs:
        checked = validate(d, SCHEMAS)
        if d["type"] == "Feature":
            assert len(checked) == 5  # core + projection, raster, file, processing


def test_validation_can_fail() -> None:
    if not SCHEMAS.exists():
        pytest.skip("../shared/schemas not present")
    item = json.loads(next((SAMPLE / "sample-sar").glob("*/*.json")).read_text())
    del item["properties"]["sar:frequency_band"]
    with pytest.raises(ValidationFailed, match="sar:frequency_band"):
        validate(item, SCHEMAS)


def test_item_content_and_checksums(published: Path) -> None:
    items = _items(published)
    assert {d["properties"]["sn9cloud:sar_id"] for _, d in items} == {
        "sample-sar-01", "sample-sar-02", "sample-sar-03"}
    for path, d in items:
        assert d["id"] == result_id(d["properties"]["sn9cloud:optical_id"],
                                    d["properties"]["sn9cloud:sar_id"])
        for a in d["assets"].values():
            f = path.parent / a["href"]
            assert f.stat().st_size == a["file:size"]
            assert a["file:checksum"] == "1220" + hashlib.sha256(f.read_bytes()).hexdigest()
        derived = [ln["href"] for ln in d["links"] if ln["rel"] == "derived_from"]
        assert len(derived) == 2
        for href in derived:  # relative links to the input items resolve
            assert json.loads((path.parent / href).read_text())["type"] == "Feature"
        opt = json.loads((path.parent / derived[0]).read_text())
        assert d["geometry"] == opt["geometry"]
        sar = json.loads((path.parent / derived[1]).read_text())
        assert d["properties"]["datetime"] == sar["properties"]["datetime"]
        assert "(/" not in d["properties"]["processing:lineage"]  # no absolute local paths
        sw = d["properties"]["processing:software"]
        assert {"sn9cloud", "rasterio", "numpy"} <= set(sw)
        rep = d["properties"]["sn9cloud:report"]
        assert rep["inliers"] >= 12 and rep["estimated_error_px"] > 0
        report = json.loads((path.parent / d["assets"]["report"]["href"]).read_text())
        assert report["inliers"] == rep["inliers"] and "read" in report["timings_s"]
    coll = json.loads((published / COLLECTION / "collection.json").read_text())
    assert sorted(ln["href"] for ln in coll["links"] if ln["rel"] == "item") == sorted(
        f"./{d['id']}/{d['id']}.json" for _, d in items)
    cat = json.loads((published / "catalog.json").read_text())
    assert [ln["href"] for ln in cat["links"] if ln["rel"] == "child"] == [
        f"./{COLLECTION}/collection.json"]


def test_offsets_score_against_truth(published: Path) -> None:
    truth = json.loads((SAMPLE / "truth" / "truth.json").read_text())
    for path, d in _items(published):
        sar_id = d["properties"]["sn9cloud:sar_id"]
        t = truth[sar_id]
        cog = path.parent / d["assets"]["offsets"]["href"]
        assert cog_validate(str(cog))[0]
        opt = SAMPLE / "sample-optical" / t["optical_id"] / "visual.tif"
        with rasterio.open(cog) as ds, rasterio.open(opt) as o:
            assert (ds.width, ds.height, ds.transform, ds.crs) == (
                o.width, o.height, o.transform, o.crs)
            assert np.isfinite(ds.read()).all()
        s = score_offsets(str(cog), str(SAMPLE / "truth" / t["tiepoints"]), str(opt),
                          str(SAMPLE / "sample-sar" / sar_id / "vv.tif"))
        assert s.mean_px < 3.0, (sar_id, s)


def test_rerun_skips_and_force_keeps_old_assets(published: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(published, out)
    before = _files(out)
    code, text = _run("run", str(SAMPLE / "catalog.json"), "--out", str(out))
    assert code == 0 and "0 published, 3 skipped" in text
    assert _files(out) == before  # nothing rewritten
    code, text = _run("run", str(SAMPLE / "catalog.json"), "--out", str(out), "--force",
                      "--pair", "sample-optical-01", "sample-sar-01")
    assert code == 0 and "1 published" in text
    after = _files(out)
    assert set(before) <= set(after)  # every earlier file is still there
    coll = json.loads((out / COLLECTION / "collection.json").read_text())
    assert sum(ln["rel"] == "item" for ln in coll["links"]) == 3  # no doubled link


def _copy_sample(tmp_path: Path) -> Path:
    cat = tmp_path / "cat"
    shutil.copytree(SAMPLE, cat, ignore=shutil.ignore_patterns("truth", "*.md", "*.txt", "*.py"))
    return cat


def test_bad_items_fail_per_pair_and_keep_published(published: Path, tmp_path: Path) -> None:
    cat = _copy_sample(tmp_path)
    # pair 2: the SAR asset is not a GeoTIFF; pair 3: the optical item has no raster asset
    (cat / "sample-sar" / "sample-sar-02" / "vv.tif").write_text("not a tiff")
    p = cat / "sample-optical" / "sample-optical-03" / "sample-optical-03.json"
    d = json.loads(p.read_text())
    d["assets"] = {"notes": {"href": "./notes.txt", "type": "text/plain"}}
    p.write_text(json.dumps(d))
    out = tmp_path / "out"
    shutil.copytree(published, out)
    before = _files(out)
    shutil.rmtree(out / COLLECTION / result_id("sample-optical-01", "sample-sar-01"))
    code, text = _run("run", str(cat / "catalog.json"), "--out", str(out), "--force")
    assert code == 2
    assert "1 published, 0 skipped (already published), 2 failed" in text
    assert "vv.tif" in text and "not a readable GeoTIFF" in text
    assert "item sample-optical-03: no GeoTIFF raster asset" in text
    after = _files(out)
    for k, v in before.items():  # the failed pairs' earlier publications are intact
        if "sn9-offsets-" in k and result_id("sample-optical-01", "sample-sar-01") in k:
            continue
        if k.endswith("collection.json"):
            continue
        assert after.get(k) == v, k


def test_unpaired_sar_and_bad_catalog(tmp_path: Path) -> None:
    code, text = _run("run", str(tmp_path / "nowhere.json"), "--out", str(tmp_path / "o"))
    assert code == 2 and "nowhere.json: cannot be read" in text
    cat = _copy_sample(tmp_path)
    p = cat / "sample-sar" / "sample-sar-01" / "sample-sar-01.json"
    d = json.loads(p.read_text())
    d["geometry"]["coordinates"] = [[[x + 1.0, y] for x, y in d["geometry"]["coordinates"][0]]]
    d["bbox"] = [d["bbox"][0] + 1, d["bbox"][1], d["bbox"][2] + 1, d["bbox"][3]]
    p.write_text(json.dumps(d))
    code, text = _run("run", str(cat / "catalog.json"), "--out", str(tmp_path / "o"),
                      "--max-days", "0.1", "--pair", "sample-optical-09", "sample-sar-09")
    assert code == 2 and "item(s) not in the catalog: sample-optical-09, sample-sar-09" in text
    code, text = _run("run", str(cat / "catalog.json"), "--out", str(tmp_path / "o"))
    assert code == 2
    assert "no optical item overlaps SAR item sample-sar-01 by at least 30%" in text
    assert "2 published" in text
