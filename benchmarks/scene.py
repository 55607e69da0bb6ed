"""Scene benchmark: a SpaceNet 9-sized optical/SAR scene as COGs in S3 (moto's real
server), registered by `sn9cloud run`, beside the I/O floor measured in the same run.

    python benchmarks/scene.py [--sizes 5000,10000] [--data ../shared/data]

The scene is a mosaic of the real co-registered Sentinel-1/optical 3MOS city tiles
(upsampled 2x, random flips), optical at 0.3 m, SAR resampled to 0.4 m and carrying a
smooth non-rigid geocoding error: the field fitted to the real SpaceNet 9 tie-points of
`03_tiepoints_train_01` (mean about 100 px, varying by about 30 px across the scene),
stretched over the scene. Truth: tie-points of that field in the SpaceNet 9 CSV format,
scored with `sn9cloud score`'s metric. Note the floor: the 3MOS tiles themselves are
co-registered to about a source pixel, 2 scene pixels after upsampling.

Printed per scene size: wall time and peak resident memory of `sn9cloud run` (a separate
process, S3 to S3), the I/O floor (a separate process that reads both inputs whole, window
by window, and writes and uploads an offset COG of the same size with the same settings),
their ratio, and the SpaceNet 9 mean error.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform_geom

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from sn9cloud.io.cog import write_image_cog  # noqa: E402

EPSG = 32637
OPT_PX = 0.3
SAR_PX = 0.4
UPSAMPLE = 2
BUCKET = "sn9-scene"
ORIGIN = (435000.0, 4181000.0)


# ---- the scene ---------------------------------------------------------------------

def sn9_field(size: int):
    """Smooth displacement (optical px) over [0, size]^2, fitted to real SN9 tie-points."""
    from sn9_geometry import load

    from sn9cloud.engine.fit import fit_field

    s = load("03_tiepoints_train_01")
    d = (s.sar_xy - s.opt_xy) / np.array([OPT_PX, -OPT_PX])  # map -> px (y down)
    lo, hi = s.opt_xy.min(0), s.opt_xy.max(0)
    u = (s.opt_xy - lo) / (hi - lo)
    u[:, 1] = 1.0 - u[:, 1]  # northing up -> rows down
    fit = fit_field(u * size, d, "nonrigid", threshold=40.0, gate=None, lambdas=(1.0,))
    return fit.field


def field_lattice(field, w: int, h: int, step: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(ux, uy) full-size float32 maps, evaluated on a lattice and interpolated."""
    gx = np.arange(0, w + step, step, dtype=np.float64)
    gy = np.arange(0, h + step, step, dtype=np.float64)
    xx, yy = np.meshgrid(gx, gy)
    v = field(np.column_stack([xx.ravel(), yy.ravel()])).reshape(len(gy), len(gx), 2)
    big = [cv2.resize(v[..., k].astype(np.float32), (len(gx) * step, len(gy) * step),
                      interpolation=cv2.INTER_LINEAR)[:h, :w] for k in range(2)]
    return big[0], big[1]


