"""S3 and GDAL settings from the standard AWS environment, applied alike to boto3 and GDAL.

GDAL ignores ``AWS_ENDPOINT_URL``; it wants ``AWS_S3_ENDPOINT`` without a scheme, plus
``AWS_HTTPS`` and path-style addressing for a non-AWS endpoint (moto, MinIO). Settings are
per process, so every process that reads calls `gdal_env()` (Ray workers inherit none).
"""

from __future__ import annotations

import functools
import os
from typing import Any
from urllib.parse import urlparse

#: GDAL options that make remote COG reads fast (no directory listing, merged ranges).
REMOTE_READ_OPTIONS = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.TIF,.TIFF",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MULTIPLEX": "YES",
    "VSI_CACHE": "TRUE",
}


def endpoint_url() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")


def gdal_env() -> dict[str, str]:
    """Options for ``rasterio.Env`` that point GDAL where boto3 points."""
    from sn9cloud.io.net import gdal_options

    opts = {**REMOTE_READ_OPTIONS, **gdal_options()}
    url = endpoint_url()
    if url:
        u = urlparse(url if "://" in url else f"https://{url}")
        opts["AWS_S3_ENDPOINT"] = u.netloc
        opts["AWS_HTTPS"] = "NO" if u.scheme == "http" else "YES"
        opts["AWS_VIRTUAL_HOSTING"] = "FALSE"
    return opts


def is_s3(path: str) -> bool:
    return str(path).startswith("s3://")


def split_s3(path: str) -> tuple[str, str]:
    u = urlparse(path)
    return u.netloc, u.path.lstrip("/")


_CREDENTIAL_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                    "AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_REGION")


def client() -> Any:
    """A boto3 S3 client for the current AWS environment, made once per process and
    environment (making one costs about 40 ms of CPU, once per pair otherwise)."""
    from sn9cloud.io.net import timeout

    return _client(endpoint_url(), tuple(os.environ.get(k) for k in _CREDENTIAL_VARS),
                   timeout())


@functools.lru_cache(maxsize=8)
def _client(endpoint: str | None, _credentials: tuple[Any, ...], _timeout: float) -> Any:
    import boto3

    from sn9cloud.io.net import boto_config

    # connect and read timeouts: a store that stops answering fails the pair, never hangs
    return boto3.client("s3", endpoint_url=endpoint, config=boto_config())
