"""Hostile and careless input: every case ends with exit 2 and one line naming the input,
nothing written outside the output, and no request outside the read policy (a loopback
server records what it is asked; another accepts and never answers)."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner

from sn9cloud.cli import main

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "catalogs" / "sample"
PAIR = ROOT / "catalogs" / "sample-pair"
SCHEMAS = ROOT.parent / "shared" / "schemas"


def _run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    res = CliRunner().invoke(main, list(args), env=env)
    return res.exit_code, res.output


def _one_line(code: int, text: str, expect: str) -> None:
    lines = [ln for ln in text.splitlines() if ln.startswith("sn9cloud: error:")]
    assert code == 2, text
    assert "Traceback" not in text, text
    assert any(expect in ln for ln in lines), text


def _digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): _digest(p) for p in sorted(root.rglob("*")) if p.is_file()}


class Recorder(http.server.BaseHTTPRequestHandler):
    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        Recorder.requests.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    do_HEAD = do_GET

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture()
def recorder() -> Iterator[tuple[str, list[str]]]:
    """A loopback HTTP server that records every request path."""
    Recorder.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", Recorder.requests
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture()
def hang() -> Iterator[str]:
    """A loopback server that accepts connections and never answers."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        s.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(s.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{s.getsockname()[1]}"
    finally:
        stop.set()
        t.join(2)
        for c in held:
            c.close()
        s.close()


def _catalog(tmp_path: Path) -> Path:
    cat = tmp_path / "cat"
    shutil.copytree(SAMPLE, cat, ignore=shutil.ignore_patterns("truth", "*.md", "*.txt", "*.py"))
    return cat


def _item_path(cat: Path, kind: str, n: int) -> Path:
    return cat / f"sample-{kind}" / f"sample-{kind}-0{n}" / f"sample-{kind}-0{n}.json"


def _edit(path: Path, change: Any) -> None:
    d = json.loads(path.read_text())
    change(d)
    path.write_text(json.dumps(d))


def _set_asset(href: str) -> Any:
    def change(d: dict[str, Any]) -> None:
        next(iter(d["assets"].values()))["href"] = href
    return change


# ---- output safety ------------------------------------------------------------------

@pytest.fixture()
def pair(tmp_path: Path) -> tuple[Path, Path]:
    o, s = tmp_path / "optical.tif", tmp_path / "sar.tif"
    shutil.copy(PAIR / "optical.tif", o)
    shutil.copy(PAIR / "sar.tif", s)
    return o, s


def test_output_over_an_input_is_refused(pair: tuple[Path, Path], tmp_path: Path) -> None:
    o, s = pair
    before = _tree(tmp_path)
    _one_line(*_run("register", str(o), str(s), "-o", str(o)), "is the input")
    _one_line(*_run("register", str(o), str(s), "-o", str(tmp_path / "m.tif"),
                    "--report", str(s)), "is the input")
    _one_line(*_run("register", str(o), str(s), "-o", str(tmp_path / "m.tif"),
                    "--report", str(tmp_path / "m.tif")), "same file as -o")
    link = tmp_path / "link.tif"
    os.link(s, link)  # the same file under another name
    _one_line(*_run("register", str(o), str(s), "-o", str(link)), "is the input")
    link.unlink()
    assert _tree(tmp_path) == before


