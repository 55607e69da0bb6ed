"""The whole STAC path against moto's real S3 server: the sample catalog and its COGs in a
bucket, `sn9cloud run` from S3 to S3 (GDAL reads the assets through /vsis3/), the result
item validated offline, its checksum matching the uploaded COG, its offsets scored."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import boto3
import pytest
from click.testing import CliRunner

from sn9cloud.cli import main
from sn9cloud.score import score_offsets
from sn9cloud.stac.validate import validate

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "catalogs" / "sample"
BUCKET = "sn9-pipeline"


@pytest.fixture()
def catalog_in_s3(s3_env: str) -> str:
    s3 = boto3.client("s3", endpoint_url=s3_env)
    s3.create_bucket(Bucket=BUCKET)
    for p in SAMPLE.rglob("*"):
        if p.is_file() and p.suffix in (".json", ".tif"):
            s3.upload_file(str(p), BUCKET, f"catalog/{p.relative_to(SAMPLE).as_posix()}")
    return f"s3://{BUCKET}/catalog/catalog.json"


def test_s3_result_item_validates(catalog_in_s3: str, s3_env: str, schemas: Path) -> None:
    """The item as published to S3 (s3:// links to its inputs) against every schema."""
    s3 = boto3.client("s3", endpoint_url=s3_env)
    res = CliRunner().invoke(main, ["run", catalog_in_s3, "--out", f"s3://{BUCKET}/valid",
                                    "--pair", "sample-optical-01", "sample-sar-01"])
    assert res.exit_code == 0, res.output
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="valid/")["Contents"]]
    key = next(k for k in keys if "/sn9-offsets-" in k and k.endswith(".json")
               and "report-" not in k)
    item = json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    assert len(validate(item, schemas)) == 5  # core + projection, raster, file, processing


def test_run_s3_to_s3(catalog_in_s3: str, s3_env: str) -> None:
    s3 = boto3.client("s3", endpoint_url=s3_env)
    out = f"s3://{BUCKET}/results"
    res = CliRunner().invoke(main, ["run", catalog_in_s3, "--out", out,
                                    "--pair", "sample-optical-02", "sample-sar-02"])
    assert res.exit_code == 0, res.output
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="results/")["Contents"]]
    item_key = next(k for k in keys if k.endswith(".json") and "/sn9-offsets-" in k
                    and "report-" not in k)
    item = json.loads(s3.get_object(Bucket=BUCKET, Key=item_key)["Body"].read())
    prefix = item_key.rsplit("/", 1)[0]
    asset = item["assets"]["offsets"]
    cog_key = f"{prefix}/{asset['href'].removeprefix('./')}"
    body = s3.get_object(Bucket=BUCKET, Key=cog_key)["Body"].read()
    assert asset["file:checksum"] == "1220" + hashlib.sha256(body).hexdigest()
    assert asset["file:size"] == len(body)
    derived = [ln["href"] for ln in item["links"] if ln["rel"] == "derived_from"]
    assert derived == [f"s3://{BUCKET}/catalog/sample-optical/sample-optical-02/"
                       "sample-optical-02.json",
                       f"s3://{BUCKET}/catalog/sample-sar/sample-sar-02/sample-sar-02.json"]
    # scored straight from S3 through GDAL
    s = score_offsets(f"s3://{BUCKET}/{cog_key}", str(SAMPLE / "truth" / "sample-sar-02.csv"),
                      f"s3://{BUCKET}/catalog/sample-optical/sample-optical-02/visual.tif",
                      f"s3://{BUCKET}/catalog/sample-sar/sample-sar-02/vv.tif")
    assert s.mean_px < 3.0
    coll = json.loads(s3.get_object(Bucket=BUCKET, Key="results/sn9cloud-offsets/"
                                    "collection.json")["Body"].read())
    assert [ln["href"] for ln in coll["links"] if ln["rel"] == "item"] == [
        f"./{item['id']}/{item['id']}.json"]
    # a rerun publishes nothing new
    res = CliRunner().invoke(main, ["run", catalog_in_s3, "--out", out,
                                    "--pair", "sample-optical-02", "sample-sar-02"])
    assert res.exit_code == 0 and "0 published, 1 skipped" in res.output


def test_missing_output_bucket(catalog_in_s3: str) -> None:
    res = CliRunner().invoke(main, ["run", catalog_in_s3, "--out", "s3://no-such-bucket/r"])
    assert res.exit_code == 2
    assert "bucket 'no-such-bucket' is not reachable" in res.output


def test_missing_catalog_object(s3_env: str) -> None:
    boto3.client("s3", endpoint_url=s3_env).create_bucket(Bucket="sn9-empty")
    res = CliRunner().invoke(main, ["run", "s3://sn9-empty/catalog.json", "--out",
                                    "s3://sn9-empty/r"])
    assert res.exit_code == 2
    assert "catalog s3://sn9-empty/catalog.json: cannot be read" in res.output


@pytest.fixture()
def strict_s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A second moto server that enforces authentication: unknown keys are refused."""
    from sn9cloud.io.moto_server import moto_server

    with moto_server({"INITIAL_NO_AUTH_ACTION_COUNT": "0"}) as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUNKNOWNKEY000000")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        yield url


def test_refused_credentials(strict_s3: str, tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["run", "s3://sn9-any/catalog.json", "--out",
                                    str(tmp_path / "o")])
    assert res.exit_code == 2
    assert "catalog s3://sn9-any/catalog.json: cannot be read" in res.output
    assert "InvalidAccessKeyId" in res.output or "Forbidden" in res.output
    res = CliRunner().invoke(main, ["run", str(SAMPLE / "catalog.json"), "--out",
                                    "s3://sn9-any/results"])
    assert res.exit_code == 2
    assert "bucket 'sn9-any' is not reachable" in res.output
    assert not (tmp_path / "o").exists()
