"""Dense local matching: normalised cross-correlation of structure features on a grid.

All templates of one pass are matched in one batched FFT, so the cost is a few array
operations whatever the number of points, not a Python loop per point.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft

from sn9cloud.engine.executor import SERIAL, Executor
from sn9cloud.engine.types import Array

CHUNK = 256


@dataclass(frozen=True)
class LocalMatches:
    """Matches in working-grid pixel coordinates (x, y): src[i] in the reference image
    corresponds to dst[i] in the moving image."""

    src: Array  # (N, 2) float64
    dst: Array  # (N, 2) float64
    ncc: Array  # (N,) peak normalised cross-correlation
    margin: Array  # (N,) peak minus best secondary peak: distinctness
    valid: Array  # (N,) bool: a peak inside the search range with enough structure


def grid_points(width: int, height: int, step: int, border: int) -> Array:
    """Template centres on a regular lattice, at least ``border`` px from every edge."""
    if width < 2 * border + 1 or height < 2 * border + 1:
        return np.zeros((0, 2))
    xs = np.arange(border, width - border, step, dtype=np.float64)
    ys = np.arange(border, height - border, step, dtype=np.float64)
    # centre the lattice in the image
    xs += (width - border - 1 - xs[-1]) / 2.0 if len(xs) else 0.0
    ys += (height - border - 1 - ys[-1]) / 2.0 if len(ys) else 0.0
    gx, gy = np.meshgrid(xs, ys)
    return np.stack([gx.ravel(), gy.ravel()], axis=1)


@dataclass(frozen=True)
class Padded:
    """An (H, W, C) image zero-padded once by ``pad`` on every side, to cut windows from."""

    a: Array
    pad: int
    h: int
    w: int

    @classmethod
    def of(cls, f: Array, pad: int) -> Padded:
        f3 = f if f.ndim == 3 else f[..., None]
        return cls(np.pad(f3, ((pad, pad), (pad, pad), (0, 0))), pad, f3.shape[0], f3.shape[1])


def _windows(f: Padded, corners: Array, size: int) -> tuple[Array, Array]:
    """Cut (N, size, size, C) windows with upper-left corners ``corners`` (ints); the part
    outside the image is zero. Returns the windows and the fraction of each inside."""
    h, w, pad = f.h, f.w, size
    cx = np.clip(corners[:, 0] + pad, 0, w + pad).astype(np.intp) + (f.pad - pad)
    cy = np.clip(corners[:, 1] + pad, 0, h + pad).astype(np.intp) + (f.pad - pad)
    idx = np.arange(size)
    rows = cy[:, None] + idx[None, :]
    cols = cx[:, None] + idx[None, :]
    win = f.a[rows[:, :, None], cols[:, None, :]]
    ix0 = np.clip(corners[:, 0], 0, w)
    ix1 = np.clip(corners[:, 0] + size, 0, w)
    iy0 = np.clip(corners[:, 1], 0, h)
    iy1 = np.clip(corners[:, 1] + size, 0, h)
    inside = (ix1 - ix0) * (iy1 - iy0) / float(size * size)
    return win, inside


@dataclass(frozen=True)
class Integrals:
    """Integral images of a zero-padded feature image: box sums of every search window
    come from four lookups each instead of a cumulative sum per window."""

    pad: int
    s1: Array  # (H + 2 pad + 1, W + 2 pad + 1, C) sums of features
    s2: Array  # (H + 2 pad + 1, W + 2 pad + 1) sums of squares over channels

    @classmethod
    def of_padded(cls, f: Padded) -> Integrals:
        fp = f.a.astype(np.float64)
        s1 = np.zeros((fp.shape[0] + 1, fp.shape[1] + 1, fp.shape[2]))
        np.cumsum(fp, axis=0, out=s1[1:, 1:])
        np.cumsum(s1[1:, 1:], axis=1, out=s1[1:, 1:])
        sq = (fp * fp).sum(axis=2)
        s2 = np.zeros((sq.shape[0] + 1, sq.shape[1] + 1))
        np.cumsum(sq, axis=0, out=s2[1:, 1:])
        np.cumsum(s2[1:, 1:], axis=1, out=s2[1:, 1:])
        return cls(f.pad, s1, s2)

    def boxes(self, ys: Array, xs: Array, t: int) -> tuple[Array, Array]:
        """Box sums (N, ny, nx, C) and (N, ny, nx) of the t x t boxes with upper-left
        corners at padded rows ``ys`` (N, ny) and columns ``xs`` (N, nx)."""
        y0, x0 = ys[:, :, None], xs[:, None, :]

        def box(a: Array) -> Array:
            out: Array = a[y0 + t, x0 + t] - a[y0, x0 + t] - a[y0 + t, x0] + a[y0, x0]
            return out

        return box(self.s1), box(self.s2)


@dataclass(frozen=True)
class _Prepared:
    """One pass's inputs, padded and integrated once for all its chunks of points."""

    ref: Padded
    mov: Padded
    ref_valid: Padded | None
    mov_valid: Padded | None
    mov_integrals: Integrals

    @classmethod
    def of(cls, ref: Array, mov: Array, ref_valid: Array | None,
           mov_valid: Array | None, pad: int) -> _Prepared:
        movp = Padded.of(mov, pad)
        return cls(
            Padded.of(ref, pad), movp,
            None if ref_valid is None else Padded.of(ref_valid.astype(np.float32), pad),
            None if mov_valid is None else Padded.of(mov_valid.astype(np.float32), pad),
            Integrals.of_padded(movp),
        )


