"""`sn9cloud run --ray` as the entrypoint of a Ray job submitted through the Jobs SDK (as
`ray job submit` does) to a head started with `ray start`: the batch joins the cluster it
runs in. Its own module: no other cluster of this test session is alive meanwhile."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parents[1]
CATALOG = str(ROOT / "catalogs" / "sample" / "catalog.json")
DEADLINE_S = 180


def _free() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_submitted_as_a_ray_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ray.job_submission import JobStatus, JobSubmissionClient

    temp = Path(tempfile.mkdtemp(prefix="sn9-ray-"))
    token = os.urandom(16).hex()  # `ray start` clusters want one; this test's own
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN", token)
    dash = _free()
    head = subprocess.Popen(
        [str(Path(sys.executable).with_name("ray")), "start", "--head", "--block",
         "--num-cpus=2", f"--port={_free()}", "--include-dashboard=true",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
         f"--dashboard-agent-listen-port={_free()}", f"--temp-dir={temp}",
         "--disable-usage-stats"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    deadline = time.monotonic() + DEADLINE_S
    try:
        out = tmp_path / "out"
        job = client = None
        while job is None and time.monotonic() < deadline:
            try:  # the dashboard, then its job agent, come up a few seconds after start
                client = client or JobSubmissionClient(
                    f"http://127.0.0.1:{dash}", headers={"Authorization": f"Bearer {token}"})
                job = client.submit_job(entrypoint=f"{sys.executable} -m sn9cloud.cli run "
                                                   f"{CATALOG} --out {out} --ray")
            except Exception:
                time.sleep(0.5)
        assert job is not None and client is not None, "the job server never answered"
        status = None
        while time.monotonic() < deadline:
            status = client.get_job_status(job)
            if status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
                break
            time.sleep(0.5)
        logs = client.get_job_logs(job)
        assert status == JobStatus.SUCCEEDED, logs[-3000:]
        assert "3 published" in logs and "Ray cluster: 2 CPUs" in logs
        items = list((out / "sn9cloud-offsets").glob("*/sn9-offsets-*.json"))
        assert len(items) == 3
        assert all(json.loads(p.read_text())["type"] == "Feature" for p in items)
    finally:
        head.terminate()
        head.wait(60)
