"""The STAC API over the results, against the real thing: PostgreSQL + PostGIS + pgstac
started and migrated by deploy/stac-api/stac-api.sh, stac-fastapi-pgstac served by uvicorn,
searched with pystac-client. Inputs are read from the API too."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import free_port
from pystac_client import Client
from runs import result_id

from sn9cloud.cli import main
from sn9cloud.settings import Settings
from sn9cloud.stac.browser import BrowserServer

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "deploy" / "stac-api" / "stac-api.sh"
SAMPLE = ROOT / "catalogs" / "sample"


def test_inputs_from_api_results_into_api(stac_api: dict[str, str], tmp_path: Path) -> None:
    dsn, url = stac_api["PGSTAC_DSN"], stac_api["STAC_API_URL"]
    res = CliRunner().invoke(main, ["ingest", str(SAMPLE / "catalog.json"), "--dsn", dsn])
    assert res.exit_code == 0, res.output
    assert "2 collection(s) and 6 item(s)" in res.output
    out = tmp_path / "out"
    # the input catalog is the API: search narrowed by collection, bbox and time
    res = CliRunner().invoke(main, [
        "run", url, "--out", str(out), "--collection", "sample-optical",
        "--collection", "sample-sar", "--bbox", "37.0,37.0,38.0,38.0",
        "--datetime", "2023-02-01T00:00:00Z/2023-02-28T00:00:00Z", "--pgstac", dsn,
        "--allow", str(SAMPLE)])  # the API's items name local files: the read policy
    assert res.exit_code == 0, res.output
    assert "3 published" in res.output and "ingested 1 collection(s) and 3 item(s)" in res.output

    client = Client.open(url)
    found = list(client.search(collections=["sn9cloud-offsets"], bbox=[37.3, 37.5, 37.5, 37.6],
                               datetime="2023-02-07/2023-02-10").items())
    assert len(found) == 3
    item = found[0]
    assert Path(item.assets["offsets"].href).exists()  # absolute href to the published COG
    derived = [ln.href for ln in item.links if ln.rel == "derived_from"]
    assert len(derived) == 2 and all(h.startswith(url) for h in derived)
    # searches that must not match
    assert not list(client.search(collections=["sn9cloud-offsets"],
                                  bbox=[10.0, 10.0, 11.0, 11.0]).items())
    assert not list(client.search(collections=["sn9cloud-offsets"],
                                  datetime="2020-01-01/2020-12-31").items())


def test_browser_shows_a_result_from_the_api(stac_api: dict[str, str], tmp_path: Path,
                                            render: Callable[[str], str]) -> None:
    """A person's view: STAC Browser pointed at the API (another origin: the API's CORS)
    shows a published result's page."""
    dsn, url = stac_api["PGSTAC_DSN"], stac_api["STAC_API_URL"]
    res = CliRunner().invoke(main, [
        "run", str(SAMPLE / "catalog.json"), "--out", str(tmp_path / "out"), "--pgstac", dsn,
        "--pair", "sample-optical-02", "sample-sar-02"])
    assert res.exit_code == 0, res.output
    item = next(Client.open(url).search(collections=["sn9cloud-offsets"],
                                        ids=[result_id("sample-optical-02",
                                                       "sample-sar-02")]).items())
    with BrowserServer(url, Settings.from_env().browser_dir) as b:
        text = render(f"{b.url}#/collections/sn9cloud-offsets/items/{item.id}")
    assert item.properties["title"] in text
    assert "Offset map (dx, dy)" in text
    assert f"Inliers {item.properties['sn9cloud:report']['inliers']}" in text


