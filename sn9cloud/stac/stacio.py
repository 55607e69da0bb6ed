"""pystac I/O for untrusted catalogs: every read goes through the read policy (when one is
given) and the bounded readers of `sn9cloud.io.net` (timeouts, checked redirects, a size
cap); ``s3://`` is read through boto3 (the standard AWS environment, ``AWS_ENDPOINT_URL``
included)."""

from __future__ import annotations

from typing import Any

from pystac.stac_io import DefaultStacIO

from sn9cloud.io.net import read_bytes
from sn9cloud.io.policy import ReadPolicy, normalize
from sn9cloud.io.s3 import client, is_s3, split_s3


class S3StacIO(DefaultStacIO):
    def __init__(self, policy: ReadPolicy | None = None) -> None:
        super().__init__()
        self.policy = policy

    def read_text(self, source: Any, *args: Any, **kwargs: Any) -> str:
        href = str(source)
        location = self.policy.check(href) if self.policy else normalize(href)
        data = read_bytes(location, self.policy)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{href}: not UTF-8 text") from e

    def write_text(self, dest: Any, txt: str, *args: Any, **kwargs: Any) -> None:
        href = str(dest)
        if is_s3(href):
            bucket, key = split_s3(href)
            client().put_object(Bucket=bucket, Key=key, Body=txt.encode("utf-8"),
                                ContentType="application/json")
            return
        super().write_text(dest, txt, *args, **kwargs)


def stac_io(policy: ReadPolicy | None = None) -> S3StacIO:
    return S3StacIO(policy)
