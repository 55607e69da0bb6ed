"""One optical/SAR pair registered end to end: common grid, coarse alignment, dense
matching coarse to fine, robust fit, reliability checks. Returns the displacement field
and a report; evaluating it into an offset map is `offsets.py`'s job."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

import cv2
import numpy as np

from sn9cloud.engine.coarse import coarse_align, coarse_displacement
from sn9cloud.engine.executor import SERIAL, Executor
from sn9cloud.engine.features import structure_features, to_intensity
from sn9cloud.engine.fit import LAMBDAS, DisplacementField, FitResult, fit_field
from sn9cloud.engine.grid import (
    check_crs_pair,
    linear_inverse,
    pixel_centres_to_map,
    resample_to,
    working_factor,
)
from sn9cloud.engine.match import LocalMatches, grid_points, match_points
from sn9cloud.engine.types import Array, GeoImage, Grid, setting
from sn9cloud.errors import InputError, NoOverlapError, UnreliableRegistrationError

#: the field models: a smooth non-rigid field (global affine + thin-plate spline, the most
#: accurate) or the baseline's single affine
Model = Literal["nonrigid", "affine"]
MODELS: tuple[str, ...] = get_args(Model)


@dataclass(frozen=True)
class RegistrationOptions:
    """Every setting of the engine, its default and valid range written once, here."""

    model: Model = setting("nonrigid", doc="field model: nonrigid or affine")
    max_working_size: int = setting(1024, lo=64, hi=32768,
                                    doc="longest side of the working grid, px")
    max_shift_fraction: float = setting(0.25, lo=0.01, hi=0.5,
                                        doc="coarse search range, fraction of the image side")
    scales: tuple[float, ...] = setting((0.97, 0.985, 1.0, 1.015, 1.03), lo=0.5, hi=2.0,
                                        doc="coarse scale candidates")
    half: int = setting(24, lo=4, hi=128, doc="template half-size, working px")
    step: int = setting(12, lo=1, hi=512, doc="lattice step of match points, working px")
    max_points: int = setting(1200, lo=16, hi=200_000,
                              doc="match points per pyramid level (the step grows on large "
                                  "grids)")
    min_level_size: int = setting(112, lo=32, hi=8192,
                                  doc="shorter side of the coarsest pyramid level, px")
    min_ncc: float = setting(0.10, lo=-1.0, hi=1.0, doc="a match's minimum peak NCC")
    min_margin: float = setting(0.02, lo=0.0, hi=2.0,
                                doc="a match's minimum peak margin over its best rival")
    consistency_px: float = setting(1.5, lo=0.01, hi=100.0,
                                    doc="forward/backward agreement, level px")
    min_inliers: int = setting(12, lo=3, hi=100_000, doc="inliers needed to answer")
    min_inlier_fraction: float = setting(0.2, lo=0.0, hi=1.0,
                                         doc="inliers per valid match needed to answer")
    min_point_fraction: float = setting(0.1, lo=0.0, hi=1.0,
                                        doc="inliers per lattice point of the finest level")
    max_estimated_error_px: float = setting(3.0, lo=0.01, hi=1000.0,
                                            doc="largest cross-validated error answered, "
                                                "working px")
    job_tile: int = setting(512, lo=16, hi=1 << 20, identity=False,
                            doc="matching window jobs: points of one tile of this many "
                                "level px")


@dataclass
class RegistrationReport:
    model: str
    working_pixel_size: tuple[float, float]
    working_shape: tuple[int, int]
    overlap_fraction: float
    coarse: dict[str, Any]
    levels: list[dict[str, Any]] = field(default_factory=list)
    matches: int = 0
    consistent_matches: int = 0
    inliers: int = 0
    residual_rmse_px: float = float("nan")
    residual_p90_px: float = float("nan")
    estimated_error_px: float = float("nan")
    estimated_error_m: float = float("nan")
    timings_s: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RegistrationResult:
    field: DisplacementField
    optical_grid: Grid  # the grid the inputs' optical image was given on
    sar_grid: Grid
    report: RegistrationReport
    matches_src: Array  # (N, 2) map points of the final inlier matches
    matches_disp: Array  # (N, 2) their displacements, map units


def _check_image(img: GeoImage, name: str) -> None:
    if img.array.ndim not in (2, 3) or img.height < 2 or img.width < 2:
        raise InputError(f"{name} image: expected a 2-D raster, got shape {img.array.shape}")
    valid = img.valid_mask()
    if not valid.any():
        raise InputError(f"{name} image: every pixel is nodata")
    vals = img.bands[:, valid]
    if float(np.nanmax(vals) - np.nanmin(vals)) == 0.0:
        raise InputError(f"{name} image: constant (no structure to match)")


def _pyramid(a: Array, m: Array, levels: int) -> list[tuple[Array, Array]]:
    out = [(a, m)]
    for _ in range(levels - 1):
        a, m = out[-1]
        h, w = (a.shape[0] + 1) // 2, (a.shape[1] + 1) // 2
        a2 = cv2.resize(a, (w, h), interpolation=cv2.INTER_AREA)
        m2 = cv2.resize(m.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA) > 0.99
        out.append((a2, m2))
    return out


def register(
    optical: GeoImage,
    sar: GeoImage,
    options: RegistrationOptions | None = None,
    executor: Executor | None = None,
) -> RegistrationResult:
    """Register ``sar`` to ``optical``; raise rather than return an unreliable field.

    Each matching pass is planned as window jobs (a tile of points each) that ``executor``
    runs: in this process on one thread by default, on a Ray cluster with
    `sn9cloud.distributed`; the executor also says how many threads each stage may use."""
    opt = options or RegistrationOptions()
    ex = executor or SERIAL
    if opt.model not in MODELS:
        raise InputError(f"unknown model {opt.model!r}: choose one of {', '.join(MODELS)}")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    _check_image(optical, "optical")
    _check_image(sar, "SAR")
    check_crs_pair(optical.crs, sar.crs)

    factor = working_factor(optical.grid, sar.grid, opt.max_working_size)
    wgrid = optical.grid.scaled(factor)
    o_int, o_valid = resample_to(optical, wgrid, is_sar=False, threads=ex.threads)
    s_int, s_valid = resample_to(sar, wgrid, is_sar=True, threads=ex.threads)
    both = o_valid & s_valid
    overlap = float(both.mean())
    if not s_valid.any():
        raise NoOverlapError("the SAR image does not overlap the optical image")
    min_side = 2 * opt.half + 8
    if min(wgrid.width, wgrid.height) < min_side:
        raise InputError(
            f"optical image is {wgrid.width}x{wgrid.height} px on the working grid, smaller "
            f"than the {min_side} px matching window"
        )
    o_int = to_intensity(o_int, is_sar=False, valid=o_valid)
    s_int = to_intensity(s_int, is_sar=True, valid=s_valid)
    timings["grid"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    n_levels = 1
    while min(wgrid.width, wgrid.height) / 2**n_levels >= opt.min_level_size:
        n_levels += 1
    opyr = _pyramid(o_int, o_valid, n_levels)
    spyr = _pyramid(s_int, s_valid, n_levels)
    feats = [
        (structure_features(o, executor=ex), om,
         structure_features(s, presmooth=1.0, executor=ex), sm)
        for (o, om), (s, sm) in zip(opyr, spyr, strict=True)
    ]
    timings["features"] = time.perf_counter() - t1

    # coarse: on the level whose longer side is nearest 160 px
    t2 = time.perf_counter()
    lv = n_levels - 1
    fo, om, fs, sm = feats[lv]
    maxs = (opt.max_shift_fraction * fo.shape[1], opt.max_shift_fraction * fo.shape[0])
    # a scale error moves the image edges by (scale - 1) * side / 2: search scales only
    # when that exceeds what the first local search radius absorbs
    edge = max(abs(s_ - 1.0) for s_ in opt.scales) * max(fo.shape[:2]) / 2.0
    scales = opt.scales if edge > 4.0 else (1.0,)
    coarse = coarse_align(fo, om, fs, sm, maxs, scales, threads=ex.threads)
    timings["coarse"] = time.perf_counter() - t2
    coarse_info = {
        "shift_px": (coarse.shift * 2**lv).round(2).tolist(),
        "scale": coarse.scale,
        "peak_ncc": round(coarse.peak, 4),
        "peak_margin": round(coarse.margin, 4),
    }

    lin_inv = linear_inverse(wgrid.transform)
    px_w, px_h = wgrid.pixel_size
    px = 0.5 * (px_w + px_h)

    def predict_px(pts_w: Array, fld: DisplacementField | None) -> Array:
        """Displacement in working px at working-grid points."""
        if fld is None:
            c_px: Array = coarse_displacement(coarse, pts_w / 2**lv) * 2**lv
            return c_px
        d = fld(pixel_centres_to_map(wgrid.transform, pts_w))
        out: Array = d @ lin_inv.T
        return out

    t3 = time.perf_counter()
    fld: DisplacementField | None = None
    fit: FitResult | None = None
    level_info: list[dict[str, Any]] = []
    last: tuple[LocalMatches, Array] | None = None
    for k in range(n_levels - 1, -1, -1):
        fo, om, fs, sm = feats[k]
        scale = 2**k
        radius = 8 if fld is None else 4
        step = max(opt.step, int(np.ceil(np.sqrt(fo.shape[0] * fo.shape[1] / opt.max_points))))
        pts = grid_points(fo.shape[1], fo.shape[0], step, opt.half + 2)
        pred = predict_px(pts * scale + (scale - 1) / 2.0, fld) / scale
        fwd = match_points(fo, fs, pts, pred, opt.half, radius, om, sm, executor=ex,
                           tile=opt.job_tile)
        ok = fwd.valid & (fwd.ncc >= opt.min_ncc) & (fwd.margin >= opt.min_margin)
        # backward, for the forward matches only: from the SAR position back to the optical
        consistent = np.zeros(len(pts), bool)
        if ok.any():
            bwd = match_points(fs, fo, fwd.dst[ok], (fwd.src - fwd.dst)[ok], opt.half, 2, sm,
                               om, executor=ex, tile=opt.job_tile)
            back_err = np.hypot(*(bwd.dst - fwd.src[ok]).T)
            consistent[ok] = bwd.valid & (back_err <= opt.consistency_px)
        src_w = fwd.src[consistent] * scale + (scale - 1) / 2.0
        dst_w = fwd.dst[consistent] * scale + (scale - 1) / 2.0
        info = {"level": k, "points": len(pts), "matches": int(ok.sum()),
                "consistent": int(consistent.sum())}
        if consistent.sum() >= 6:
            src_map = pixel_centres_to_map(wgrid.transform, src_w)
            disp_map = pixel_centres_to_map(wgrid.transform, dst_w) - src_map
            model = opt.model if k == 0 else "nonrigid"
            fit = fit_field(src_map, disp_map, model, threshold=1.5 * scale * px,
                            gate=3.0 * scale * px, block=4.0 * opt.half * scale * px,
                            lambdas=LAMBDAS if k == 0 else (1e-2,))
            fld = fit.field
            info["inliers"] = int(fit.inliers.sum())
            last = (fwd, consistent)
            last_maps = (src_map, disp_map)
        level_info.append(info)
    timings["match_fit"] = time.perf_counter() - t3

    report = RegistrationReport(
        model=opt.model,
        working_pixel_size=(px_w, px_h),
        working_shape=(wgrid.height, wgrid.width),
        overlap_fraction=round(overlap, 4),
        coarse=coarse_info,
        levels=level_info,
        timings_s={k: round(v, 4) for k, v in timings.items()},
    )
    if fit is None or fld is None or last is None:
        raise UnreliableRegistrationError(
            "too few consistent matches between the optical and SAR images "
            f"(coarse peak NCC {coarse.peak:.3f}); the pair cannot be registered reliably"
        )
    fwd, consistent = last
    n_cons = int(consistent.sum())
    n_inl = int(fit.inliers.sum())
    res_px = np.hypot(*fit.residuals.T) / px
    loo_px = np.hypot(*fit.loo_residuals.T) / px
    report.matches = int(fwd.valid.sum())
    report.consistent_matches = n_cons
    report.inliers = n_inl
    report.residual_rmse_px = float(np.sqrt(np.mean(res_px**2)))
    report.residual_p90_px = float(np.percentile(res_px, 90))
    report.estimated_error_px = float(np.mean(loo_px))
    report.estimated_error_m = float(np.mean(loo_px) * px)
    frac = n_inl / max(int(fwd.valid.sum()), 1)
    n_points = level_info[-1]["points"]
    if (
        n_inl < max(opt.min_inliers, opt.min_point_fraction * n_points)
        or frac < opt.min_inlier_fraction
        or report.estimated_error_px > opt.max_estimated_error_px
    ):
        raise UnreliableRegistrationError(
            f"only {n_inl} consistent inlier matches ({frac:.0%} of {report.matches} matches, "
            f"{n_points} points), "
            f"estimated error {report.estimated_error_px:.1f} px: the pair cannot be "
            "registered reliably"
        )
    timings["total"] = time.perf_counter() - t0
    report.timings_s = {k: round(v, 4) for k, v in timings.items()}
    src_map, disp_map = last_maps
    return RegistrationResult(
        field=fld,
        optical_grid=optical.grid,
        sar_grid=sar.grid,
        report=report,
        matches_src=src_map[fit.inliers],
        matches_disp=disp_map[fit.inliers],
    )