def test_output_that_is_not_a_regular_file_of_ours(pair: tuple[Path, Path],
                                                   tmp_path: Path) -> None:
    o, s = pair
    fifo = tmp_path / "fifo.tif"
    os.mkfifo(fifo)  # stands for a device node: never replaced by a regular file
    _one_line(*_run("register", str(o), str(s), "-o", str(fifo)), "not a regular file")
    assert fifo.is_fifo()
    (tmp_path / "d.tif").mkdir()
    _one_line(*_run("register", str(o), str(s), "-o", str(tmp_path / "d.tif")),
              "is a directory")
    sym = tmp_path / "sym.tif"
    sym.symlink_to(tmp_path / "elsewhere.tif")
    _one_line(*_run("register", str(o), str(s), "-o", str(sym)), "not a regular file")
    theirs = tmp_path / "theirs.tif"
    shutil.copy(PAIR / "optical.tif", theirs)
    _one_line(*_run("register", str(o), str(s), "-o", str(theirs)),
              "was not written by sn9cloud")
    assert _digest(theirs) == _digest(PAIR / "optical.tif")
    notes = tmp_path / "notes.json"
    notes.write_text('{"mine": true}')
    _one_line(*_run("register", str(o), str(s), "-o", str(tmp_path / "m.tif"),
                    "--report", str(notes)), "was not written by sn9cloud")
    _one_line(*_run("register", str(o), str(s), "-o", str(tmp_path / "m.tif"),
                    "--report", str(tmp_path)), "is a directory")
    assert not (tmp_path / "m.tif").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".sn9cloud")]


def test_our_own_output_is_replaced(pair: tuple[Path, Path], tmp_path: Path) -> None:
    o, s = pair
    out, rep = tmp_path / "m.tif", tmp_path / "r.json"
    for _ in range(2):  # the second run replaces what the first wrote
        code, text = _run("register", str(o), str(s), "-o", str(out), "--report", str(rep))
        assert code == 0, text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tif", "optical.tif", "r.json",
                                                          "sar.tif"]


def test_limits_are_checked_before_any_work(pair: tuple[Path, Path], tmp_path: Path) -> None:
    o, s = pair
    huge = tmp_path / "huge.tif"
    with rasterio.open(huge, "w", driver="GTiff", width=200_000, height=200_000, count=1,
                       dtype="uint8", crs="EPSG:32637", transform=Affine(0.3, 0, 0, 0, -0.3, 0),
                       tiled=True, blockxsize=1024, blockysize=1024, sparse_ok=True,
                       BIGTIFF="YES") as ds:
        ds.write(np.ones((1, 256, 256), np.uint8), window=((0, 256), (0, 256)))
    assert huge.stat().st_size < 5_000_000
    t0 = time.perf_counter()
    _one_line(*_run("register", str(huge), str(s), "-o", str(tmp_path / "m.tif")),
              "declares 200000 x 200000 px, more than the limit")
    assert time.perf_counter() - t0 < 60
    _one_line(*_run("register", str(o), str(s), "-o", str(tmp_path / "m.tif"),
                    env={"SN9CLOUD_MAX_SCRATCH_GB": "0.0001"}),
              "more than the limit of 0.0001 GB (SN9CLOUD_MAX_SCRATCH_GB)")
    assert not (tmp_path / "m.tif").exists()


def test_formats_other_than_geotiff_are_not_opened(pair: tuple[Path, Path],
                                                   tmp_path: Path) -> None:
    _, s = pair
    vrt = tmp_path / "sneaky.tif"  # a VRT under a GeoTIFF name, pointing elsewhere
    vrt.write_text(f'<VRTDataset rasterXSize="10" rasterYSize="10"><VRTRasterBand '
                   f'dataType="Byte" band="1"><SimpleSource><SourceFilename>{s}'
                   '</SourceFilename></SimpleSource></VRTRasterBand></VRTDataset>')
    _one_line(*_run("register", str(vrt), str(s), "-o", str(tmp_path / "m.tif")),
              "not a readable GeoTIFF")
    _one_line(*_run("register", "/vsicurl/http://127.0.0.1:9/x.tif", str(s), "-o",
                    str(tmp_path / "m.tif")), "not a file path or URL")


def test_geographic_optical_and_nan_sar(pair: tuple[Path, Path], tmp_path: Path) -> None:
    o, s = pair
    with rasterio.open(o) as ds:
        arr, profile = ds.read(), ds.profile
    geo = tmp_path / "geo.tif"
    profile.update(crs="EPSG:4326", transform=Affine(1e-5, 0, 37.0, 0, -1e-5, 37.5))
    with rasterio.open(geo, "w", **profile) as ds:
        ds.write(arr)
    _one_line(*_run("register", str(geo), str(s), "-o", str(tmp_path / "m.tif")),
              "in a geographic CRS (EPSG:4326)")
    with rasterio.open(s) as ds:
        profile = ds.profile
    profile.update(dtype="float32", nodata=None)
    nan = tmp_path / "nan.tif"
    with rasterio.open(nan, "w", **profile) as ds:
        ds.write(np.full((profile["count"], profile["height"], profile["width"]), np.nan,
                         np.float32))
    _one_line(*_run("register", str(o), str(nan), "-o", str(tmp_path / "m.tif")),
              "no valid pixels")


