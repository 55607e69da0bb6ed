"""`sn9cloud register` from S3 to S3 through moto's real HTTP server (GDAL reads /vsis3/)."""

from __future__ import annotations

from pathlib import Path

import boto3
import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rio_cogeo.cogeo import cog_validate

from sn9cloud.cli import main

SAMPLE = Path(__file__).resolve().parents[1] / "catalogs" / "sample-pair"
BUCKET = "sn9-test-bucket"


@pytest.fixture()
def bucket(s3_env: str) -> str:
    s3 = boto3.client("s3", endpoint_url=s3_env)
    if BUCKET not in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
        s3.create_bucket(Bucket=BUCKET)
    for name in ("optical.tif", "sar.tif"):
        s3.upload_file(str(SAMPLE / name), BUCKET, f"in/{name}")
    return s3_env


def test_register_s3_to_s3(bucket: str, tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["register", f"s3://{BUCKET}/in/optical.tif",
                                    f"s3://{BUCKET}/in/sar.tif",
                                    "-o", f"s3://{BUCKET}/out/offsets.tif"])
    assert res.exit_code == 0, res.output
    local = tmp_path / "offsets.tif"
    boto3.client("s3", endpoint_url=bucket).download_file(BUCKET, "out/offsets.tif",
                                                         str(local))
    assert cog_validate(str(local))[0]
    with rasterio.open(local) as ds, rasterio.open(SAMPLE / "optical.tif") as opt:
        assert (ds.width, ds.height, ds.transform) == (opt.width, opt.height, opt.transform)
        assert np.isfinite(ds.read()).all()


def test_missing_s3_object_is_a_clear_error(bucket: str) -> None:
    res = CliRunner().invoke(main, ["register", f"s3://{BUCKET}/in/optical.tif",
                                    f"s3://{BUCKET}/in/absent.tif",
                                    "-o", f"s3://{BUCKET}/out/x.tif"])
    assert res.exit_code == 2
    assert "absent.tif" in res.output
    keys = boto3.client("s3", endpoint_url=bucket).list_objects_v2(Bucket=BUCKET, Prefix="out/x")
    assert keys.get("KeyCount", 0) == 0
