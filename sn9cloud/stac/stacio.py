"""pystac I/O that reads ``s3://`` hrefs through boto3 (the standard AWS environment,
``AWS_ENDPOINT_URL`` included) besides local files and HTTP."""

from __future__ import annotations

from typing import Any

import pystac
from pystac.stac_io import DefaultStacIO

from sn9cloud.io.s3 import client, is_s3, split_s3


class S3StacIO(DefaultStacIO):
    def read_text(self, source: Any, *args: Any, **kwargs: Any) -> str:
        href = str(source)
        if is_s3(href):
            bucket, key = split_s3(href)
            body: bytes = client().get_object(Bucket=bucket, Key=key)["Body"].read()
            return body.decode("utf-8")
        return str(super().read_text(source, *args, **kwargs))

    def write_text(self, dest: Any, txt: str, *args: Any, **kwargs: Any) -> None:
        href = str(dest)
        if is_s3(href):
            bucket, key = split_s3(href)
            client().put_object(Bucket=bucket, Key=key, Body=txt.encode("utf-8"),
                                ContentType="application/json")
            return
        super().write_text(dest, txt, *args, **kwargs)


def stac_io() -> S3StacIO:
    return S3StacIO()


def install() -> None:
    """Make pystac read s3:// hrefs in this process."""
    pystac.StacIO.set_default(S3StacIO)
