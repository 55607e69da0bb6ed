"""Robust fit: outlier rejection, the global affine, and a smooth non-rigid field.

The field maps a map point P (optical CRS, where a feature is in the optical geocoding) to
its displacement D(P), so that the SAR geocoding puts the same feature at P + D(P). It is a
global affine plus a thin-plate spline on the affine's residuals, with the smoothing chosen
by leave-one-out error (closed form through the hat matrix), which is also the accuracy
estimate. Coordinates are normalised for conditioning; all values are in map units.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from scipy.spatial import cKDTree

from sn9cloud.engine.types import Array
from sn9cloud.errors import UnreliableRegistrationError

#: Candidate TPS smoothing weights (relative to the kernel scale), searched by LOO error.
LAMBDAS = (1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 10.0, 100.0)


def _tps_kernel(r2: Array) -> Array:
    """U(r) = r^2 log r = r2 log(r2) / 2, with U(0) = 0 (in place: r2 is a temporary)."""
    k = np.log(np.maximum(r2, 1e-300))
    k *= r2
    k *= 0.5
    return k


def _sqdist(a: Array, b: Array) -> Array:
    dx = a[:, None, 0] - b[None, :, 0]
    dy = a[:, None, 1] - b[None, :, 1]
    dx *= dx
    dy *= dy
    dx += dy
    return dx


@dataclass
class DisplacementField:
    """D(P) = affine(P) + tps(P), with P in map units of the optical CRS."""

    centre: Array  # (2,)
    scale: float
    affine: Array  # (2, 3): displacement = affine @ [u, v, 1] in map units
    tps_centres: Array  # (K, 2) normalised
    tps_weights: Array  # (K, 2)
    tps_poly: Array  # (3, 2)
    smoothing: float = 0.0

    @property
    def is_affine(self) -> bool:
        return len(self.tps_centres) == 0

    def _norm(self, pts: Array) -> Array:
        return (np.asarray(pts, np.float64) - self.centre) / self.scale

    def __call__(self, pts: Array, chunk: int = 4096) -> Array:
        """Displacements (N, 2) at map points (N, 2), evaluated in bounded-memory chunks."""
        u = self._norm(pts)
        out = np.empty_like(u)
        for i in range(0, len(u), chunk):
            uc = u[i : i + chunk]
            h = np.column_stack([uc, np.ones(len(uc))])
            d = h @ self.affine.T
            if not self.is_affine:
                k = _tps_kernel(_sqdist(uc, self.tps_centres))
                d = d + k @ self.tps_weights + h @ self.tps_poly
            out[i : i + chunk] = d
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "centre": self.centre.tolist(),
            "scale": self.scale,
            "affine": self.affine.tolist(),
            "tps_centres": self.tps_centres.tolist(),
            "tps_weights": self.tps_weights.tolist(),
            "tps_poly": self.tps_poly.tolist(),
            "smoothing": self.smoothing,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DisplacementField:
        return cls(
            centre=np.asarray(d["centre"], float),
            scale=float(d["scale"]),
            affine=np.asarray(d["affine"], float).reshape(2, 3),
            tps_centres=np.asarray(d["tps_centres"], float).reshape(-1, 2),
            tps_weights=np.asarray(d["tps_weights"], float).reshape(-1, 2),
            tps_poly=np.asarray(d["tps_poly"], float).reshape(3, 2),
            smoothing=float(d["smoothing"]),
        )


def _frame(pts: Array) -> tuple[Array, float]:
    centre = pts.mean(axis=0)
    scale = float(np.max(np.ptp(pts, axis=0))) or 1.0
    return centre, scale


def fit_affine(
    src: Array, disp: Array, threshold: float
) -> tuple[Array, Array]:
    """Robust affine displacement (MAGSAC++) in the normalised frame of ``src``.

    Returns (affine (2, 3) on normalised coords, inlier mask). ``threshold`` is in map
    units.
    """
    centre, scale = _frame(src)
    u = (src - centre) / scale
    n = len(src)
    if n < 3:
        raise UnreliableRegistrationError(
            f"only {n} matches survived outlier rejection; an affine needs at least 3")
    inl = np.ones(n, bool)
    if n >= 6:
        m, mask = cv2.estimateAffine2D(
            u.astype(np.float32),
            (u + disp / scale).astype(np.float32),
            method=cv2.USAC_MAGSAC,
            ransacReprojThreshold=threshold / scale,
            maxIters=5000,
            confidence=0.999,
        )
        if m is not None and mask is not None and mask.sum() >= 3:
            inl = mask.ravel().astype(bool)
    a = irls_affine(u[inl], disp[inl])
    return a, inl


def irls_affine(u: Array, disp: Array, iters: int = 10) -> Array:
    """Least-squares affine with Tukey biweights: every good match counts, unlike a
    minimal-sample consensus, so the noise of individual matches averages out."""
    a = _lsq_affine(u, disp, None)
    h = np.column_stack([u, np.ones(len(u))])
    for _ in range(iters):
        r = np.hypot(*(disp - h @ a.T).T)
        sigma = 1.4826 * float(np.median(r)) + 1e-12
        c = 4.685 * sigma
        w = np.where(r < c, (1 - (r / c) ** 2) ** 2, 0.0)
        if w.sum() < 3:
            break
        a = _lsq_affine(u, disp, w)
    return a


def _lsq_affine(u: Array, disp: Array, w: Array | None) -> Array:
    h = np.column_stack([u, np.ones(len(u))])
    if w is not None:
        sw = np.sqrt(w)[:, None]
        sol, *_ = np.linalg.lstsq(h * sw, disp * sw, rcond=None)
    else:
        sol, *_ = np.linalg.lstsq(h, disp, rcond=None)
    out: Array = sol.T
    return out


def neighbourhood_gate(src: Array, disp: Array, gate: float, k: int = 8) -> Array:
    """Keep matches whose displacement agrees with the median of their k nearest
    neighbours: a smooth field cannot jump, an outlier does."""
    n = len(src)
    if n <= 3:
        return np.ones(n, bool)
    k = min(k, n - 1)
    _, found = cKDTree(src).query(src, k=k + 1)
    idx = np.asarray(found, np.intp)
    med = np.median(disp[idx[:, 1:]], axis=1)
    keep: Array = np.hypot(*(disp - med).T) <= gate
    return keep


@dataclass
class TpsFit:
    weights: Array
    poly: Array
    loo_residuals: Array  # (N, 2), map units
    smoothing: float


def _tps_solve(u: Array, y: Array, lam: float, want_loo: bool) -> TpsFit:
    n = len(u)
    k = _tps_kernel(_sqdist(u, u))
    p = np.column_stack([u, np.ones(n)])
    a = np.zeros((n + 3, n + 3))
    a[:n, :n] = k + lam * np.eye(n)
    a[:n, n:] = p
    a[n:, :n] = p.T
    rhs = np.zeros((n + 3, 2))
    rhs[:n] = y
    if not want_loo:
        sol = np.linalg.lstsq(a, rhs, rcond=None)[0] if n < 4 else np.linalg.solve(a, rhs)
        return TpsFit(sol[:n], sol[n:], np.zeros_like(y), lam)
    inv = np.linalg.pinv(a) if n < 4 else np.linalg.inv(a)
    sol = inv @ rhs
    w, poly = sol[:n], sol[n:]
    loo = np.zeros_like(y)
    if want_loo:
        # fitted = [K P] @ inv[:, :n] @ y  ->  hat diagonal
        kp = np.hstack([k, p])
        hdiag = np.einsum("ij,ji->i", kp, inv[:, :n])
        fitted = kp @ sol
        loo = (y - fitted) / np.maximum(1.0 - hdiag, 1e-6)[:, None]
    return TpsFit(w, poly, loo, lam)


def _block_cv(u: Array, y: Array, lam: float, block: float, k: int = 5) -> Array:
    """Held-out residuals with whole spatial blocks left out together: neighbouring matches
    share image content (overlapping templates), so leaving one out alone flatters a
    spline that follows their common error."""
    cell = np.floor(u / block).astype(np.int64)
    fold = (cell[:, 0] + 2 * cell[:, 1]) % k
    out = np.full_like(y, np.nan)
    for f in range(k):
        test = fold == f
        if not test.any() or (~test).sum() < 6:
            continue
        fit = _tps_solve(u[~test], y[~test], lam, want_loo=False)
        k_ = _tps_kernel(_sqdist(u[test], u[~test]))
        h = np.column_stack([u[test], np.ones(int(test.sum()))])
        out[test] = y[test] - (k_ @ fit.weights + h @ fit.poly)
    return out


def fit_tps(
    u: Array, y: Array, block: float | None = None,
    lambdas: tuple[float, ...] = LAMBDAS,
) -> TpsFit:
    """TPS on normalised points ``u`` for values ``y``; the smoothing with the lowest mean
    held-out error wins: leave-one-out (closed form) for independent points, spatial
    block cross-validation when ``block`` (normalised units) is given."""
    best_lam, best_err, best_res = lambdas[-1], np.inf, None
    for lam in lambdas:
        if block is None:
            res = _tps_solve(u, y, lam, want_loo=True).loo_residuals
        else:
            res = _block_cv(u, y, lam, block)
        err = float(np.nanmean(np.hypot(*res.T)))
        if err < best_err:
            best_lam, best_err, best_res = lam, err, res
    f = _tps_solve(u, y, best_lam, want_loo=False)
    f.loo_residuals = np.nan_to_num(best_res) if best_res is not None else f.loo_residuals
    return f


@dataclass
class FitResult:
    field: DisplacementField
    inliers: Array  # bool mask over the input matches
    residuals: Array  # (N_inliers, 2) fit residuals, map units
    loo_residuals: Array  # (N_inliers, 2) leave-one-out residuals, map units


def fit_field(
    src: Array,
    disp: Array,
    model: str,
    threshold: float,
    gate: float | None = None,
    max_points: int = 500,
    block: float | None = None,
    lambdas: tuple[float, ...] = LAMBDAS,
) -> FitResult:
    """Fit a displacement field to matches ``src`` (map points) -> ``disp`` (map units).

    ``model`` is "affine" or "nonrigid". Outliers go in three passes: neighbourhood median
    gate, MAGSAC++ affine with a loose threshold, then (non-rigid) iterative rejection on
    leave-one-out residuals of the spline.
    """
    n = len(src)
    keep = np.ones(n, bool)
    if gate is not None and n > 8:
        keep = neighbourhood_gate(src, disp, gate)
        if keep.sum() < 6:
            keep = np.ones(n, bool)
    idx = np.flatnonzero(keep)
    if model == "affine":
        _, inl = fit_affine(src[idx], disp[idx], 2.0 * threshold)
        idx = idx[inl]
    centre, scale = _frame(src[idx])
    u = (src[idx] - centre) / scale
    if model == "affine" or len(idx) < 8:
        a = irls_affine(u, disp[idx])
        h = np.column_stack([u, np.ones(len(u))])
        res = disp[idx] - h @ a.T
        # affine LOO via the hat matrix of least squares
        hat = h @ np.linalg.pinv(h.T @ h) @ h.T
        loo = res / np.maximum(1 - np.diag(hat), 1e-6)[:, None]
        field = DisplacementField(
            centre, scale, a, np.zeros((0, 2)), np.zeros((0, 2)), np.zeros((3, 2))
        )
        mask = np.zeros(n, bool)
        mask[idx] = True
        return FitResult(field, mask, res, loo)
    a = irls_affine(u, disp[idx])
    bnorm = None if block is None else block / scale
    lam: float | None = None
    for _ in range(4):
        u = (src[idx] - centre) / scale
        h = np.column_stack([u, np.ones(len(u))])
        r = disp[idx] - h @ a.T
        sub = _subsample(u, max_points)
        if lam is None:  # choose the smoothing once; rejection passes reuse it
            lam = fit_tps(u[sub], r[sub], bnorm, lambdas).smoothing
        f = _tps_solve(u[sub], r[sub], lam, want_loo=True)
        loo = np.hypot(*f.loo_residuals.T)
        sigma = 1.4826 * float(np.median(loo)) + 1e-9
        bad = loo > max(3.0 * sigma, threshold)
        if not bad.any() or len(idx) - bad.sum() < 8:
            break
        idx = np.delete(idx, sub[bad])
    sub = _subsample((src[idx] - centre) / scale, max_points)
    idx = idx[sub]
    u = (src[idx] - centre) / scale
    h = np.column_stack([u, np.ones(len(u))])
    r = disp[idx] - h @ a.T
    f = fit_tps(u, r, bnorm, lambdas)
    field = DisplacementField(centre, scale, a, u.copy(), f.weights, f.poly, f.smoothing)
    res = disp[idx] - field(src[idx])
    mask = np.zeros(n, bool)
    mask[idx] = True
    return FitResult(field, mask, res, f.loo_residuals)


def _subsample(u: Array, max_points: int) -> Array:
    """At most ``max_points`` indices, spread evenly in space (the spline solve is cubic)."""
    n = len(u)
    if n <= max_points:
        return np.arange(n)
    cells = int(np.ceil(np.sqrt(max_points)))
    lo, hi = u.min(axis=0), u.max(axis=0)
    cell = np.floor((u - lo) / np.maximum(hi - lo, 1e-12) * (cells - 1e-9)).astype(int)
    key = cell[:, 0] * cells + cell[:, 1]
    _, first = np.unique(key, return_index=True)
    if len(first) >= max_points:
        return np.sort(first[:max_points])
    rest = np.setdiff1d(np.arange(n), first)
    extra = np.random.default_rng(0).choice(rest, max_points - len(first), replace=False)
    return np.sort(np.concatenate([first, extra]))
