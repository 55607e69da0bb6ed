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
| ``SN9CLOUD_ALLOW`` | more prefixes a catalog may make sn9cloud read (SECURITY.md) | none |
| ``SN9CLOUD_NET_TIMEOUT`` | seconds a network connect or read may take | 30 |
| ``SN9CLOUD_MAX_PIXELS`` | the most pixels an input raster may declare | 2,000,000,000 |
| ``SN9CLOUD_MAX_SCRATCH_GB`` | the most scratch space one offset map may need | 64 |
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
from sn9cloud.io.limits import DEFAULT_MAX_PIXELS, DEFAULT_MAX_SCRATCH_GB, Limits
from sn9cloud.io.net import DEFAULT_TIMEOUT_S, set_timeout
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
    allow: tuple[str, ...] = ()
    net_timeout_s: float = DEFAULT_TIMEOUT_S
    limits: Limits = field(default_factory=Limits)

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
            allow=_allow(e.get("SN9CLOUD_ALLOW")),
            net_timeout_s=_number(e, "SN9CLOUD_NET_TIMEOUT", DEFAULT_TIMEOUT_S, 0.1, 3600),
            limits=Limits(
                max_pixels=int(_number(e, "SN9CLOUD_MAX_PIXELS", DEFAULT_MAX_PIXELS, 1, 1e15)),
                max_scratch_gb=_number(e, "SN9CLOUD_MAX_SCRATCH_GB", DEFAULT_MAX_SCRATCH_GB,
                                       1e-6, 1e6)),
        )

    def executor(self) -> LocalExecutor:
        """This process's executor: jobs here, with this many threads each."""
        return LocalExecutor(threads=self.threads)

    def apply(self) -> Settings:
        """Set what is process-global in the libraries (OpenCV's thread pool, the network
        timeout of GDAL, boto3 and requests)."""
        import cv2

        set_timeout(self.net_timeout_s)
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


def _number(e: Mapping[str, str], name: str, default: float, lo: float, hi: float) -> float:
    v = e.get(name)
    if _blank(v):
        return default
    assert v is not None
    try:
        x = float(v.strip().replace("_", "").replace(",", ""))
    except ValueError:
        x = float("nan")
    if not lo <= x <= hi:  # NaN fails too
        raise SettingsError(f"{name}={v!r}: want a number from {lo:g} to {hi:g}")
    return x


def _allow(v: str | None) -> tuple[str, ...]:
    if _blank(v):
        return ()
    assert v is not None
    from sn9cloud.io.policy import PolicyError, allowed_prefix

    out = []
    for part in re.split(r"[\s,]+", v.strip()):
        try:
            out.append(allowed_prefix(part))
        except PolicyError as e:
            raise SettingsError(f"SN9CLOUD_ALLOW: {e}") from None
    return tuple(out)


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