def mosaic(data: Path, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    names = sorted(p.name[: -len("_optical.png")]
                   for p in (data / "3mos_tiles").glob("SEN_city_*_optical.png"))
    tile = 256 * UPSAMPLE
    n = -(-size // tile)
    opt = np.zeros((3, n * tile, n * tile), np.uint8)
    sar = np.zeros((n * tile, n * tile), np.uint8)
    for i in range(n):
        for j in range(n):
            name = names[rng.integers(len(names))]
            o = cv2.imread(str(data / "3mos_tiles" / f"{name}_optical.png"))[:, :, ::-1]
            s = cv2.imread(str(data / "3mos_tiles" / f"{name}_sar.png"), cv2.IMREAD_GRAYSCALE)
            o = cv2.resize(o, (tile, tile), interpolation=cv2.INTER_CUBIC)
            s = cv2.resize(s, (tile, tile), interpolation=cv2.INTER_CUBIC)
            if rng.random() < 0.5:
                o, s = o[:, ::-1], s[:, ::-1]
            if rng.random() < 0.5:
                o, s = o[::-1], s[::-1]
            opt[:, i * tile:(i + 1) * tile, j * tile:(j + 1) * tile] = o.transpose(2, 0, 1)
            sar[i * tile:(i + 1) * tile, j * tile:(j + 1) * tile] = s
    return opt[:, :size, :size], sar[:size, :size]


def distorted_sar(sar: np.ndarray, ux: np.ndarray, uy: np.ndarray, ws: int, hs: int,
                  block: int = 1024) -> np.ndarray:
    """SAR on its own 0.4 m grid: the SAR pixel geocoded at optical position m shows the
    ground at g with g + u(g) = m (fixed point)."""
    k = SAR_PX / OPT_PX
    out = np.zeros((hs, ws), np.uint8)
    for r0 in range(0, hs, block):
        rr, cc = np.mgrid[r0:min(hs, r0 + block), 0:ws].astype(np.float32)
        mx, my = (cc + 0.5) * k - 0.5, (rr + 0.5) * k - 0.5
        gx, gy = mx.copy(), my.copy()
        for _ in range(6):
            fx = cv2.remap(ux, gx, gy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            fy = cv2.remap(uy, gx, gy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            gx, gy = mx - fx, my - fy
        out[r0:r0 + block] = cv2.remap(sar, gx, gy, cv2.INTER_AREA if k > 1 else
                                       cv2.INTER_LINEAR, borderValue=0)
    return out


def tiepoints(ux: np.ndarray, uy: np.ndarray, ws: int, hs: int, step: int) -> np.ndarray:
    h, w = ux.shape
    rr, cc = np.mgrid[step // 2:h:step, step // 2:w:step]
    mx = cc + ux[rr, cc]
    my = rr + uy[rr, cc]
    k = OPT_PX / SAR_PX
    sc, sr = np.round((mx + 0.5) * k - 0.5), np.round((my + 0.5) * k - 0.5)
    ok = (sc >= 0) & (sc < ws) & (sr >= 0) & (sr < hs)
    return np.column_stack([sr[ok], sc[ok], rr[ok], cc[ok]]).astype(np.int64)


def item(item_id: str, collection: str, t: str, transform: Affine, w: int, h: int,
         key: str, extra: dict, ext: list[str]) -> dict:
    corners = [transform * c for c in ((0, 0), (w, 0), (w, h), (0, h), (0, 0))]
    g = transform_geom(f"EPSG:{EPSG}", "EPSG:4326", {"type": "Polygon",
                                                     "coordinates": [corners]})
    xs = [p[0] for p in g["coordinates"][0]]
    ys = [p[1] for p in g["coordinates"][0]]
    return {"type": "Feature", "stac_version": "1.1.0", "stac_extensions": ext, "id": item_id,
            "collection": collection, "geometry": g, "bbox": [min(xs), min(ys), max(xs), max(ys)],
            "properties": {"datetime": t, **extra},
            "assets": {key: {"href": f"./{key}.tif", "roles": ["data"],
                             "type": "image/tiff; application=geotiff; profile=cloud-optimized"}},
            "links": []}


def build(data: Path, size: int, workdir: Path, s3) -> dict:
    rng = np.random.default_rng(size)
    opt, sar_co = mosaic(data, size, rng)
    ux, uy = field_lattice(sn9_field(size), size, size)
    ws, hs = round(size * OPT_PX / SAR_PX), round(size * OPT_PX / SAR_PX)
    sar = distorted_sar(sar_co, ux, uy, ws, hs)
    del sar_co
    t_opt = Affine(OPT_PX, 0, ORIGIN[0], 0, -OPT_PX, ORIGIN[1])
    t_sar = Affine(SAR_PX, 0, ORIGIN[0], 0, -SAR_PX, ORIGIN[1])
    tp = tiepoints(ux, uy, ws, hs, step=max(50, size // 60))
    prefix = f"scene{size}"
    crs = CRS.from_epsg(EPSG)
    write_image_cog(workdir / "visual.tif", opt, t_opt, crs, overview_resampling="average")
    write_image_cog(workdir / "sar.tif", sar, t_sar, crs, 0, overview_resampling="average")
    del opt, sar
    items = {
        "optical": item(f"{prefix}-optical", "optical", "2023-02-07T08:00:00Z", t_opt, size,
                        size, "visual", {}, []),
        "sar": item(f"{prefix}-sar", "sar", "2023-02-08T15:00:00Z", t_sar, ws, hs, "vv",
                    {"sar:instrument_mode": "SPOTLIGHT", "sar:frequency_band": "X",
                     "sar:polarizations": ["VV"]},
                    ["https://stac-extensions.github.io/sar/v1.1.0/schema.json"]),
    }
    s3.upload_file(str(workdir / "visual.tif"), BUCKET, f"{prefix}/optical/visual.tif")
    s3.upload_file(str(workdir / "sar.tif"), BUCKET, f"{prefix}/sar/vv.tif")
    for folder, it in (("optical", items["optical"]), ("sar", items["sar"])):
        it["links"] = [{"rel": "root", "href": "../catalog.json"}]
        s3.put_object(Bucket=BUCKET, Key=f"{prefix}/{folder}/item.json",
                      Body=json.dumps(it).encode())
    cat = {"type": "Catalog", "stac_version": "1.1.0", "id": prefix, "description": "scene",
           "links": [{"rel": "root", "href": "./catalog.json"},
                     {"rel": "item", "href": "./optical/item.json"},
                     {"rel": "item", "href": "./sar/item.json"}]}
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}/catalog.json", Body=json.dumps(cat).encode())
    tp_path = workdir / "tiepoints.csv"
    with tp_path.open("w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["sar_row", "sar_col", "optical_row", "optical_col"])
        wr.writerows(tp.tolist())
    return {"prefix": prefix, "tiepoints": str(tp_path), "n_tiepoints": len(tp),
            "georef_only_px": float(np.hypot(ux, uy).mean()),
            "optical": f"s3://{BUCKET}/{prefix}/optical/visual.tif",
            "sar": f"s3://{BUCKET}/{prefix}/sar/vv.tif"}


# ---- the I/O floor (run in its own process) ------------------------------------------

def io_floor(optical: str, sar: str, output: str) -> None:
    """Read both inputs whole, window by window; write and upload an offset COG of the
    optical size with the pipeline's own writer."""
    import shutil

    from sn9cloud.engine.types import Grid
    from sn9cloud.io.cog import build_offsets_cog
    from sn9cloud.io.s3 import client, gdal_env, split_s3
    from sn9cloud.settings import Settings

    total = 0.0
    with rasterio.Env(**gdal_env()):
        for href in (optical, sar):
            with rasterio.open(href) as ds:
                for _, win in ds.block_windows(1):
                    total += float(ds.read(window=win).sum() > 0)
                if href == optical:
                    grid = Grid(ds.width, ds.height, ds.transform, ds.crs)

    def smooth(w: tuple[int, int, int, int]) -> np.ndarray:  # compresses like real offsets
        r0, c0, h, wd = w
        yy, xx = np.mgrid[r0:r0 + h, c0:c0 + wd].astype(np.float32)
        return np.stack([-95.0 + 1e-3 * xx + 2e-4 * yy, 32.0 + 5e-4 * yy])

    tmp = tempfile.mkdtemp()
    try:
        cog = build_offsets_cog(tmp, grid, smooth, executor=Settings.from_env().executor())
        bucket, key = split_s3(output)
        client().upload_file(cog, bucket, key)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---- measuring -------------------------------------------------------------------------

# A fork of this (large) process would carry its resident size into the child's peak
# (Linux keeps ru_maxrss across exec), so a small fresh launcher starts the command and
# reports its peak.
LAUNCHER = """
import resource, subprocess, sys
rc = subprocess.run(sys.argv[1:]).returncode
print("PEAK_KIB", resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(rc)
"""


def measured(cmd: list[str], env: dict) -> tuple[float, float, int, str]:
    """Wall seconds, peak resident memory (GiB) and exit code of ``cmd``, and its output."""
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", LAUNCHER, *cmd], env=env, capture_output=True,
                       text=True)
    dt = time.perf_counter() - t0
    lines = p.stdout.strip().splitlines()
    peak = int(lines[-1].split()[1]) / 2**20 if lines and lines[-1].startswith("PEAK_KIB") \
        else float("nan")
    if p.returncode != 0:
        print(p.stderr[-3000:], file=sys.stderr)
    return dt, peak, p.returncode, "\n".join(lines[:-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--sizes", default="5000,10000")
    ap.add_argument("--io-floor", nargs=3, metavar=("OPTICAL", "SAR", "OUT"), default=None,
                    help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.io_floor:
        io_floor(*args.io_floor)
        return 0

    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise

    from sn9cloud.score import score_offsets

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    env = {**os.environ, "AWS_ENDPOINT_URL": f"http://{host}:{port}",
           "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
           "AWS_DEFAULT_REGION": "us-east-1"}
    os.environ.update({k: env[k] for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
                                           "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")})
    s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"])
    s3.create_bucket(Bucket=BUCKET)
    sn9 = str(Path(sys.executable).with_name("sn9cloud"))
    rows = []
    try:
        for size in [int(s) for s in args.sizes.split(",")]:
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                sc = build(args.data, size, Path(tmp), s3)
                print(f"[{size}] scene built and uploaded in {time.perf_counter() - t0:.0f} s "
                      f"({sc['n_tiepoints']} truth tie-points)", flush=True)
                floor_s, floor_gib, rc, out = measured(
                    [sys.executable, __file__, "--io-floor", sc["optical"], sc["sar"],
                     f"s3://{BUCKET}/{sc['prefix']}/floor/offsets.tif"], env)
                assert rc == 0, out
                run_s, run_gib, rc, out = measured(
                    [sn9, "run", f"s3://{BUCKET}/{sc['prefix']}/catalog.json",
                     "--out", f"s3://{BUCKET}/{sc['prefix']}/results", "--force", "--json"],
                    env)
                if rc != 0:
                    print(out)
                    raise SystemExit(f"sn9cloud run failed on the {size} px scene")
                summary = json.loads(out.strip().splitlines()[-1])
                item_href = summary["outcomes"][0]["item_href"]
                key = item_href.split(f"s3://{BUCKET}/", 1)[1]
                it = json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
                cog = item_href.rsplit("/", 1)[0] + "/" + it["assets"]["offsets"]["href"][2:]
                sco = score_offsets(cog, sc["tiepoints"], sc["optical"], sc["sar"])
                timings = it["properties"]["sn9cloud:report"]["timings_s"]
                rows.append((size, run_s, run_gib, floor_s, floor_gib, sco.mean_px,
                             sc["georef_only_px"], timings))
                print(f"[{size}] run {run_s:.1f} s, {run_gib:.2f} GiB; I/O floor "
                      f"{floor_s:.1f} s, {floor_gib:.2f} GiB; mean error {sco.mean_px:.2f} px "
                      f"(georef only {sc['georef_only_px']:.1f}); stages {timings}",
                      flush=True)
    finally:
        server.stop()
    print(f"\n{'scene px':>9s} {'run s':>7s} {'peak GiB':>8s} {'floor s':>8s} {'x floor':>7s} "
          f"{'floor GiB':>9s} {'mean px':>8s} {'georef px':>9s}")
    for size, rs, rg, fs, fg, err, geo, _ in rows:
        print(f"{size:9d} {rs:7.1f} {rg:8.2f} {fs:8.1f} {rs / fs:7.2f} {fg:9.2f} {err:8.2f} "
              f"{geo:9.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
