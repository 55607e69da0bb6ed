"""Faults in the middle of publishing: S3 answering 503 SlowDown and resetting
connections (a fault-injecting proxy in front of moto), the disk filling up in the scratch
folder, the process killed between asset upload and item write. After each, a rerun
publishes every pair exactly once and nothing published before is lost or changed."""

from __future__ import annotations

import hashlib
import http.client
import http.server
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "catalogs" / "sample"
CATALOG = str(SAMPLE / "catalog.json")


def _items(out: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in out.rglob("sn9-offsets-*.json")}


def _cli(*args: str, env: dict[str, str] | None = None,
         preexec: object = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sn9cloud.cli", *args], env=env,
                          capture_output=True, text=True, timeout=600,
                          preexec_fn=preexec)  # type: ignore[arg-type]


KILL_AFTER_ASSETS = """
import os, sys
from sn9cloud.io.store import LocalStore
from sn9cloud.cli import main
real = LocalStore.put
count = {"items": 0}
def put(self, key, data, **kw):
    if key.endswith(".json") and "/sn9-offsets-" in key and "/report-" not in key:
        count["items"] += 1
        if count["items"] == 2:  # the second pair: its assets are up, its item is not
            os.kill(os.getpid(), 9)
    return real(self, key, data, **kw)
LocalStore.put = put
sys.argv = ["sn9cloud", *sys.argv[1:]]
main()
"""


def test_killed_between_asset_upload_and_item_write(tmp_path: Path) -> None:
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-c", KILL_AFTER_ASSETS, "run", CATALOG, "--out",
                        str(out)], capture_output=True, text=True, timeout=600)
    assert p.returncode == -signal.SIGKILL, p.stderr[-2000:]
    first = _items(out)
    assert len(first) == 1  # one item published; the second's assets orphaned, unlinked
    r = _cli("run", CATALOG, "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "2 published, 1 skipped" in r.stdout
    after = _items(out)
    assert len(after) == 3 and all(after[k] == v for k, v in first.items())
    coll = json.loads((out / "sn9cloud-offsets" / "collection.json").read_text())
    assert len([ln for ln in coll["links"] if ln["rel"] == "item"]) == 3


def test_disk_full_in_the_scratch_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"

    def small_files() -> None:  # writes past 300 kB fail (EFBIG) instead of killing us
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))

    r = _cli("run", CATALOG, "--out", str(out), preexec=small_files)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert "0 published" in r.stdout
    assert _items(out) == {}
    assert not list(out.rglob(".sn9cloud-*"))
    r = _cli("run", CATALOG, "--out", str(out))
    assert r.returncode == 0 and "3 published" in r.stdout, r.stderr[-2000:]


class _Faulty(http.server.BaseHTTPRequestHandler):
    """Forwards to moto; every third PUT answers 503 SlowDown, every fifth loses its
    connection mid-request."""

    upstream = ("127.0.0.1", 0)
    puts = 0
    faults = 0
    lock = threading.Lock()
    protocol_version = "HTTP/1.1"

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
        if self.command == "PUT":
            with _Faulty.lock:
                _Faulty.puts += 1
                n = _Faulty.puts
            if n % 5 == 0:
                _Faulty.faults += 1
                self.close_connection = True
                self.connection.shutdown(2)  # a reset, mid-upload
                return
            if n % 3 == 0:
                _Faulty.faults += 1
                msg = (b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>SlowDown</Code>"
                       b"<Message>Please reduce your request rate.</Message></Error>")
                self.send_response(503)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(msg)))
                self.end_headers()
                self.wfile.write(msg)
                return
        c = http.client.HTTPConnection(*self.upstream, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
        headers["Host"] = f"{self.upstream[0]}:{self.upstream[1]}"
        c.request(self.command, self.path, body=body or None, headers=headers)
        r = c.getresponse()
        data = r.read()
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        c.close()

    do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _forward

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture()
def faulty_s3(s3_endpoint: str) -> Iterator[str]:
    host, port = s3_endpoint.removeprefix("http://").split(":")
    _Faulty.upstream, _Faulty.puts, _Faulty.faults = (host, int(port)), 0, 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Faulty)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_s3_slowdown_and_resets_mid_upload(s3_endpoint: str, faulty_s3: str) -> None:
    env = {**os.environ, "AWS_ENDPOINT_URL": faulty_s3, "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "SN9CLOUD_NET_TIMEOUT": "10"}
    bucket = f"sn9-faults-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    s3.create_bucket(Bucket=bucket)
    out = f"s3://{bucket}/results"
    r = _cli("run", CATALOG, "--out", out, env=env)
    assert _Faulty.faults > 0
    r2 = _cli("run", CATALOG, "--out", out, env=env)  # a rerun finishes what is left
    assert r2.returncode == 0, (r.stdout + r.stderr)[-2000:] + (r2.stdout + r2.stderr)[-2000:]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    items = [k for k in keys if k.endswith(".json") and "/sn9-offsets-" in k
             and "/report-" not in k]
    assert len(items) == 3 == len(set(items))
    coll = json.loads(s3.get_object(Bucket=bucket, Key="results/sn9cloud-offsets/"
                                    "collection.json")["Body"].read())
    assert sorted(ln["href"] for ln in coll["links"] if ln["rel"] == "item") == sorted(
        {ln["href"] for ln in coll["links"] if ln["rel"] == "item"})
    assert len([ln for ln in coll["links"] if ln["rel"] == "item"]) == 3
