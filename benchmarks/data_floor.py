"""What the 3MOS tiles' own co-registration leaves: every pair registered with no
distortion at all, so that whatever offset the engine finds is either the tile's own
misregistration or the engine's error on it.

    python benchmarks/data_floor.py [--data ../shared/data] [--group city] [--json out.json]
                                    [--accuracy-json ACC.json]

Per pair: the mean offset (dx, dy) of the engine's offset map over the tile, the mean of
its length (what the accuracy benchmark would count as error if the engine were exactly
right), its spread over the tile and the engine's own accuracy estimate. Per source figure
(sensor): the mean offset and how many pairs share its sign in x and in y. Random engine
errors would not share a sign across a figure's pairs; a figure-wide offset is either the
figure's misregistration or a bias of the engine for that sensor. To tell them apart,
each pair also gets an independent estimate: the global shift (within 16 px) that
maximises the mutual information of the raw intensities, a similarity that shares nothing
with the engine's gradient-orientation features; `MI-engine` is the distance between the
two answers. Given the rows of `benchmarks/accuracy.py --json`, it also compares each
pair's benchmark error with its undistorted offset.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from accuracy import load_pairs  # noqa: E402

from sn9cloud.engine import GeoImage, register  # noqa: E402
from sn9cloud.engine.coarse import parabola_vertex  # noqa: E402
from sn9cloud.engine.offsets import offset_window  # noqa: E402
from sn9cloud.errors import UnreliableRegistrationError  # noqa: E402
from sn9cloud.settings import Settings  # noqa: E402

EXECUTOR = Settings.from_env().apply().executor()  # this machine's threads, as the CLI

MI_RADIUS = 16
MI_BINS = 32


def _quantise(a: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(a, [1, 99])
    return np.clip((a - lo) / (hi - lo + 1e-6) * MI_BINS, 0, MI_BINS - 1).astype(np.int64)


def mi_shift(optical: np.ndarray, sar: np.ndarray, radius: int = MI_RADIUS) -> np.ndarray:
    """(dx, dy) such that sar[y + dy, x + dx] best matches optical[y, x] by mutual
    information, integer search refined by a parabola through the neighbours."""
    o = _quantise(optical.astype(np.float32).mean(axis=0))
    s = _quantise(cv2.GaussianBlur(sar.astype(np.float32), (0, 0), 1.0))
    h, w = o.shape
    core = o[radius:h - radius, radius:w - radius].ravel() * MI_BINS
    surf = np.zeros((2 * radius + 1, 2 * radius + 1))
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            win = s[radius + dy:h - radius + dy, radius + dx:w - radius + dx].ravel()
            p = np.bincount(core + win, minlength=MI_BINS * MI_BINS).astype(np.float64)
            p = p.reshape(MI_BINS, MI_BINS) / p.sum()
            outer = p.sum(axis=1, keepdims=True) @ p.sum(axis=0, keepdims=True)
            nz = p > 0
            surf[dy + radius, dx + radius] = float((p[nz] * np.log(p[nz] / outer[nz])).sum())
    iy, ix = np.unravel_index(int(surf.argmax()), surf.shape)
    sx = parabola_vertex(*surf[iy, ix - 1:ix + 2]) if 0 < ix < 2 * radius else 0.0
    sy = parabola_vertex(*surf[iy - 1:iy + 2, ix]) if 0 < iy < 2 * radius else 0.0
    return np.array([ix - radius + sx, iy - radius + sy])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--group", default="city", help="city, desert, water or all")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--accuracy-json", type=Path, default=None,
                    help="rows written by benchmarks/accuracy.py --json, to compare with")
    args = ap.parse_args(argv)

    rows = []
    print(f"{'pair':18s} {'dx':>6s} {'dy':>6s} {'|off|':>6s} {'sd x':>5s} {'sd y':>5s} "
          f"{'est.':>5s} {'MI dx':>6s} {'MI dy':>6s} {'MI-engine':>9s}")
    for pair in load_pairs(args.data):
        if pair.group == "bigearthnet" or args.group not in ("all", pair.group):
            continue
        h, w = pair.sar.shape
        opt = GeoImage(pair.optical, pair.transform, pair.crs)
        sar = GeoImage(pair.sar.astype(np.float32), pair.transform, pair.crs)
        figure = pair.name.rsplit("_", 1)[0]
        mi = mi_shift(pair.optical, pair.sar)
        try:
            result = register(opt, sar, executor=EXECUTOR)
        except UnreliableRegistrationError:
            print(f"{pair.name:18s} declined {'':24s} {mi[0]:+6.2f} {mi[1]:+6.2f}")
            rows.append({"pair": pair.name, "figure": figure, "status": "declined",
                         "mi_dx": float(mi[0]), "mi_dy": float(mi[1])})
            continue
        off = offset_window(result.field, opt.grid, opt.grid, (0, 0, h, w)).reshape(2, -1)
        mean, sd = off.mean(axis=1), off.std(axis=1)
        length = float(np.hypot(*off).mean())
        est = result.report.estimated_error_px
        gap = float(np.hypot(*(mi - mean)))
        print(f"{pair.name:18s} {mean[0]:+6.2f} {mean[1]:+6.2f} {length:6.2f} {sd[0]:5.2f} "
              f"{sd[1]:5.2f} {est:5.2f} {mi[0]:+6.2f} {mi[1]:+6.2f} {gap:9.2f}")
        rows.append({"pair": pair.name, "figure": figure, "status": "ok",
                     "mean_dx": float(mean[0]), "mean_dy": float(mean[1]),
                     "mean_length_px": length, "estimated_error_px": est,
                     "mi_dx": float(mi[0]), "mi_dy": float(mi[1]), "mi_engine_px": gap})

    print(f"\n{'figure':14s} {'pairs':>5s} {'declined':>8s} {'mean dx':>8s} {'mean dy':>8s} "
          f"{'same sign x':>11s} {'same sign y':>11s} {'mean |off|':>10s} {'MI dx':>6s} "
          f"{'MI dy':>6s} {'median MI-engine':>16s}")
    for figure in sorted({r["figure"] for r in rows}):
        rs = [r for r in rows if r["figure"] == figure]
        ok = [r for r in rs if r["status"] == "ok"]
        if not ok:
            print(f"{figure:14s} {len(rs):5d} {len(rs):8d}")
            continue
        dx = np.array([r["mean_dx"] for r in ok])
        dy = np.array([r["mean_dy"] for r in ok])
        same_x = max(int((dx > 0).sum()), int((dx < 0).sum()))
        same_y = max(int((dy > 0).sum()), int((dy < 0).sum()))
        print(f"{figure:14s} {len(rs):5d} {len(rs) - len(ok):8d} {dx.mean():+8.2f} "
              f"{dy.mean():+8.2f} {f'{same_x}/{len(ok)}':>11s} {f'{same_y}/{len(ok)}':>11s} "
              f"{np.mean([r['mean_length_px'] for r in ok]):10.2f} "
              f"{np.mean([r['mi_dx'] for r in rs]):+6.2f} "
              f"{np.mean([r['mi_dy'] for r in rs]):+6.2f} "
              f"{np.median([r['mi_engine_px'] for r in ok]):16.2f}")
    if args.accuracy_json:
        _compare(rows, json.loads(args.accuracy_json.read_text()))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


def _compare(rows: list[dict], accuracy_rows: list[dict]) -> None:
    """How much of the benchmark's error per pair is the pair's undistorted offset."""
    own = {r["pair"]: r["mean_length_px"] for r in rows if r["status"] == "ok"}
    err = {r["pair"]: r["error_px"] for r in accuracy_rows
           if r["method"] == "sn9cloud" and r["status"] == "ok"}
    both = sorted(set(own) & set(err))
    if len(both) < 3:
        print("\ntoo few pairs in both runs to compare")
        return
    e = np.array([err[k] for k in both])
    o = np.array([own[k] for k in both])
    print(f"\n{len(both)} pairs registered both ways: benchmark error mean {e.mean():.2f} px, "
          f"undistorted offset mean {o.mean():.2f} px, correlation {np.corrcoef(e, o)[0, 1]:.2f}")


if __name__ == "__main__":
    raise SystemExit(main())