def _ncc_surfaces(
    p: _Prepared, centres: Array, predicted: Array, half: int, radius: int, threads: int
) -> tuple[Array, Array, Array, Array]:
    """NCC of each template of the reference around ``centres`` with the moving image over
    integer lags in [-radius, radius]^2 around ``centres + predicted``.

    Returns (surfaces (N, 2R+1, 2R+1), integer search origins (N, 2), template energy (N,),
    usable (N,) bool).
    """
    t = 2 * half
    L = t + 2 * radius
    nlag = 2 * radius + 1
    c_int = np.round(centres).astype(np.int64)
    m_int = np.round(centres + predicted).astype(np.int64)
    tw, tin = _windows(p.ref, c_int - half, t)
    sw, sin = _windows(p.mov, m_int - half - radius, L)
    usable = (tin > 0.999) & (sin > 0.75)
    if p.ref_valid is not None:
        vw, _ = _windows(p.ref_valid, c_int - half, t)
        usable &= vw.reshape(len(vw), -1).mean(axis=1) > 0.9
    if p.mov_valid is not None:
        vw, _ = _windows(p.mov_valid, m_int - half - radius, L)
        usable &= vw.reshape(len(vw), -1).mean(axis=1) > 0.75
    tw = tw.astype(np.float32)
    tw -= tw.mean(axis=(1, 2), keepdims=True)
    tnorm = np.sqrt((tw * tw).sum(axis=(1, 2, 3), dtype=np.float64))
    sw = sw.astype(np.float32)
    ft = sfft.rfft2(tw, s=(L, L), axes=(1, 2), workers=threads)
    fs = sfft.rfft2(sw, axes=(1, 2), workers=threads)
    corr = sfft.irfft2((fs * np.conj(ft)).sum(axis=3), s=(L, L), axes=(1, 2), workers=threads)
    num = corr[:, :nlag, :nlag]
    n = float(t * t)
    # box sums of every lag's window from the integral images, at the same (clipped)
    # window origins as `_windows`, in padded coordinates
    mv = p.mov
    oy = np.clip(m_int[:, 1] - half - radius + L, 0, mv.h + L) + (mv.pad - L)
    ox = np.clip(m_int[:, 0] - half - radius + L, 0, mv.w + L) + (mv.pad - L)
    lags = np.arange(nlag)
    b1, sq = p.mov_integrals.boxes(oy[:, None] + lags[None], ox[:, None] + lags[None], t)
    s1 = sq - (b1 * b1).sum(axis=3) / n
    s2 = np.sqrt(np.maximum(s1, 1e-12))
    ncc = num / (s2 * tnorm[:, None, None] + 1e-9)
    origins = m_int - radius  # lag (0,0) means displacement m_int - radius - c_int
    return ncc, origins - c_int, tnorm / np.sqrt(n), usable


