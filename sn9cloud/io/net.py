"""Bounded network reads: one timeout for every client (GDAL, requests, boto3,
pystac-client), redirects followed by hand and only within the read policy, and a size
cap on the documents read into memory.

The timeout is a process-wide setting (``SN9CLOUD_NET_TIMEOUT``), set once by
`Settings.apply`; a host that accepts and never answers costs one timeout, then a
`TransientError` naming it, never a hung run.
"""

from __future__ import annotations

import os
import stat
from typing import Any

from sn9cloud.errors import InputError, TransientError
from sn9cloud.io.policy import ReadPolicy, _show, normalize

DEFAULT_TIMEOUT_S = 30.0
MAX_REDIRECTS = 5
MAX_DOCUMENT_BYTES = 64 << 20  # a STAC document larger than this is not a STAC document

_timeout_s = DEFAULT_TIMEOUT_S


def set_timeout(seconds: float) -> None:
    global _timeout_s
    _timeout_s = float(seconds)


def timeout() -> float:
    return _timeout_s


def gdal_options() -> dict[str, str]:
    """GDAL's connect and read timeouts (a read that stalls for the timeout fails), and
    no retry storms on a host that is down."""
    t = str(max(1, round(_timeout_s)))
    return {"GDAL_HTTP_CONNECTTIMEOUT": t, "GDAL_HTTP_TIMEOUT": t,
            "GDAL_HTTP_LOW_SPEED_TIME": t, "GDAL_HTTP_LOW_SPEED_LIMIT": "1",
            "GDAL_HTTP_MAX_RETRY": "2", "GDAL_HTTP_RETRY_DELAY": "1"}


def boto_config() -> Any:
    from botocore.config import Config  # type: ignore[import-untyped]

    return Config(connect_timeout=_timeout_s, read_timeout=_timeout_s,
                  retries={"max_attempts": 5, "mode": "standard"})


def _session() -> Any:
    import requests

    s = requests.Session()
    s.trust_env = False  # no ~/.netrc credentials sent to whatever a catalog names
    return s


def resolve_redirects(url: str, policy: ReadPolicy | None, method: str = "HEAD") -> str:
    """Where ``url`` ends up, each redirect checked against the policy (for a reader such
    as GDAL that would otherwise follow any redirect itself)."""
    import requests

    current = url
    with _session() as s:
        for _ in range(MAX_REDIRECTS + 1):
            try:
                r = s.request(method, current, allow_redirects=False, timeout=_timeout_s,
                              headers={"Range": "bytes=0-0"} if method == "GET" else None)
            except requests.Timeout as e:
                raise TransientError(f"{_show(current)}: no answer within {_timeout_s:g} s "
                                     "(SN9CLOUD_NET_TIMEOUT)") from e
            except requests.RequestException as e:
                raise TransientError(f"{_show(current)}: {type(e).__name__}") from e
            r.close()
            if r.status_code in (301, 302, 303, 307, 308) and r.headers.get("Location"):
                nxt = normalize(r.headers["Location"], current)
                if policy is not None:
                    policy.check(nxt)
                current = nxt
                continue
            return current
    raise InputError(f"{_show(url)}: more than {MAX_REDIRECTS} redirects")


def read_bytes(location: str, policy: ReadPolicy | None) -> bytes:
    """A document (local, http(s) or s3, already normalized) read whole, at most
    `MAX_DOCUMENT_BYTES`; redirects followed only within ``policy``."""
    if location.startswith("s3://"):
        from sn9cloud.io.s3 import client, split_s3

        bucket, key = split_s3(location)
        s3 = client()
        head = s3.head_object(Bucket=bucket, Key=key)
        if int(head.get("ContentLength", 0)) > MAX_DOCUMENT_BYTES:
            raise InputError(f"{location}: larger than {MAX_DOCUMENT_BYTES >> 20} MB")
        body: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        return body
    if location.startswith(("http://", "https://")):
        return _http_get(location, policy)
    try:
        st = os.stat(location)
    except FileNotFoundError:
        raise InputError(f"{location}: no such file") from None
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{location}: not a regular file")
    if st.st_size > MAX_DOCUMENT_BYTES:
        raise InputError(f"{location}: larger than {MAX_DOCUMENT_BYTES >> 20} MB")
    with open(location, "rb") as f:
        return f.read(MAX_DOCUMENT_BYTES + 1)


def _http_get(url: str, policy: ReadPolicy | None) -> bytes:
    import requests

    current = url
    with _session() as s:
        for _ in range(MAX_REDIRECTS + 1):
            try:
                r = s.get(current, allow_redirects=False, timeout=_timeout_s, stream=True)
                if r.status_code in (301, 302, 303, 307, 308) and r.headers.get("Location"):
                    r.close()
                    nxt = normalize(r.headers["Location"], current)
                    if policy is not None:
                        policy.check(nxt)
                    current = nxt
                    continue
                if r.status_code >= 500 or r.status_code == 429:
                    raise TransientError(f"{_show(current)}: HTTP {r.status_code}")
                if r.status_code >= 400:
                    raise InputError(f"{_show(current)}: HTTP {r.status_code}")
                data = bytearray()
                for chunk in r.iter_content(1 << 16):
                    data.extend(chunk)
                    if len(data) > MAX_DOCUMENT_BYTES:
                        raise InputError(f"{_show(current)}: larger than "
                                         f"{MAX_DOCUMENT_BYTES >> 20} MB")
                return bytes(data)
            except requests.Timeout as e:
                raise TransientError(f"{_show(current)}: no answer within {_timeout_s:g} s "
                                     "(SN9CLOUD_NET_TIMEOUT)") from e
            except requests.RequestException as e:
                raise TransientError(f"{_show(current)}: {type(e).__name__}") from e
    raise InputError(f"{_show(url)}: more than {MAX_REDIRECTS} redirects")
