"""Batch benchmark: a batch of real pairs through S3 (moto's real server), in-process and
on local Ray clusters, in one run.

    python benchmarks/batch.py [--pairs 24] [--data ../shared/data]

The pairs are real 3MOS city tiles (256 px, one known distortion each) as COGs with STAC
items in S3. Printed: pairs per minute of the in-process pipeline (one process, its FFTs
and GDAL on both cores), of Ray with 1 and with 2 single-threaded workers, and of a
simulated 2-node cluster (one worker each); and the Ray scheduling overhead of a window
job (round trip minus compute) beside that job's compute.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform_geom

from sn9cloud.distortion import distort_sar, random_distortion
from sn9cloud.io.cog import write_image_cog
from sn9cloud.prepared import PreparedRun
from sn9cloud.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "sn9-batch"
JOB_POINTS = 0
EPSG = 32637


def _item(iid: str, transform: Affine, w: int, h: int, key: str, sar: bool) -> dict:
    corners = [transform * c for c in ((0, 0), (w, 0), (w, h), (0, h), (0, 0))]
    g = transform_geom(f"EPSG:{EPSG}", "EPSG:4326", {"type": "Polygon", "coordinates": [corners]})
    xs, ys = [p[0] for p in g["coordinates"][0]], [p[1] for p in g["coordinates"][0]]
    props = {"datetime": "2023-02-08T10:00:00Z"}
    if sar:
        props.update({"sar:instrument_mode": "IW", "sar:frequency_band": "C",
                      "sar:polarizations": ["VV"]})
    return {"type": "Feature", "stac_version": "1.1.0", "id": iid, "geometry": g,
            "stac_extensions": [], "bbox": [min(xs), min(ys), max(xs), max(ys)],
            "properties": props, "links": [],
            "assets": {key: {"href": f"./{key}.tif", "roles": ["data"],
                             "type": "image/tiff; application=geotiff"}}}


def pair_files(data: Path, n: int, tmp: Path, first: int = 0):
    """Yield (item id, is SAR, local COG path, asset key, item dict) for n pairs, each at
    its own place: real 3MOS city tiles, the SAR with a known distortion."""
    names = sorted(p.name[: -len("_optical.png")]
                   for p in (data / "3mos_tiles").glob("*_city_*_optical.png"))
    rng = np.random.default_rng(7)
    for i in range(first, first + n):
        name = names[i % len(names)]
        o = cv2.imread(str(data / "3mos_tiles" / f"{name}_optical.png"))[:, :, ::-1]
        s = cv2.imread(str(data / "3mos_tiles" / f"{name}_sar.png"), cv2.IMREAD_GRAYSCALE)
        h, w = s.shape
        d = random_distortion(rng, w, h, nonrigid=0.05 if i % 2 else 0.0)
        sd, valid = distort_sar(s.astype(np.float32), d)
        su = np.clip(np.round(sd), 1, 255).astype(np.uint8)
        su[~valid] = 0
        t = Affine(10.0, 0, 300000.0 + 5000.0 * i, 0, -10.0, 4100000.0)
        for role, arr, tr, nod, key in (
            ("optical", np.ascontiguousarray(o.transpose(2, 0, 1)), t, None, "visual"),
            ("sar", su[None], t * d.sar_pixel_affine(), 0, "vv"),
        ):
            iid = f"pair{i:02d}-{role}"
            write_image_cog(tmp / f"{iid}.tif", arr, tr, CRS.from_epsg(EPSG), nod)
            yield iid, role == "sar", tmp / f"{iid}.tif", key, _item(
                iid, tr, arr.shape[2], arr.shape[1], key, role == "sar")


def build_batch(data: Path, n: int, s3, tmp: Path) -> str:
    """n pairs, each at its own place, uploaded with a catalog; returns the catalog href."""
    links = []
    for iid, _, tif, key, it in pair_files(data, n, tmp):
        s3.upload_file(str(tif), BUCKET, f"cat/{iid}/{key}.tif")
        s3.put_object(Bucket=BUCKET, Key=f"cat/{iid}/{iid}.json", Body=json.dumps(it))
        links.append({"rel": "item", "href": f"./{iid}/{iid}.json"})
    cat = {"type": "Catalog", "stac_version": "1.1.0", "id": "batch", "description": "batch",
           "links": [{"rel": "root", "href": "./catalog.json"}, *links]}
    s3.put_object(Bucket=BUCKET, Key="cat/catalog.json", Body=json.dumps(cat))
    return f"s3://{BUCKET}/cat/catalog.json"


def _warm(ray) -> None:
    """Start every worker and import sn9cloud in it before timing."""
    @ray.remote(num_cpus=1)
    def imp() -> int:
        import sn9cloud.pipeline  # noqa: F401

        return os.getpid()

    cpus = int(ray.cluster_resources()["CPU"])
    ray.get([imp.remote() for _ in range(4 * cpus)])


def timed_ray_batch(pairs, options, num_cpus: int | None, two_nodes: bool = False) -> tuple:
    import ray

    from sn9cloud.distributed.batch import run_batch
    from sn9cloud.distributed.cluster import connect, runtime_env

    cluster = None
    if two_nodes:
        from ray.cluster_utils import Cluster

        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
        cluster.add_node(num_cpus=1)
        ray.init(address=cluster.address, runtime_env=runtime_env(), log_to_driver=False)
        cluster.wait_for_nodes()
    else:
        connect(num_cpus=num_cpus)
    try:
        _warm(ray)
        t0 = time.perf_counter()
        outcomes = run_batch(pairs, options, PreparedRun.of(options.config, Settings.from_env()))
        dt = time.perf_counter() - t0
        nodes = len({o.node for o in outcomes})
        overhead = window_job_overhead() if num_cpus == 2 and not two_nodes else None
    finally:
        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
    return dt, outcomes, nodes, overhead


def window_job_overhead() -> tuple[float, float, float]:
    """(compute s, Ray round trip minus that same call's compute s) of one real matching
    window job, and the round trip of an empty task (pure scheduling)."""
    import ray

    from sn9cloud.distributed.executor import _call
    from sn9cloud.engine.features import structure_features, to_intensity
    from sn9cloud.engine.match import grid_points, plan_match_jobs, run_match_job

    data = ROOT.parent / "shared" / "data" / "3mos_tiles"
    o = cv2.imread(str(data / "SEN_city_05_optical.png"), cv2.IMREAD_GRAYSCALE)
    s = cv2.imread(str(data / "SEN_city_05_sar.png"), cv2.IMREAD_GRAYSCALE)
    o = cv2.resize(o, (512, 512))
    s = cv2.resize(s, (512, 512))
    fo = structure_features(to_intensity(o, False))
    fs = structure_features(to_intensity(s, True), presmooth=1.0)
    # one job as the engine plans it (RegistrationOptions.job_tile) on a 512 px level
    from sn9cloud.engine import RegistrationOptions

    pts = grid_points(512, 512, 15, 26)
    jobs, _ = plan_match_jobs(fo, fs, pts, np.zeros_like(pts), 24, 4,
                              tile=RegistrationOptions().job_tile)
    job = jobs[0]
    global JOB_POINTS
    JOB_POINTS = len(job.centres)
    @ray.remote(num_cpus=1)
    def timed(fn, j) -> float:  # the job's compute, timed where it runs
        t = time.perf_counter()
        fn(j)
        return time.perf_counter() - t

    fn_ref = ray.put(run_match_job)
    ray.get(timed.remote(fn_ref, job))
    trips, inside = [], []
    for _ in range(10):
        t = time.perf_counter()
        inside.append(ray.get(timed.remote(fn_ref, job)))  # the job shipped with each call
        trips.append(time.perf_counter() - t)
    empty = []
    noop = ray.put(lambda: None)
    for _ in range(20):
        t = time.perf_counter()
        ray.get(_call.remote(noop))
        empty.append(time.perf_counter() - t)
    c = statistics.median(inside)
    over = statistics.median(t - i for t, i in zip(trips, inside, strict=True))
    return c, over, statistics.median(empty)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--pairs", type=int, default=24)
    args = ap.parse_args(argv)

    import boto3

    from sn9cloud.io.moto_server import moto_server
    from sn9cloud.pipeline import RunOptions, plan_pairs, process_pair
    from sn9cloud.stac.publish import Publisher

    # moto's server in its own process: in this one it would share the GIL with the
    # in-process pipeline and with the Ray driver
    rows = []
    with moto_server() as url:
        os.environ.update({"AWS_ENDPOINT_URL": url,
                           "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                           "AWS_DEFAULT_REGION": "us-east-1"})
        s3 = boto3.client("s3", endpoint_url=url)
        s3.create_bucket(Bucket=BUCKET)
        with tempfile.TemporaryDirectory() as tmp:
            catalog = build_batch(args.data, args.pairs, s3, Path(tmp))
        pairs, problems = plan_pairs(catalog)
        assert len(pairs) == args.pairs and not problems, problems

        opts = RunOptions(output=f"s3://{BUCKET}/out-inprocess")
        pub = Publisher(opts.output)
        settings = Settings.from_env().apply()  # as `sn9cloud run` does
        run, ex = PreparedRun.of(opts.config, settings), settings.executor()
        process_pair(pairs[0], Publisher(f"s3://{BUCKET}/warm"), opts, run, ex)  # warm up
        t0 = time.perf_counter()
        local = [process_pair(p, pub, opts, run, ex) for p in pairs]
        rows.append(("in-process (2 cores, threads)", time.perf_counter() - t0, local, 1))
        overhead = None
        for label, cpus, two in (("Ray, 1 worker", 1, False), ("Ray, 2 workers", 2, False),
                                 ("Ray, 2 nodes x 1 worker", None, True)):
            opts = RunOptions(output=f"s3://{BUCKET}/out-{label.replace(' ', '')}")
            dt, outs, nodes, oh = timed_ray_batch(pairs, opts, cpus, two)
            overhead = overhead or oh
            rows.append((label, dt, outs, nodes))

    print(f"\n{len(pairs)} pairs (256 px real 3MOS city tiles) through S3 (moto)")
    print(f"{'execution':32s} {'seconds':>8s} {'pairs/min':>9s} {'s/pair':>6s} "
          f"{'published':>9s} {'declined':>8s} {'nodes':>5s}")
    for label, dt, outs, nodes in rows:
        ok = sum(o.status == "published" for o in outs)
        per = statistics.mean(o.seconds for o in outs)
        print(f"{label:32s} {dt:8.1f} {60 * len(pairs) / dt:9.1f} {per:6.2f} {ok:9d} "
              f"{len(outs) - ok:8d} {nodes:5d}")
    by = {r[0]: r[1] for r in rows}
    print(f"\nRay 2 workers / 1 worker: {by['Ray, 1 worker'] / by['Ray, 2 workers']:.2f}x; "
          f"Ray 2 workers / in-process: "
          f"{by['in-process (2 cores, threads)'] / by['Ray, 2 workers']:.2f}x")
    if overhead:
        c, o, e = overhead
        print(f"window job (matching, {JOB_POINTS} points): compute {1000 * c:.1f} ms in the "
              f"worker; Ray round trip minus that compute {1000 * o:+.1f} ms "
              f"({100 * o / c:+.1f}%); an empty task's round trip {1000 * e:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
