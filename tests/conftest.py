"""Shared fixtures: real data from ../shared/data, small rasters built per test, moto's S3
server, and headless Chromium on the built STAC Browser."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # training/

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests reach loopback only: anything else is a bug in the test or the code."""
    real = socket.socket.connect

    def guarded(self: socket.socket, address: object) -> object:
        host = address[0] if isinstance(address, tuple) else str(address)
        if isinstance(host, str) and not (host.startswith("127.") or host in ("::1", "localhost")):
            if self.family in (socket.AF_INET, socket.AF_INET6):
                raise RuntimeError(f"network access blocked in tests: {address}")
        return real(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture(scope="session")
def data() -> Path:
    if not DATA.exists():
        pytest.skip("../shared/data not present")
    return DATA


@pytest.fixture(scope="session")
def schemas() -> Path:
    """The STAC, KubeRay and Ray schemas for offline validation; a test that needs them
    is skipped, never silently passed, where they are absent."""
    path = DATA.parent / "schemas"
    if not path.exists():
        pytest.skip("../shared/schemas not present")
    return path


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's real HTTP server: GDAL's /vsis3/ and boto3 both talk to it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture()
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The standard AWS environment pointed at the moto server."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return s3_endpoint


def _chromium() -> str:
    from sn9cloud.errors import InputError
    from sn9cloud.settings import Settings
    from sn9cloud.stac.browser import check_browser_dir

    exe = shutil.which("chromium")
    try:
        check_browser_dir(Settings.from_env().browser_dir)
        built = None
    except InputError as e:
        built = str(e)
    if exe and built is None:
        return exe
    why = ("chromium is not installed (deploy/stac-browser/stac-browser.sh install)" if not exe
           else built)
    if os.environ.get("SN9CLOUD_REQUIRE_SERVICES"):
        pytest.fail(why)
    pytest.skip(why)


def _render(exe: str, url: str) -> str:
    """The page's text once the app has rendered it. Name resolution stops at loopback:
    the map's basemap tiles and anything else remote stay unreached."""
    with tempfile.TemporaryDirectory() as profile:
        res = subprocess.run(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={profile}",
             "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
             "--virtual-time-budget=15000", "--dump-dom", url],
            capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", res.stdout))


@pytest.fixture()
def render() -> Callable[[str], str]:
    """Renders a page of the built STAC Browser in Debian's headless Chromium and returns
    its text (fails under SN9CLOUD_REQUIRE_SERVICES=1 when either is missing)."""
    exe = _chromium()
    return lambda url: _render(exe, url)


STAC_API_SCRIPT = Path(__file__).resolve().parents[1] / "deploy" / "stac-api" / "stac-api.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
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
    res = subprocess.run([str(STAC_API_SCRIPT), "start", str(state), str(free_port()),
                          str(free_port())], env=env, capture_output=True, text=True,
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
        subprocess.run([str(STAC_API_SCRIPT), "stop", str(state)], env=env, timeout=60)
        shutil.rmtree(state, ignore_errors=True)


