"""`sn9cloud register` from S3 to S3 through moto's real HTTP server (GDAL reads /vsis3/)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from moto.server import ThreadedMotoServer
from rio_cogeo.cogeo import cog_validate

from sn9cloud.cli import main

SAMPLE = Path(__file__).resolve().parents[1] / "catalogs" / "sample-pair"
BUCKET = "sn9-test-bucket"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture()
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    if BUCKET not in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
        s3.create_bucket(Bucket=BUCKET)
    for name in ("optical.tif", "sar.tif"):
        s3.upload_file(str(SAMPLE / name), BUCKET, f"in/{name}")
    return s3_endpoint


def test_register_s3_to_s3(s3_env: str, tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["register", f"s3://{BUCKET}/in/optical.tif",
                                    f"s3://{BUCKET}/in/sar.tif",
                                    "-o", f"s3://{BUCKET}/out/offsets.tif"])
    assert res.exit_code == 0, res.output
    local = tmp_path / "offsets.tif"
    boto3.client("s3", endpoint_url=s3_env).download_file(BUCKET, "out/offsets.tif",
                                                         str(local))
    assert cog_validate(str(local))[0]
    with rasterio.open(local) as ds, rasterio.open(SAMPLE / "optical.tif") as opt:
        assert (ds.width, ds.height, ds.transform) == (opt.width, opt.height, opt.transform)
        assert np.isfinite(ds.read()).all()


def test_missing_s3_object_is_a_clear_error(s3_env: str) -> None:
    res = CliRunner().invoke(main, ["register", f"s3://{BUCKET}/in/optical.tif",
                                    f"s3://{BUCKET}/in/absent.tif",
                                    "-o", f"s3://{BUCKET}/out/x.tif"])
    assert res.exit_code == 2
    assert "absent.tif" in res.output
    keys = boto3.client("s3", endpoint_url=s3_env).list_objects_v2(Bucket=BUCKET, Prefix="out/x")
    assert keys.get("KeyCount", 0) == 0
