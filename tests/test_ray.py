"""Ray execution on a real local cluster: the same offset map as in-process, a batch that
survives a killed worker with every item published once, an interrupted batch resumed,
a two-node cluster, and clear errors instead of hangs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from runs import default_run

from sn9cloud.cli import main
from sn9cloud.engine.executor import LocalExecutor
from sn9cloud.engine.offsets import offset_window
from sn9cloud.pipeline import RunOptions, plan_pairs
from sn9cloud.register_pair import register_hrefs

ray = pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "catalogs" / "sample"
CATALOG = str(SAMPLE / "catalog.json")


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    from sn9cloud.distributed.cluster import connect

    connect(num_cpus=2)
    yield
    ray.shutdown()


def _items(out: Path) -> list[dict]:
    return [json.loads(p.read_text())
            for p in sorted((out / "sn9cloud-offsets").glob("*/sn9-offsets-*.json"))]


def test_window_jobs_on_ray_give_the_same_offset_map(cluster: None) -> None:
    from sn9cloud.distributed.executor import RayExecutor

    opt = str(SAMPLE / "sample-optical" / "sample-optical-01" / "visual.tif")
    sar = str(SAMPLE / "sample-sar" / "sample-sar-01" / "vv.tif")
    run = default_run()
    local = register_hrefs(opt, sar, run, executor=LocalExecutor(threads=2))
    remote = register_hrefs(opt, sar, run, executor=RayExecutor())
    assert local.report["levels"] == remote.report["levels"]
    g = local.optical_grid
    a = offset_window(local.result.field, g, local.sar_grid, (0, 0, g.height, g.width))
    b = offset_window(remote.result.field, g, remote.sar_grid, (0, 0, g.height, g.width))
    np.testing.assert_array_equal(a, b)


def test_run_on_ray_publishes_the_same_cogs(cluster: None, tmp_path: Path) -> None:
    outs = {}
    for name, extra in (("local", []), ("ray", ["--ray"]), ("windows", ["--ray", "--ray-windows"])):
        out = tmp_path / name
        res = CliRunner().invoke(main, ["run", CATALOG, "--out", str(out), *extra])
        assert res.exit_code == 0, res.output
        outs[name] = sorted(it["assets"]["offsets"]["file:checksum"] for it in _items(out))
    assert len(outs["local"]) == 3
    assert outs["local"] == outs["ray"] == outs["windows"]


def _pair_task_pids() -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes()
            except OSError:
                continue
            if cmd.startswith(b"ray::_pair_task"):
                pids.append(int(d.name))
    return pids


def test_killed_worker_costs_a_retry_not_the_batch(cluster: None, tmp_path: Path) -> None:
    from sn9cloud.distributed.batch import run_batch

    out = tmp_path / "out"
    pairs, problems = plan_pairs(CATALOG)
    assert not problems
    killed: list[int] = []
    stop = threading.Event()

    def killer() -> None:
        while not stop.is_set() and not killed:
            for pid in _pair_task_pids():
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                break
            time.sleep(0.01)

    t = threading.Thread(target=killer)
    t.start()
    try:
        outcomes = run_batch(pairs, RunOptions(output=str(out)), default_run())
    finally:
        stop.set()
        t.join()
    assert killed, "no pair task was running to kill"
    assert [o.status for o in outcomes] == ["published"] * 3, [o.error for o in outcomes]
    items = _items(out)
    assert len(items) == 3 == len({it["id"] for it in items})
    coll = json.loads((out / "sn9cloud-offsets" / "collection.json").read_text())
    links = [ln["href"] for ln in coll["links"] if ln["rel"] == "item"]
    assert len(links) == 3 == len(set(links))


def test_interrupted_batch_finishes_the_rest(cluster: None, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["run", CATALOG, "--out", str(out), "--ray",
                                    "--pair", "sample-optical-02", "sample-sar-02"])
    assert res.exit_code == 0, res.output
    first = {p.name: p.stat().st_mtime_ns for p in out.rglob("*.tif")}
    res = CliRunner().invoke(main, ["run", CATALOG, "--out", str(out), "--ray"])
    assert res.exit_code == 0, res.output
    assert "2 published, 1 skipped" in res.output
    again = {p.name: p.stat().st_mtime_ns for p in out.rglob("*.tif")}
    assert all(again[k] == v for k, v in first.items())  # nothing redone


def test_gpu_is_detected_not_assumed(cluster: None) -> None:
    from sn9cloud.distributed.cluster import ClusterError, actor_resources, require

    assert ray.cluster_resources().get("GPU", 0) == 0
    assert actor_resources() == {"num_cpus": 1}  # no GPU request on a CPU-only cluster
    t0 = time.perf_counter()
    with pytest.raises(ClusterError, match="no node of the Ray cluster has GPU=1"):
        require({"GPU": 1})
    assert time.perf_counter() - t0 < 5


def test_unreachable_ray_address_fails_fast(tmp_path: Path) -> None:
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "sn9cloud.cli", "run", CATALOG, "--out",
                          str(tmp_path / "o"), "--ray", "127.0.0.1:9"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert "Ray cluster 127.0.0.1:9: not reachable" in res.stderr
    assert time.perf_counter() - t0 < 20
    assert not (tmp_path / "o").exists()


TWO_NODES = """
import json, sys
from ray.cluster_utils import Cluster
import ray
from sn9cloud.distributed.batch import run_batch
from sn9cloud.config import RegistrationConfig
from sn9cloud.pipeline import RunOptions, plan_pairs
from sn9cloud.prepared import PreparedRun
from sn9cloud.settings import Settings

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
cluster.add_node(num_cpus=1)
ray.init(address=cluster.address)
cluster.wait_for_nodes()
pairs, _ = plan_pairs(sys.argv[1])
outcomes = run_batch(pairs, RunOptions(output=sys.argv[2]),
                     PreparedRun.of(RegistrationConfig(), Settings.from_env()))
