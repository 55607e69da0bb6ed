"""STAC Browser over published results: the server `sn9cloud browse` runs (config, catalog
files, bad input), and the real browser (built by deploy/stac-browser/stac-browser.sh)
rendering a published item in Debian's headless Chromium (`render`, in conftest.py; the
same against the STAC API is in test_stac_api.py)."""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from sn9cloud.cli import main
from sn9cloud.errors import InputError
from sn9cloud.settings import Settings
from sn9cloud.stac.browser import BrowserServer

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "catalogs" / "sample"


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("browse") / "results"
    res = CliRunner().invoke(main, ["run", str(SAMPLE / "catalog.json"), "--out", str(out),
                                    "--pair", "sample-optical-01", "sample-sar-01"])
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture()
def fake_browser(tmp_path: Path) -> Path:
    """A stand-in for the built app, for testing the server alone."""
    d = tmp_path / "dist"
    d.mkdir()
    (d / "index.html").write_text("<html>browser</html>")
    return d


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, b""


def test_server_configures_the_browser_and_serves_the_catalog(published: Path,
                                                             fake_browser: Path) -> None:
    with BrowserServer(str(published), fake_browser) as b:
        status, body = _get(b.url + "config.js")
        assert status == 200
        cfg = json.loads(re.search(rb"= (\{.*\});", body).group(1))
        assert cfg["catalogUrl"] == f"{b.url}catalog/catalog.json"
        assert cfg["historyMode"] == "hash"
        status, body = _get(cfg["catalogUrl"])
        assert status == 200 and json.loads(body)["type"] == "Catalog"
        assert _get(b.url)[1] == b"<html>browser</html>"
        # nothing outside the catalog's folder
        assert _get(b.url + "catalog/../../etc/passwd")[0] == 404
        assert _get(b.url + "catalog/%2e%2e/%2e%2e/etc/passwd")[0] == 404


def test_server_points_the_browser_at_a_stac_api(fake_browser: Path) -> None:
    with BrowserServer("http://127.0.0.1:8089/", fake_browser) as b:
        body = _get(b.url + "config.js")[1]
        assert json.loads(re.search(rb"= (\{.*\});", body).group(1))["catalogUrl"] == \
            "http://127.0.0.1:8089/"
        assert _get(b.url + "catalog/catalog.json")[0] == 404


def test_bad_input(tmp_path: Path, fake_browser: Path, published: Path) -> None:
    with pytest.raises(InputError, match="not built"):
        BrowserServer(str(published), tmp_path / "nowhere")
    with pytest.raises(InputError, match=r"no catalog\.json"):
        BrowserServer(str(tmp_path), fake_browser)
    with pytest.raises(InputError, match=r"s3://bucket/catalog\.json"):
        BrowserServer("s3://bucket/catalog.json", fake_browser)
    (tmp_path / "catalog.json").write_text("{not json")
    with pytest.raises(InputError, match="not readable STAC JSON"):
        BrowserServer(str(tmp_path), fake_browser)
    (tmp_path / "catalog.json").write_text("[1, 2]")
    with pytest.raises(InputError, match="not a STAC catalog"):
        BrowserServer(str(tmp_path), fake_browser)
    res = CliRunner().invoke(main, ["browse", str(tmp_path / "missing"), "--browser-dir",
                                    str(fake_browser)])
    assert res.exit_code == 2 and "no such catalog" in res.output


def test_browser_renders_a_published_item(published: Path,
                                          render: Callable[[str], str]) -> None:
    item_json = next(published.glob("sn9cloud-offsets/*/sn9-offsets-*.json"))
    item = json.loads(item_json.read_text())
    with BrowserServer(str(published), Settings.from_env().browser_dir) as b:
        text = render(b.item_url(item_json))
    assert item["properties"]["title"] in text
    assert "Offset map (dx, dy)" in text and "Registration report" in text
    # the registration report's figures, from the item's properties
    assert f"Inliers {item['properties']['sn9cloud:report']['inliers']}" in text
    assert "EPSG:32637" in text
    # the provenance: both input items
    assert "sample-optical-01" in text and "sample-sar-01" in text
