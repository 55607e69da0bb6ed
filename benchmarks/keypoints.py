"""Keypoint detector benchmark, in one run:

    python benchmarks/keypoints.py [--data ../shared/data] [--models sn9cloud/models/shipped]

1. The shipped SAR detector's localisation error on the held-out tiles (the validation
   split of `training/make_tiepoints.py`, regenerated with the training seed): median and
   90th percentile, px; beside it, the peak of each fixed CFOG similarity map the U-Net
   reads (`sn9cloud.models.similarity`) taken alone, so that what the trained network adds
   is measured, not assumed.
2. On the accuracy benchmark's city pairs (same distortions as benchmarks/accuracy.py,
   seed 0): the engine alone, the engine refined by the detector (`--matcher keypoints`),
   and the SpaceNet 9 baseline's workflow (`--matcher baseline`), mean end-point error and
   the pairs where the refinement made the engine worse.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from accuracy import load_pairs  # noqa: E402

from sn9cloud.distortion import distort_sar, random_distortion, truth_offsets  # noqa: E402
from sn9cloud.engine import GeoImage, RegistrationOptions, register  # noqa: E402
from sn9cloud.engine.keypoints import baseline_register, refine_with_detector  # noqa: E402
from sn9cloud.engine.offsets import offset_window  # noqa: E402
from sn9cloud.errors import UnreliableRegistrationError  # noqa: E402
from sn9cloud.models.detector import load_detector  # noqa: E402
from sn9cloud.models.similarity import centre_similarity  # noqa: E402
from sn9cloud.models.unet import heatmap_peak  # noqa: E402
from sn9cloud.settings import Settings  # noqa: E402

EXECUTOR = Settings.from_env().apply().executor()  # this machine's threads, as the CLI
from training.dataset import TileDataset, load_manifest  # noqa: E402


def localisation(detector, data: Path) -> dict[str, tuple[float, float, int]]:
    """name -> (median, p90, n) of the localisation error on the held-out tiles."""
    from training.make_tiepoints import main as make

    sizes = detector.model.config.templates or (96, 160, 224)

    with tempfile.TemporaryDirectory() as tmp:
        make(["--out", tmp, "--data", str(data)])
        val = TileDataset(load_manifest(Path(tmp) / "manifest.json")["val"], "sar",
                          tile=detector.tile)
        errs: dict[str, list[float]] = {"detector": []}
        errs.update({f"similarity {m} px alone": [] for m in sizes})
        with torch.inference_mode():
            for i in range(0, len(val), 32):
                batch = [val[j] for j in range(i, min(i + 32, len(val)))]
                a = torch.stack([b[0] for b in batch]).to(detector.device)
                b = torch.stack([b[1] for b in batch]).to(detector.device)
                p = torch.stack([b[3] for b in batch])
                heat = {"detector": detector.model(a, b)}
                sim = F.interpolate(centre_similarity(a, b, sizes), size=a.shape[-2:],
                                    mode="bilinear", align_corners=False).clamp(min=0)
                heat.update({f"similarity {m} px alone": sim[:, k:k + 1]
                             for k, m in enumerate(sizes)})
                for name, h in heat.items():
                    cx, cy, _ = heatmap_peak(h)
                    errs[name].extend(torch.hypot(cx.cpu() - p[:, 0],
                                                  cy.cpu() - p[:, 1]).tolist())
    return {k: (float(np.median(e)), float(np.percentile(e, 90)), len(e))
            for k, e in errs.items()}


def evaluate(opt: GeoImage, sar: GeoImage, truth: np.ndarray, inside: np.ndarray,
             det) -> dict:
    h, w = truth.shape[1:]

    def err(result) -> float:
        off = offset_window(result.field, opt.grid, sar.grid, (0, 0, h, w))
        return float(np.mean(np.hypot(*(off - truth)[:, inside])))

    row: dict = {}
    t = time.perf_counter()
    try:
        eng = register(opt, sar, RegistrationOptions(), executor=EXECUTOR)
        row["engine"], row["engine_s"] = err(eng), time.perf_counter() - t
        t = time.perf_counter()
        ref = refine_with_detector(eng, opt, sar, det, executor=EXECUTOR)
        row["keypoints"] = err(ref)
        row["keypoints_s"] = row["engine_s"] + time.perf_counter() - t
        row["kept"] = ref.report.levels[-1]["detector_refinement"]["kept"]
    except UnreliableRegistrationError:
        row.update(engine=float("nan"), keypoints=float("nan"),
                   engine_s=time.perf_counter() - t, keypoints_s=time.perf_counter() - t)
    t = time.perf_counter()
    try:
        row["baseline"] = err(baseline_register(opt, sar, det, executor=EXECUTOR))
    except UnreliableRegistrationError:
        row["baseline"] = float("nan")
    row["baseline_s"] = time.perf_counter() - t
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--models", type=Path, default=None)
    ap.add_argument("--only", default="_city_", help="substring of pair names")
    args = ap.parse_args(argv)
    det = load_detector("sar", args.models)
    print(f"SAR detector on {det.device}")
    t0 = time.perf_counter()
    loc = localisation(det, args.data)
    print(f"held-out tiles: {loc['detector'][2]} ({time.perf_counter() - t0:.0f} s)")
    for name, (med, p90, _) in loc.items():
        print(f"  {name:28s} localisation median {med:6.2f} px, p90 {p90:6.2f} px")

    rng = np.random.default_rng(0)
    rows = []
    for i, pair in enumerate(load_pairs(args.data)):
        h, w = pair.sar.shape
        d = random_distortion(rng, w, h, nonrigid=0.05 if i % 2 else 0.0)
        if args.only not in pair.name:
            continue
        sar_px, sar_valid = distort_sar(pair.sar, d)
        truth, inside = truth_offsets(d, w, h)
        opt = GeoImage(pair.optical, pair.transform, pair.crs)
        sar = GeoImage(sar_px, pair.transform * d.sar_pixel_affine(), pair.crs, valid=sar_valid)

        row = {"pair": pair.name, **evaluate(opt, sar, truth, inside, det)}
        rows.append(row)
        print(f"{pair.name:20s} engine {row['engine']:6.2f}  keypoints {row['keypoints']:6.2f} "
              f"(refinement kept: {row.get('kept')})  baseline {row['baseline']:6.2f}",
              flush=True)

    print(f"\n{'method':28s} {'registered':>10s} {'mean px':>8s} {'max px':>7s} {'s/pair':>7s}")
    for name in ("engine", "keypoints", "baseline"):
        e = np.array([r[name] for r in rows])
        ok = np.isfinite(e)
        print(f"{name:28s} {ok.sum():10d} {np.nanmean(e):8.2f} {np.nanmax(e):7.2f} "
              f"{np.mean([r[name + '_s'] for r in rows]):7.2f}")
    worse = [r["pair"] for r in rows if np.isfinite(r["engine"])
             and r["keypoints"] > r["engine"] + 1e-6]
    print(f"pairs where the refinement made the engine worse: {len(worse)} {worse}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