print(json.dumps([[o.status, o.node] for o in outcomes]))
ray.shutdown()
cluster.shutdown()
"""


def test_two_node_cluster_spreads_the_batch(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-c", TWO_NODES, CATALOG, str(tmp_path / "o")],
                         capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = json.loads(res.stdout.strip().splitlines()[-1])
    assert [s for s, _ in rows] == ["published"] * 3
    assert len({n for _, n in rows}) == 2  # both nodes ran pairs


def test_workers_get_the_s3_settings(cluster: None, s3_env: str) -> None:
    """The cluster was joined before the S3 endpoint was set: the pair tasks still reach it
    (runtime environment of the moment), GDAL included."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_env)
    s3.create_bucket(Bucket="sn9-ray")
    for p in SAMPLE.rglob("*"):
        if p.is_file() and p.suffix in (".json", ".tif"):
            s3.upload_file(str(p), "sn9-ray", f"cat/{p.relative_to(SAMPLE).as_posix()}")
    res = CliRunner().invoke(main, ["run", "s3://sn9-ray/cat/catalog.json", "--out",
                                    "s3://sn9-ray/out", "--ray"])
    assert res.exit_code == 0, res.output
    assert "3 published" in res.output
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="sn9-ray", Prefix="out/")["Contents"]]
    assert sum(k.endswith(".tif") for k in keys) == 3



def test_detector_actors_load_once_on_the_cpu_here(cluster: None) -> None:
    """Detector actors take no GPU on a CPU-only cluster (they would wait forever) and give
    the same peaks as the detector in this process."""
    from sn9cloud.distributed.actors import ActorPoolDetector
    from sn9cloud.models.detector import load_detector

    ref = default_run(matcher="keypoints").resources.detector
    assert ref is not None
    pool = ActorPoolDetector(ref, actors=2, batch=4)
    try:
        assert pool.devices == ["cpu", "cpu"]
        rng = np.random.default_rng(0)
        a = rng.random((6, pool.tile, pool.tile), dtype=np.float32)
        b = rng.random((6, pool.tile, pool.tile), dtype=np.float32)
        xy, conf = pool.locate(a, b)
        xy0, conf0 = load_detector("sar").locate(a, b)
        np.testing.assert_allclose(xy, xy0, atol=1e-4)
        np.testing.assert_allclose(conf, conf0, atol=1e-5)
    finally:
        pool.close()


def test_ray_imap_yields_every_job_in_order(cluster: None) -> None:
    from sn9cloud.distributed.executor import RayExecutor

    ex = RayExecutor(max_in_flight=3)
    for n in (0, 2, 3, 4, 11):
        # a builtin: functions of a test module do not import in a worker
        assert list(ex.imap(pow, [(i, 3) for i in range(n)], lookahead=3)) == [
            i**3 for i in range(n)]


def test_the_watcher_runs_its_pairs_as_ray_tasks(cluster: None, tmp_path: Path) -> None:
    """`sn9cloud watch --ray`: the pair a new item completes runs as a task on the cluster,
    under the watcher's lease, and is published once."""
    import io

    from sn9cloud.io.policy import ReadPolicy
    from sn9cloud.service.logs import JsonLog
    from sn9cloud.service.watcher import RayRunner, Watcher, WatchOptions

    options = WatchOptions(output=str(tmp_path / "out"),
                           read_policy=ReadPolicy.of(allow=[str(SAMPLE)]))
    run = default_run()
    stream = io.StringIO()
    w = Watcher(options, run, RayRunner(options, run), JsonLog(stream))
    for rel in ("sample-optical/sample-optical-02", "sample-sar/sample-sar-02"):
        p = next((SAMPLE / rel).glob("*.json"))
        assert w.handle_item(json.loads(p.read_text()), str(p)) is None
    logs = [json.loads(ln) for ln in stream.getvalue().splitlines()]
    done = [e for e in logs if e["event"] == "pair" and e["status"] == "published"]
    assert [e["item_id"] for e in done] == [run.result_id("sample-optical-02",
                                                          "sample-sar-02")]
    assert len(_items(tmp_path / "out")) == 1