def subpixel_peaks(surf: Array, iy: Array, ix: Array) -> tuple[Array, Array]:
    """Parabolic sub-pixel refinement of each (N, L, L) surface's peak at interior
    integer (iy, ix): (dx, dy) in [-0.5, 0.5], 0 where the peak is not a strict maximum."""
    n = np.arange(len(surf))
    c = surf[n, iy, ix]
    l_ = surf[n, iy, ix - 1]
    r = surf[n, iy, ix + 1]
    u = surf[n, iy - 1, ix]
    d = surf[n, iy + 1, ix]
    dx_den = l_ - 2 * c + r
    dy_den = u - 2 * c + d
    with np.errstate(divide="ignore", invalid="ignore"):
        dx = np.where(dx_den < 0, 0.5 * (l_ - r) / dx_den, 0.0)
        dy = np.where(dy_den < 0, 0.5 * (u - d) / dy_den, 0.0)
    return np.clip(dx, -0.5, 0.5), np.clip(dy, -0.5, 0.5)


@dataclass(frozen=True)
class MatchJob:
    """One window job: the points of one tile, with crops of both images big enough for
    every template and search window of those points."""

    ref: Array  # (h, w, C) crop
    mov: Array
    ref_valid: Array | None
    mov_valid: Array | None
    ref_origin: Array  # (x, y) of the crop's upper-left pixel in the full image
    mov_origin: Array
    centres: Array  # (N, 2) full-image coordinates
    predicted: Array
    half: int
    radius: int
    min_energy: float
    threads: int = 1  # FFT workers where the job runs


def _crop(a: Array | None, pts: Array, margin: int) -> tuple[Array | None,
                                                                         Array]:
    h, w = (a.shape[0], a.shape[1]) if a is not None else (0, 0)
    lo = np.floor(pts.min(axis=0)).astype(int) - margin
    hi = np.ceil(pts.max(axis=0)).astype(int) + margin + 1
    x0, y0 = max(lo[0], 0), max(lo[1], 0)
    x1, y1 = min(hi[0], w), min(hi[1], h)
    if a is None:
        return None, np.array([x0, y0])
    if x1 <= x0 or y1 <= y0:  # search entirely outside: an empty crop, every match unusable
        return a[:1, :1] * 0, np.array([0, 0])
    return np.ascontiguousarray(a[y0:y1, x0:x1]), np.array([x0, y0])


def _crop_image(a: Array, pts: Array, margin: int) -> tuple[Array, Array]:
    crop, origin = _crop(a, pts, margin)
    assert crop is not None
    return crop, origin


def plan_match_jobs(
    ref: Array,
    mov: Array,
    centres: Array,
    predicted: Array,
    half: int,
    radius: int,
    ref_valid: Array | None = None,
    mov_valid: Array | None = None,
    min_energy: float = 0.05,
    tile: int = 512,
    threads: int = 1,
) -> tuple[list[MatchJob], list[Array]]:
    """Split a matching pass into window jobs by tiles of ``tile`` px; also each job's
    indices into ``centres``."""
    margin = 2 * half + 2 * radius + 2
    key = np.floor(centres / tile).astype(int)
    order = np.lexsort((key[:, 0], key[:, 1]))
    jobs, indices = [], []
    _, starts = np.unique(key[order], axis=0, return_index=True)
    for part in np.split(order, np.sort(starts)[1:]):
        c, p = centres[part], predicted[part]
        r_crop, r_org = _crop_image(ref, c, margin)
        m_crop, m_org = _crop_image(mov, c + p, margin)
        rv, _ = _crop(ref_valid, c, margin) if ref_valid is not None else (None, None)
        mv, _ = _crop(mov_valid, c + p, margin) if mov_valid is not None else (None, None)
        jobs.append(MatchJob(r_crop, m_crop, rv, mv, r_org, m_org, c, p, half, radius,
                             min_energy, threads))
        indices.append(part)
    return jobs, indices


def run_match_job(job: MatchJob) -> LocalMatches:
    """The matches of one window job, in full-image coordinates."""
    c = job.centres - job.ref_origin
    p = job.predicted - (job.mov_origin - job.ref_origin)
    m = _match_all(job.ref, job.mov, c, p, job.half, job.radius, job.ref_valid,
                   job.mov_valid, job.min_energy, job.threads)
    return LocalMatches(m.src + job.ref_origin, m.dst + job.mov_origin, m.ncc, m.margin,
                        m.valid)


