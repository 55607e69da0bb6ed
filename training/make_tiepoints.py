"""Training scenes in the SpaceNet 9 format without SpaceNet 9 images.

    python training/make_tiepoints.py --out training-data [--data ../shared/data] [--per-pair 3]

From each real co-registered 3MOS city pair (Apache-2.0): a known random geocoding error
(shift, scale, on every other scene a smooth warp) applied to the SAR, both written as
GeoTIFFs with their geotransforms, and keypoints on the optical image's road crossings and
corners (Shi-Tomasi) mapped through the distortion to SAR pixels, written as
``sar_row,sar_col,optical_row,optical_col``. ``manifest.json`` lists the scenes with an
80/20 train/validation split by tile pair (no tile in both), so the same training command
takes SpaceNet 9 scenes when a user has them.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import cv2
import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS

from sn9cloud.distortion import distort_sar, random_distortion

ROOT = Path(__file__).resolve().parents[1]
EPSG = 32637


def keypoints(optical_rgb: np.ndarray, n: int = 40) -> np.ndarray:
    """(N, 2) x, y: strong corners (road crossings, building corners), spread out."""
    g = cv2.cvtColor(optical_rgb, cv2.COLOR_RGB2GRAY)
    pts = cv2.goodFeaturesToTrack(g, maxCorners=n, qualityLevel=0.02, minDistance=12,
                                  blockSize=7)
    return np.zeros((0, 2)) if pts is None else pts.reshape(-1, 2).astype(np.float64)


def sar_pixels(d, xy: np.ndarray) -> np.ndarray:
    """SAR pixel (x, y, centre indices) showing the feature at optical pixel centre xy."""
    ux, uy = d.displacement(xy[:, 0], xy[:, 1])
    a = ~d.sar_pixel_affine()
    sx = a.a * (xy[:, 0] + ux + 0.5) + a.c - 0.5
    sy = a.e * (xy[:, 1] + uy + 0.5) + a.f - 0.5
    return np.column_stack([sx, sy])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--per-pair", type=int, default=3, help="distorted scenes per tile pair")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--limit", type=int, default=None, help="only the first N tile pairs")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    names = sorted(p.name[: -len("_optical.png")]
                   for p in (args.data / "3mos_tiles").glob("*_city_*_optical.png"))
    names = names[: args.limit] if args.limit else names
    val_names = set(names[4::5])  # every fifth pair held out: 80/20 by tile pair
    args.out.mkdir(parents=True, exist_ok=True)
    scenes = []
    for name in names:
        o = cv2.imread(str(args.data / "3mos_tiles" / f"{name}_optical.png"))[:, :, ::-1]
        s = cv2.imread(str(args.data / "3mos_tiles" / f"{name}_sar.png"), cv2.IMREAD_GRAYSCALE)
        h, w = s.shape
        kp = keypoints(np.ascontiguousarray(o))
        for k in range(args.per_pair):
            d = random_distortion(rng, w, h, nonrigid=0.05 if k % 2 else 0.0)
            sd, _ = distort_sar(s.astype(np.float32), d)
            sp = sar_pixels(d, kp)
            ok = (sp[:, 0] >= 0) & (sp[:, 0] <= w - 1) & (sp[:, 1] >= 0) & (sp[:, 1] <= h - 1)
            scene = f"{name}_{k}"
            t = Affine(10.0, 0, 400000.0, 0, -10.0, 4100000.0)
            paths = {"optical": args.out / f"{scene}_optical.tif",
                     "sar": args.out / f"{scene}_sar.tif",
                     "tiepoints": args.out / f"{scene}_tiepoints.csv"}
            for key, arr, tr in (("optical", np.ascontiguousarray(o.transpose(2, 0, 1)), t),
                                 ("sar", np.clip(np.round(sd), 0, 255).astype(np.uint8)[None],
                                  t * d.sar_pixel_affine())):
                with rasterio.open(paths[key], "w", driver="GTiff", width=w, height=h,
                                   count=arr.shape[0], dtype="uint8", crs=CRS.from_epsg(EPSG),
                                   transform=tr, nodata=0 if key == "sar" else None) as ds:
                    ds.write(arr)
            with paths["tiepoints"].open("w", newline="") as f:
                wr = csv.writer(f)
                wr.writerow(["sar_row", "sar_col", "optical_row", "optical_col"])
                for (sx, sy), (ox, oy) in zip(sp[ok], kp[ok], strict=True):
                    wr.writerow([round(sy), round(sx), round(oy), round(ox)])
            scenes.append({"name": scene, "split": "val" if name in val_names else "train",
                           **{k2: p.name for k2, p in paths.items()}})
    (args.out / "manifest.json").write_text(json.dumps(
        {"source": "3MOS city tiles (3M-OS/3MOS, Apache-2.0) with known synthetic distortions",
         "scenes": scenes}, indent=1))
    n_val = sum(s["split"] == "val" for s in scenes)
    print(f"{len(scenes)} scenes ({len(scenes) - n_val} train, {n_val} validation) in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
