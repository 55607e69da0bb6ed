"""Object storage for publishing: a local folder or an S3 prefix, behind one small API.

Publishing needs three things both backends can give: write-once objects (create only if
absent), compare-and-swap updates (replace only if unchanged since read) and atomic
visibility (a reader sees the old object or the new one, never half). S3 gives them with
conditional writes (``If-None-Match: *``, ``If-Match: <etag>``); a local folder gives
them with an exclusive lock around check-and-rename.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sn9cloud.errors import OutputError
from sn9cloud.io.s3 import client, is_s3, split_s3


class PreconditionFailed(Exception):
    """The object changed (or exists) since it was read: re-read and retry."""


@dataclass(frozen=True)
class Blob:
    data: bytes
    etag: str


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


class Store:
    """Objects under ``root`` addressed by relative keys."""

    root: str

    def get(self, key: str) -> Blob | None:
        raise NotImplementedError

    def put(self, key: str, data: bytes, *, if_none_match: bool = False,
            if_match: str | None = None, content_type: str | None = None) -> None:
        raise NotImplementedError

    def put_file(self, key: str, local_path: str, content_type: str | None = None) -> None:
        raise NotImplementedError

    def delete(self, key: str) -> None:
        raise NotImplementedError

    def exists(self, key: str) -> bool:
        return self.get(key) is not None

    def list_keys(self, prefix: str) -> list[str]:
        """Keys under ``prefix`` (a folder-like prefix ending in /), sorted."""
        raise NotImplementedError

    def href(self, key: str) -> str:
        return join(self.root, key)


class LocalStore(Store):
    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        try:
            os.makedirs(self.root, exist_ok=True)
        except OSError as e:
            raise OutputError(f"output {root}: cannot create folder ({e.strerror})") from e
        if not os.access(self.root, os.W_OK):
            raise OutputError(f"output {root}: folder is not writable")

    def _path(self, key: str) -> str:
        return os.path.join(self.root, *key.split("/"))

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(os.path.join(self.root, ".sn9cloud.lock"), "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def get(self, key: str) -> Blob | None:
        try:
            with open(self._path(key), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        return Blob(data, hashlib.md5(data).hexdigest())

    def _write_atomic(self, key: str, data: bytes | None, src: str | None = None) -> None:
        path = self._path(key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".sn9cloud-", dir=os.path.dirname(path))
        try:
            with os.fdopen(fd, "wb") as f:
                if src is not None:
                    with open(src, "rb") as s:
                        while chunk := s.read(1 << 20):
                            f.write(chunk)
                else:
                    f.write(data or b"")
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def put(self, key: str, data: bytes, *, if_none_match: bool = False,
            if_match: str | None = None, content_type: str | None = None) -> None:
        if not if_none_match and if_match is None:
            self._write_atomic(key, data)
            return
        with self._locked():
            cur = self.get(key)
            if if_none_match and cur is not None:
                raise PreconditionFailed(key)
            if if_match is not None and (cur is None or cur.etag != if_match):
                raise PreconditionFailed(key)
            self._write_atomic(key, data)

    def put_file(self, key: str, local_path: str, content_type: str | None = None) -> None:
        self._write_atomic(key, None, src=local_path)

    def exists(self, key: str) -> bool:
        return os.path.exists(self._path(key))

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(key))

    def list_keys(self, prefix: str) -> list[str]:
        base = self._path(prefix.rstrip("/"))
        out = []
        for folder, _, files in os.walk(base):
            for f in files:
                if f.startswith(".sn9cloud-"):  # a write in progress
                    continue
                rel = os.path.relpath(os.path.join(folder, f), self.root)
                out.append(rel.replace(os.sep, "/"))
        return sorted(out)


class S3Store(Store):
    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/")
        self.bucket, self.prefix = split_s3(self.root)
        if not self.bucket:
            raise OutputError(f"output {root}: not an s3://bucket/prefix")
        self._s3 = client()
        try:
            self._s3.head_bucket(Bucket=self.bucket)
        except Exception as e:
            raise OutputError(f"output {root}: bucket {self.bucket!r} is not reachable "
                              f"({_s3_reason(e)})") from e

    def _key(self, key: str) -> str:
        return "/".join(p for p in (self.prefix.strip("/"), key.strip("/")) if p)

    def get(self, key: str) -> Blob | None:
        try:
            r = self._s3.get_object(Bucket=self.bucket, Key=self._key(key))
        except self._s3.exceptions.NoSuchKey:
            return None
        return Blob(r["Body"].read(), r["ETag"].strip('"'))

    def put(self, key: str, data: bytes, *, if_none_match: bool = False,
            if_match: str | None = None, content_type: str | None = None) -> None:
        kw: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(key), "Body": data}
        if content_type:
            kw["ContentType"] = content_type
        if if_none_match:
            kw["IfNoneMatch"] = "*"
        if if_match is not None:
            kw["IfMatch"] = if_match
        try:
            self._s3.put_object(**kw)
        except self._s3.exceptions.ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if code in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                raise PreconditionFailed(key) from e
            raise OutputError(f"output {self.href(key)}: {_s3_reason(e)}") from e

    def exists(self, key: str) -> bool:
        try:
            self._s3.head_object(Bucket=self.bucket, Key=self._key(key))
        except self._s3.exceptions.ClientError:
            return False
        return True

    def delete(self, key: str) -> None:
        self._s3.delete_object(Bucket=self.bucket, Key=self._key(key))

    def list_keys(self, prefix: str) -> list[str]:
        full = self._key(prefix).rstrip("/") + "/"
        strip = len(self.prefix.strip("/")) + 1 if self.prefix.strip("/") else 0
        out = []
        for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                      Prefix=full):
            out += [o["Key"][strip:] for o in page.get("Contents", [])]
        return sorted(out)

    def put_file(self, key: str, local_path: str, content_type: str | None = None) -> None:
        extra = {"ContentType": content_type} if content_type else None
        try:
            self._s3.upload_file(local_path, self.bucket, self._key(key), ExtraArgs=extra)
        except Exception as e:
            raise OutputError(f"output {self.href(key)}: {_s3_reason(e)}") from e


def _s3_reason(e: Exception) -> str:
    resp = getattr(e, "response", None)
    if isinstance(resp, dict) and resp.get("Error"):
        err = resp["Error"]
        return f"{err.get('Code', '')} {err.get('Message', '')}".strip()
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def open_store(root: str) -> Store:
    return S3Store(root) if is_s3(root) else LocalStore(root)
