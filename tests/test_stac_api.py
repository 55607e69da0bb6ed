"""The STAC API over the results, against the real thing: PostgreSQL + PostGIS + pgstac
started and migrated by deploy/stac-api/stac-api.sh, stac-fastapi-pgstac served by uvicorn,
searched with pystac-client. Inputs are read from the API too."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from pystac_client import Client

from sn9cloud.cli import main
from sn9cloud.stac.browser import BrowserServer
from sn9cloud.stac.items import result_id

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "deploy" / "stac-api" / "stac-api.sh"
SAMPLE = ROOT / "catalogs" / "sample"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def stac_api() -> Iterator[dict[str, str]]:
    if not Path("/usr/lib/postgresql/15/bin/initdb").exists():
        if os.environ.get("SN9CLOUD_REQUIRE_SERVICES"):
            pytest.fail("PostgreSQL is not installed: run deploy/stac-api/stac-api.sh install")
        pytest.skip("PostgreSQL not installed (deploy/stac-api/stac-api.sh install)")
    # not under pytest's tmp folders: those are private to this user, and the database
    # runs as the `postgres` user when the tests run as root
    state = Path(tempfile.mkdtemp(prefix="sn9cloud-stac-api-"))
    state.chmod(0o755)
    env = {**os.environ, "PYTHON": sys.executable}
    res = subprocess.run([str(SCRIPT), "start", str(state), str(_free_port()),
                          str(_free_port())], env=env, capture_output=True, text=True,
                         timeout=180)
    assert res.returncode == 0, res.stderr + res.stdout
    values = {}
    for line in (state / "env").read_text().splitlines():
        k, _, v = line.removeprefix("export ").partition("=")
        values[k] = subprocess.run(["bash", "-c", f"printf %s {v}"], capture_output=True,
                                   text=True).stdout
    try:
        yield values
    finally:
        subprocess.run([str(SCRIPT), "stop", str(state)], env=env, timeout=60)
        shutil.rmtree(state, ignore_errors=True)


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
        "--datetime", "2023-02-01T00:00:00Z/2023-02-28T00:00:00Z", "--pgstac", dsn])
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
    with BrowserServer(url) as b:
        text = render(f"{b.url}#/collections/sn9cloud-offsets/items/{item.id}")
    assert item.properties["title"] in text
    assert "Offset map (dx, dy)" in text
    assert f"Inliers {item.properties['sn9cloud:report']['inliers']}" in text


def test_ingest_without_database_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("PGSTAC_DSN", "PGHOST", "PGUSER"):
        monkeypatch.delenv(k, raising=False)
    res = CliRunner().invoke(main, ["ingest", str(SAMPLE / "catalog.json")])
    assert res.exit_code == 2 and "no database" in res.output