def match_points(
    ref: Array,
    mov: Array,
    centres: Array,
    predicted: Array,
    half: int,
    radius: int,
    ref_valid: Array | None = None,
    mov_valid: Array | None = None,
    min_energy: float = 0.05,
    executor: Executor | None = None,
    tile: int = 512,
) -> LocalMatches:
    """Find, for each centre in ``ref``, the sub-pixel position in ``mov`` with the highest
    feature NCC within ``radius`` of ``centre + predicted``: one window job per tile of
    points, run by ``executor`` (in this process by default)."""
    n = len(centres)
    if n == 0:
        return _match_all(ref, mov, centres, predicted, half, radius)
    ex = executor or SERIAL
    jobs, indices = plan_match_jobs(ref, mov, centres, predicted, half, radius, ref_valid,
                                    mov_valid, min_energy, tile, ex.threads)
    results = ex.map(run_match_job, [(j,) for j in jobs])
    out = {f: np.empty((n, 2)) if f in ("src", "dst") else np.empty(n, bool if f == "valid"
                                                                       else float)
           for f in ("src", "dst", "ncc", "margin", "valid")}
    for idx, r in zip(indices, results, strict=True):
        for f in out:
            out[f][idx] = getattr(r, f)
    return LocalMatches(**out)


def _match_all(
    ref: Array,
    mov: Array,
    centres: Array,
    predicted: Array,
    half: int,
    radius: int,
    ref_valid: Array | None = None,
    mov_valid: Array | None = None,
    min_energy: float = 0.05,
    threads: int = 1,
) -> LocalMatches:
    """Find, for each centre in ``ref``, the sub-pixel position in ``mov`` with the highest
    feature NCC within ``radius`` of ``centre + predicted``. Batches of ``CHUNK`` points
    bound the memory of the FFT stacks."""
    if len(centres) == 0:
        z = np.zeros((0, 2))
        e = np.zeros(0)
        return LocalMatches(z, z, e, e, np.zeros(0, bool))
    prep = _Prepared.of(ref, mov, ref_valid, mov_valid, 2 * half + 2 * radius)
    parts = [_match_chunk(prep, centres[i : i + CHUNK], predicted[i : i + CHUNK], half,
                          radius, min_energy, threads)
             for i in range(0, len(centres), CHUNK)]
    if len(parts) == 1:
        return parts[0]
    return LocalMatches(*(np.concatenate([getattr(p, f) for p in parts])
                          for f in ("src", "dst", "ncc", "margin", "valid")))


def _match_chunk(p: _Prepared, centres: Array, predicted: Array, half: int,
                 radius: int, min_energy: float, threads: int) -> LocalMatches:
    surf, base, energy, usable = _ncc_surfaces(p, centres, predicted, half, radius, threads)
    nlag = surf.shape[1]
    flat = surf.reshape(len(surf), -1)
    k = flat.argmax(axis=1)
    iy, ix = np.divmod(k, nlag)
    peak = flat[np.arange(len(flat)), k]
    interior = (ix > 0) & (ix < nlag - 1) & (iy > 0) & (iy < nlag - 1)
    ixc = np.clip(ix, 1, nlag - 2)
    iyc = np.clip(iy, 1, nlag - 2)
    sx, sy = subpixel_peaks(surf, iyc, ixc)
    # distinctness: the best peak at least 3 px away from the main one
    yy, xx = np.mgrid[0:nlag, 0:nlag]
    far = (np.abs(yy[None] - iy[:, None, None]) > 2) | (np.abs(xx[None] - ix[:, None, None]) > 2)
    second = np.where(far, surf, -1.0).reshape(len(surf), -1).max(axis=1)
    src = np.round(centres)
    dst = src + base + np.stack([ix + sx, iy + sy], axis=1)
    valid = usable & interior & (energy > min_energy) & np.isfinite(peak)
    return LocalMatches(
        src=src,
        dst=dst,
        ncc=peak,
        margin=peak - second,
        valid=valid,
    )
