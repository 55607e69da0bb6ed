"""Two processes publishing into one collection at once lose no item and no link, on a
local folder (lock + rename) and on S3 (conditional writes, moto's real server)."""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

import boto3
import pytest

from sn9cloud.stac.publish import LocalFile, Publisher

PER_PROCESS = 12
BUCKET = "sn9-concurrency"


def _item(item_id: str, files: dict, i: int) -> dict:
    return {"type": "Feature", "stac_version": "1.1.0", "id": item_id,
            "bbox": [i, 0.0, i + 1.0, 1.0],
            "geometry": None, "properties": {"datetime": f"2023-02-{1 + i % 27:02d}T00:00:00Z",
                                             "sn9cloud:algorithm_version": "x"},
            "assets": {k: {"href": f.href} for k, f in files.items()}, "links": []}


def _publish_many(output: str, tag: str, scratch: str, start: mp.Barrier) -> None:
    pub = Publisher(output, "race")
    start.wait()
    for i in range(PER_PROCESS):
        f = Path(scratch) / f"{tag}-{i}.txt"
        f.write_text(f"{tag} {i}")
        item_id = f"{tag}-{i:02d}"
        pub.publish(item_id, [LocalFile("data", str(f), "text/plain")],
                    lambda files, i=i, item_id=item_id: _item(item_id, files, i))


def _race(output: str, tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    start = ctx.Barrier(2)
    procs = [ctx.Process(target=_publish_many, args=(output, tag, str(tmp_path), start))
             for tag in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0


def _expected() -> list[str]:
    return sorted(f"./{t}-{i:02d}/{t}-{i:02d}.json" for t in "ab" for i in range(PER_PROCESS))


def test_local_concurrent_publishers(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _race(str(out), tmp_path)
    coll = json.loads((out / "race" / "collection.json").read_text())
    assert sorted(ln["href"] for ln in coll["links"] if ln["rel"] == "item") == _expected()
    assert coll["extent"]["spatial"]["bbox"][0] == [0.0, 0.0, PER_PROCESS, 1.0]
    for href in _expected():
        assert (out / "race" / href).exists()


def test_s3_concurrent_publishers(s3_env: str, tmp_path: Path) -> None:
    s3 = boto3.client("s3", endpoint_url=s3_env)
    s3.create_bucket(Bucket=BUCKET)
    _race(f"s3://{BUCKET}/results", tmp_path)
    coll = json.loads(s3.get_object(Bucket=BUCKET, Key="results/race/collection.json")
                      ["Body"].read())
    assert sorted(ln["href"] for ln in coll["links"] if ln["rel"] == "item") == _expected()
    cat = json.loads(s3.get_object(Bucket=BUCKET, Key="results/catalog.json")["Body"].read())
    assert [ln["href"] for ln in cat["links"] if ln["rel"] == "child"] == [
        "./race/collection.json"]


def test_missing_bucket_is_a_clear_error(s3_env: str) -> None:
    from sn9cloud.errors import OutputError

    with pytest.raises(OutputError, match="bucket 'no-such-bucket' is not reachable"):
        Publisher("s3://no-such-bucket/x")