def test_results_published_through_transactions(stac_api: dict[str, str],
                                                tmp_path: Path) -> None:
    """`run --stac-api`: results created through the API (no database access); a rerun
    leaves them as they are, a --force rerun replaces the item and keeps the old assets,
    another configuration publishes beside."""
    url = stac_api["STAC_API_URL"]
    out = tmp_path / "out"
    # a collection of its own: the module's API is shared with the other tests
    coll = "sn9cloud-offsets-transactions"
    args = ["run", str(SAMPLE / "catalog.json"), "--out", str(out), "--stac-api", url,
            "--results-collection", coll, "--pair", "sample-optical-03", "sample-sar-03"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "created 1 collection(s) and 1 item(s)" in res.output
    rid = result_id("sample-optical-03", "sample-sar-03")
    client = Client.open(url)
    first = next(client.search(collections=[coll], ids=[rid]).items())
    href = first.assets["offsets"].href
    assert Path(href).is_file() and first.properties["sn9cloud:report"]["model"] == "nonrigid"

    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0 and "1 already there left as they are" in res.output
    again = next(client.search(collections=[coll], ids=[rid]).items())
    assert again.assets["offsets"].href == href

    # the output catalog also gets a second result, which --force does not republish
    res = CliRunner().invoke(main, [*args[:-3], "--pair", "sample-optical-02", "sample-sar-02"])
    assert res.exit_code == 0 and "created 0 collection(s) and 1 item(s)" in res.output, \
        res.output
    rid2 = result_id("sample-optical-02", "sample-sar-02")
    before2 = next(client.search(collections=[coll], ids=[rid2]).items())
    res = CliRunner().invoke(main, [*args, "--force"])
    assert res.exit_code == 0 and "1 item(s) replaced, 1 already there" in res.output, \
        res.output
    after2 = next(client.search(collections=[coll], ids=[rid2]).items())
    assert after2.to_dict() == before2.to_dict()
    new = next(client.search(collections=[coll], ids=[rid]).items())
    assert new.properties["processing:datetime"] != first.properties["processing:datetime"]
    old_report = first.assets["report"].href
    assert new.assets["report"].href != old_report and Path(old_report).is_file()

    # another configuration is another result, published beside the first
    res = CliRunner().invoke(main, [*args, "--model", "affine"])
    assert res.exit_code == 0 and "created 0 collection(s) and 1 item(s)" in res.output, \
        res.output
    rid3 = result_id("sample-optical-03", "sample-sar-03", **{"engine.model": "affine"})
    affine = next(client.search(collections=[coll], ids=[rid3]).items())
    assert affine.properties["sn9cloud:model"] == "affine" != new.properties["sn9cloud:model"]
    assert {it.id for it in client.search(collections=[coll]).items()} == {rid, rid2, rid3}


def test_transactions_refused_or_unreachable_are_clear_errors(tmp_path: Path) -> None:
    """An API without the Transactions extension, or none at all: exit 2 naming it."""
    landing = json.dumps({"type": "Catalog", "id": "ro", "conformsTo": [
        "https://api.stacspec.org/v1.0.0/core"], "links": []}).encode()

    class ReadOnly(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(landing)

        def do_POST(self) -> None:  # must never be reached
            raise AssertionError("a write was sent to a read-only API")

        def log_message(self, *args: object) -> None:
            pass

    published = tmp_path / "cat"
    res = CliRunner().invoke(main, ["run", str(SAMPLE / "catalog.json"), "--out",
                                    str(published), "--pair", "sample-optical-01",
                                    "sample-sar-01"])
    assert res.exit_code == 0, res.output
    server = ThreadingHTTPServer(("127.0.0.1", 0), ReadOnly)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        ro = f"http://127.0.0.1:{server.server_address[1]}"
        res = CliRunner().invoke(main, ["ingest", str(published / "catalog.json"),
                                        "--stac-api", ro])
        assert res.exit_code == 2 and "does not accept transactions" in res.output
        assert ro in res.output
    finally:
        server.shutdown()
        server.server_close()
    res = CliRunner().invoke(main, ["ingest", str(published / "catalog.json"), "--stac-api",
                                    f"http://127.0.0.1:{free_port()}"])
    assert res.exit_code == 2 and "unreachable" in res.output


def test_ingest_without_database_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("PGSTAC_DSN", "PGHOST", "PGUSER"):
        monkeypatch.delenv(k, raising=False)
    res = CliRunner().invoke(main, ["ingest", str(SAMPLE / "catalog.json")])
    assert res.exit_code == 2 and "no database" in res.output
