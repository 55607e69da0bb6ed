"""Settings of this process, read from the environment once, at the edge (the CLI, a Ray
worker's task, the service), validated, then passed down: no module below reads the
environment itself.

Settings say where things are and how much of the machine to use; they never change a
result (that is the registration configuration's job, `sn9cloud.config`).

| variable | setting | default |
|---|---|---|
| ``SN9CLOUD_THREADS`` | threads for FFTs, OpenCV and GDAL | all cores |
| ``SN9CLOUD_MODELS`` | folder of the detector model items | the package's own |
| ``SN9CLOUD_STAC_BROWSER`` | a built STAC Browser | ``deploy/stac-browser/dist`` of a checkout |
| ``SN9CLOUD_STAC_API_TOKEN`` | bearer token for STAC API transactions | none |
| ``PGSTAC_DSN`` (or ``PGHOST`` + ``PGUSER``...) | the pgstac database | none |
| ``RAY_ADDRESS`` | the Ray cluster to join | none (a local one) |
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from sn9cloud.engine.executor import LocalExecutor
from sn9cloud.errors import SettingsError
from sn9cloud.models import SHIPPED

MAX_THREADS = 1024
#: a checkout's STAC Browser build (deploy/stac-browser/stac-browser.sh build)
CHECKOUT_BROWSER = Path(__file__).resolve().parents[1] / "deploy" / "stac-browser" / "dist"


@dataclass(frozen=True)
class Settings:
    threads: int
    models_dir: Path
    browser_dir: Path | None = None
    stac_api_token: str | None = field(default=None, repr=False)
    pgstac_dsn: str | None = field(default=None, repr=False)  # "" : libpq reads PG* itself
    ray_address: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and check every setting; a bad one is a `SettingsError` naming it."""
        e = os.environ if env is None else env
        return cls(
            threads=_threads(e.get("SN9CLOUD_THREADS")),
            models_dir=_models_dir(e.get("SN9CLOUD_MODELS")),
            browser_dir=_browser_dir(e.get("SN9CLOUD_STAC_BROWSER")),
            stac_api_token=_token(e.get("SN9CLOUD_STAC_API_TOKEN")),
            pgstac_dsn=_dsn(e),
            ray_address=_ray_address(e.get("RAY_ADDRESS")),
        )

    def executor(self) -> LocalExecutor:
        """This process's executor: jobs here, with this many threads each."""
        return LocalExecutor(threads=self.threads)

    def apply(self) -> Settings:
        """Set what is process-global in the libraries (OpenCV's thread pool)."""
        import cv2

        if cv2.getNumThreads() != self.threads:
            cv2.setNumThreads(self.threads)
        return self


def _blank(v: str | None) -> bool:
    return v is None or not v.strip()


def _threads(v: str | None) -> int:
    if _blank(v):
        return os.cpu_count() or 1
    assert v is not None
    try:
        n = int(v.strip())
    except ValueError:
        n = 0
    if not 1 <= n <= MAX_THREADS:
        raise SettingsError(f"SN9CLOUD_THREADS={v!r}: want a whole number of threads from 1 "
                            f"to {MAX_THREADS}")
    return n


def _models_dir(v: str | None) -> Path:
    if _blank(v):
        return SHIPPED
    assert v is not None
    p = Path(v).expanduser()
    if not p.is_dir():
        raise SettingsError(f"SN9CLOUD_MODELS={v!r}: not a folder (it should hold "
                            "<name>-detector.json model items and their weights)")
    return p


def _browser_dir(v: str | None) -> Path | None:
    if _blank(v):
        return CHECKOUT_BROWSER if (CHECKOUT_BROWSER / "index.html").is_file() else None
    assert v is not None
    p = Path(v).expanduser()
    if not (p / "index.html").is_file():
        raise SettingsError(f"SN9CLOUD_STAC_BROWSER={v!r}: not a built STAC Browser (no "
                            "index.html there; build one with deploy/stac-browser/"
                            "stac-browser.sh build)")
    return p


def _token(v: str | None) -> str | None:
    if v is None or v == "":
        return None
    if re.search(r"\s", v) or not v.isprintable():
        # a header value with a newline would be header injection, a space a typo
        raise SettingsError("SN9CLOUD_STAC_API_TOKEN: holds whitespace or control "
                            "characters (the token itself is not shown)")
    return v


def _dsn(e: Mapping[str, str]) -> str | None:
    v = e.get("PGSTAC_DSN")
    if not _blank(v):
        assert v is not None
        s = v.strip()
        if "://" in s:
            if urlsplit(s).scheme not in ("postgresql", "postgres"):
                raise SettingsError("PGSTAC_DSN: a URL DSN must start with postgresql:// "
                                    "(the value is not shown: it may hold a password)")
        elif "=" not in s:
            raise SettingsError("PGSTAC_DSN: neither a postgresql:// URL nor key=value pairs "
                                "(the value is not shown: it may hold a password)")
        return s
    if all(e.get(k) for k in ("PGHOST", "PGUSER")):
        return ""  # libpq reads PG* itself
    return None


_RAY = re.compile(r"^(auto|local|(ray|http|https)://[^\s/]+(:\d+)?/?|[^\s/:]+:\d+)$")


def _ray_address(v: str | None) -> str | None:
    if _blank(v):
        return None
    assert v is not None
    s = v.strip()
    if not _RAY.match(s):
        raise SettingsError(f"RAY_ADDRESS={v!r}: want auto, local, HOST:PORT, "
                            "ray://HOST:PORT or http://HOST:PORT")
    return s