def test_sigterm_removes_the_scratch_folder(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch)}
    cat = _catalog(tmp_path)
    p = subprocess.Popen([sys.executable, "-m", "sn9cloud.cli", "run", str(cat / "catalog.json"),
                          "--out", str(tmp_path / "out")], env=env, stderr=subprocess.PIPE,
                         text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not any(scratch.glob("sn9cloud-run-*/sn9cloud-pair-*")):
        time.sleep(0.02)
    p.send_signal(signal.SIGTERM)
    p.wait(120)
    assert p.returncode == 128 + signal.SIGTERM
    assert not list(scratch.iterdir())
    assert not list((tmp_path / "out").rglob(".sn9cloud-*"))


# ---- the catalog is a trust boundary -----------------------------------------------

def test_hrefs_outside_the_catalog_are_never_requested(tmp_path: Path,
                                                        recorder: tuple[str, list[str]]) -> None:
    url, asked = recorder
    cat = _catalog(tmp_path)
    secret = tmp_path / "secret.tif"  # outside the catalog
    shutil.copy(cat / "sample-sar" / "sample-sar-03" / "vv.tif", secret)
    _edit(_item_path(cat, "sar", 1), _set_asset(f"{url}/x.tif"))
    _edit(_item_path(cat, "sar", 2), _set_asset(f"/vsicurl/{url}/y.tif"))
    _edit(_item_path(cat, "sar", 3), _set_asset("../../../secret.tif"))
    _edit(cat / "catalog.json", lambda d: d["links"].extend([
        {"rel": "child", "href": f"{url}/admin/delete?all=1"},
        {"rel": "child", "href": "file:///etc/passwd"},
        {"rel": "child", "href": str(secret)}]))
    out = tmp_path / "out"
    code, text = _run("run", str(cat / "catalog.json"), "--out", str(out))
    assert code == 2 and "Traceback" not in text
    assert "0 published" in text
    errors = [ln for ln in text.splitlines() if ln.startswith("sn9cloud: error:")]
    for expect in (f"refused href {url}/x.tif", "refused href /vsicurl/",
                   "refused href ../../../secret.tif",
                   f"refused href {url}/admin/delete", "refused href file:///etc/passwd",
                   f"refused href {secret}"):
        assert sum(expect in ln for ln in errors) == 1, (expect, text)
    assert asked == []
    assert not list(out.rglob("*.tif"))
    # --allow opens the door to the folder above: that one now reads (and registers)
    code, text = _run("run", str(cat / "catalog.json"), "--out", str(out), "--allow",
                      str(tmp_path), "--pair", "sample-optical-03", "sample-sar-03")
    assert "1 published" in text, text
    assert asked == []


def test_redirects_leave_not_the_allowed_set(tmp_path: Path,
                                             recorder: tuple[str, list[str]]) -> None:
    from sn9cloud.io.net import read_bytes
    from sn9cloud.io.policy import PolicyError, ReadPolicy

    url, asked = recorder

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", f"{url}/stolen")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        src = f"http://127.0.0.1:{server.server_address[1]}/cat/catalog.json"
        with pytest.raises(PolicyError, match=r"refused href .*/stolen: outside"):
            read_bytes(src, ReadPolicy.of([src]))
    finally:
        server.shutdown()
        server.server_close()
    assert asked == []


def test_a_host_that_never_answers_costs_one_timeout(tmp_path: Path, hang: str) -> None:
    t0 = time.perf_counter()
    code, text = _run("run", f"{hang}/catalog.json", "--out", str(tmp_path / "out"),
                      env={"SN9CLOUD_NET_TIMEOUT": "1"})
    _one_line(code, text, "no answer within 1 s (SN9CLOUD_NET_TIMEOUT)")
    assert time.perf_counter() - t0 < 30


def test_cycles_are_reported_and_the_rest_is_processed(tmp_path: Path) -> None:
    cat = _catalog(tmp_path)
    coll = cat / "sample-sar" / "collection.json"
    _edit(coll, lambda d: d["links"].append({"rel": "child", "href": "../catalog.json"}))
    code, text = _run("run", str(cat / "catalog.json"), "--out", str(tmp_path / "out"))
    assert code == 2, text
    assert "3 published" in text
    assert sum("catalog cycle: links back to" in ln for ln in text.splitlines()) == 1


def test_results_never_feed_back(tmp_path: Path) -> None:
    cat = _catalog(tmp_path)
    _one_line(*_run("run", str(cat / "catalog.json"), "--out", str(cat)),
              "is the input catalog's own folder")
    out = cat / "results"  # inside the input catalog, and linked from it
    code, text = _run("run", str(cat / "catalog.json"), "--out", str(out))
    assert code == 0 and "3 published" in text, text
    _edit(cat / "catalog.json", lambda d: d["links"].append(
        {"rel": "child", "href": "./results/sn9cloud-offsets/collection.json"}))
    code, text = _run("run", str(cat / "catalog.json"), "--out", str(out))
    assert code == 0 and "0 published, 3 skipped" in text, text
    _one_line(*_run("run", str(cat / "catalog.json"), "--out", str(tmp_path / "o2"),
                    "--results-collection", "../../x"), "results collection '../../x'")
    assert not (tmp_path / "o2").exists() and not (tmp_path.parent / "x").exists()


def test_item_limit_is_an_error_not_a_cut(tmp_path: Path) -> None:
    cat = _catalog(tmp_path)
    _one_line(*_run("run", str(cat / "catalog.json"), "--out", str(tmp_path / "o"),
                    "--max-items", "5"), "more than 5 items match (the --max-items limit)")


def test_null_geometry_optical_publishes_a_valid_item(tmp_path: Path) -> None:
    if not SCHEMAS.exists():
        pytest.skip("../shared/schemas not present")
    from sn9cloud.stac.validate import validate

    cat = _catalog(tmp_path)

    def null(d: dict[str, Any]) -> None:
        d["geometry"], d["bbox"] = None, None
        d.pop("bbox")
    _edit(_item_path(cat, "optical", 1), null)
    out = tmp_path / "out"
    code, text = _run("run", str(cat / "catalog.json"), "--out", str(out), "--pair",
                      "sample-optical-01", "sample-sar-01")
    assert code == 0, text
    (item,) = [json.loads(p.read_text()) for p in out.rglob("sn9-offsets-*.json")
               if not p.name.startswith("report-")]
    assert item["geometry"]["type"] == "Polygon" and len(item["bbox"]) == 4
    validate(item, SCHEMAS)


def test_malformed_items_and_options(tmp_path: Path) -> None:
    cat = _catalog(tmp_path)
    _edit(_item_path(cat, "optical", 2), lambda d: d.update(
        geometry={"type": "Polygon", "coordinates": [[1, 2]]}))
    code, text = _run("run", str(cat / "catalog.json"), "--out", str(tmp_path / "o"))
    assert code == 2 and "Traceback" not in text, text
    assert "item sample-optical-02: not a valid STAC item" in text
    for flags, expect in (
            (["--datetime", "yesterday-ish"], "datetime 'yesterday-ish': want an RFC 3339"),
            (["--datetime", "2024-01-02/2023-01-01"], "the start is after the end"),
            (["--bbox", "1,2,3"], "want minx,miny,maxx,maxy"),
            (["--bbox", "nan,0,1,1"], "want minx,miny,maxx,maxy"),
            (["--bbox", "3,0,1,1"], "want minx <= maxx"),
            (["--max-working-size", "0"], "max_working_size"),
    ):
        _one_line(*_run("run", str(cat / "catalog.json"), "--out", str(tmp_path / "o2"),
                        *flags), expect)
    assert not (tmp_path / "o2").exists()
    _one_line(*_run("browse", str(tmp_path), "--port", "99999"), "99999")


# ---- score and tie-points ------------------------------------------------------------

def test_tiepoint_files_a_user_might_feed(tmp_path: Path) -> None:
    truth = next((SAMPLE / "truth").glob("*.csv"))
    args = ["--optical", str(PAIR / "optical.tif"), "--sar", str(PAIR / "sar.tif")]
    cases = {
        "binary.csv": b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe",
        "latin1.csv": "sar_row,sar_col,optical_row,optical_col\n1,2,3,4\n# caf\xe9\n"
                      .encode("latin-1"),
        "huge.csv": b"sar_row,sar_col,optical_row,optical_col\n1e300,1,1,1\n",
        "nul.csv": b"sar_row,sar_col,optical_row,optical_col\n1,\x002,3,4\n",
    }
    for name, content in cases.items():
        p = tmp_path / name
        p.write_bytes(content)
        _one_line(*_run("score", str(PAIR / "optical.tif"), "--tiepoints", str(p), *args),
                  f"tie-points {p}")
    assert truth.exists()


def test_score_json_is_json_with_nan(tmp_path: Path) -> None:
    with rasterio.open(PAIR / "optical.tif") as ds:
        w, h, crs, tr = ds.width, ds.height, ds.crs, ds.transform
    m = tmp_path / "nan.tif"
    with rasterio.open(m, "w", driver="GTiff", width=w, height=h, count=2, dtype="float32",
                       crs=crs, transform=tr) as ds:
        ds.write(np.full((2, h, w), np.nan, np.float32))
    tp = tmp_path / "tp.csv"
    tp.write_text("sar_row,sar_col,optical_row,optical_col\n1,1,1,1\n2,2,2,2\n")
    code, text = _run("score", str(m), "--tiepoints", str(tp), "--optical",
                      str(PAIR / "optical.tif"), "--sar", str(PAIR / "sar.tif"))
    assert code == 0, text
    last = json.loads(text.strip().splitlines()[-1])
    assert last["mean_px"] is None and last["score"] is None and last["n"] == 2


# ---- the service keeps serving -------------------------------------------------------

def test_a_burst_of_hostile_items_does_not_stop_the_watcher(tmp_path: Path,
                                                           recorder: tuple[str, list[str]]
                                                           ) -> None:
    import io

    from runs import default_run

    from sn9cloud.io.policy import ReadPolicy
    from sn9cloud.service.logs import JsonLog
    from sn9cloud.service.watcher import LocalRunner, Watcher, WatchOptions
    from sn9cloud.settings import Settings

    url, asked = recorder
    options = WatchOptions(output=str(tmp_path / "out"),
                           read_policy=ReadPolicy.of(allow=[str(SAMPLE)]))
    run = default_run()
    stream = io.StringIO()
    w = Watcher(options, run, LocalRunner(options, run, Settings.from_env()), JsonLog(stream))
    good = [next((SAMPLE / rel).glob("*.json")) for rel in
            ("sample-optical/sample-optical-01", "sample-sar/sample-sar-01")]
    sar = json.loads(good[1].read_text())
    hostile: list[tuple[dict[str, Any], str]] = [
        ({"type": "Feature"}, str(good[1])),
        ({**sar, "geometry": {"type": "Polygon", "coordinates": "x"}}, str(good[1])),
        ({**sar, "id": "evil", "properties": "none"}, str(good[1])),
        (sar, f"{url}/elsewhere/item.json"),
        ({**sar, "id": "far", "assets": {"vv": {"href": f"{url}/x.tif",
                                                "type": "image/tiff"}}}, str(good[1])),
    ]
    for doc, href in hostile * 20:
        w.handle_item(doc, href, time.time())
    for p in good:
        w.handle_item(json.loads(p.read_text()), str(p), time.time())
    logs = [json.loads(ln) for ln in stream.getvalue().splitlines()]
    published = [e for e in logs if e["event"] == "pair" and e.get("status") == "published"]
    assert len(published) == 1
    assert asked == []
