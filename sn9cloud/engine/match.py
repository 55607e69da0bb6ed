"""Dense local matching: normalised cross-correlation of structure features on a grid.

All templates of one pass are matched in one batched FFT, so the cost is a few array
operations whatever the number of points, not a Python loop per point.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft

CHUNK = 256


@dataclass(frozen=True)
class LocalMatches:
    """Matches in working-grid pixel coordinates (x, y): src[i] in the reference image
    corresponds to dst[i] in the moving image."""

    src: np.ndarray  # (N, 2) float64
    dst: np.ndarray  # (N, 2) float64
    ncc: np.ndarray  # (N,) peak normalised cross-correlation
    margin: np.ndarray  # (N,) peak minus best secondary peak: distinctness
    valid: np.ndarray  # (N,) bool: a peak inside the search range with enough structure


def grid_points(width: int, height: int, step: int, border: int) -> np.ndarray:
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


def _windows(f: np.ndarray, corners: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut (N, size, size, C) windows with upper-left corners ``corners`` (ints); the part
    outside ``f`` is zero. Returns the windows and the fraction of each inside ``f``."""
    h, w, _ = f.shape
    pad = size
    fp = np.pad(f, ((pad, pad), (pad, pad), (0, 0)))
    cx = np.clip(corners[:, 0] + pad, 0, w + pad).astype(np.intp)
    cy = np.clip(corners[:, 1] + pad, 0, h + pad).astype(np.intp)
    idx = np.arange(size)
    rows = cy[:, None] + idx[None, :]
    cols = cx[:, None] + idx[None, :]
    win = fp[rows[:, :, None], cols[:, None, :]]
    ix0 = np.clip(corners[:, 0], 0, w)
    ix1 = np.clip(corners[:, 0] + size, 0, w)
    iy0 = np.clip(corners[:, 1], 0, h)
    iy1 = np.clip(corners[:, 1] + size, 0, h)
    inside = (ix1 - ix0) * (iy1 - iy0) / float(size * size)
    return win, inside


def _box_sums(a: np.ndarray, t: int, nlag: int) -> np.ndarray:
    """Sums of ``a`` (N, L, L, ...) over every t x t box whose corner is in [0, nlag)^2."""
    ii = np.zeros((a.shape[0], a.shape[1] + 1, a.shape[2] + 1, *a.shape[3:]), dtype=a.dtype)
    ii[:, 1:, 1:] = a.cumsum(axis=1).cumsum(axis=2)
    return (
        ii[:, t : t + nlag, t : t + nlag]
        - ii[:, 0:nlag, t : t + nlag]
        - ii[:, t : t + nlag, 0:nlag]
        + ii[:, 0:nlag, 0:nlag]
    )


def ncc_surfaces(
    ref: np.ndarray,
    mov: np.ndarray,
    centres: np.ndarray,
    predicted: np.ndarray,
    half: int,
    radius: int,
    ref_valid: np.ndarray | None = None,
    mov_valid: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """NCC of each template of ``ref`` around ``centres`` with ``mov`` over integer lags in
    [-radius, radius]^2 around ``centres + predicted``.

    Returns (surfaces (N, 2R+1, 2R+1), integer search origins (N, 2), template energy (N,),
    usable (N,) bool).
    """
    t = 2 * half
    L = t + 2 * radius
    nlag = 2 * radius + 1
    c_int = np.round(centres).astype(np.int64)
    m_int = np.round(centres + predicted).astype(np.int64)
    tw, tin = _windows(ref, c_int - half, t)
    sw, sin = _windows(mov, m_int - half - radius, L)
    usable = (tin > 0.999) & (sin > 0.75)
    if ref_valid is not None:
        vw, _ = _windows(ref_valid[..., None].astype(np.float32), c_int - half, t)
        usable &= vw.reshape(len(vw), -1).mean(axis=1) > 0.9
    if mov_valid is not None:
        vw, _ = _windows(mov_valid[..., None].astype(np.float32), m_int - half - radius, L)
        usable &= vw.reshape(len(vw), -1).mean(axis=1) > 0.75
    tw = tw.astype(np.float32)
    tw -= tw.mean(axis=(1, 2), keepdims=True)
    tnorm = np.sqrt((tw * tw).sum(axis=(1, 2, 3), dtype=np.float64))
    sw = sw.astype(np.float32)
    ft = sfft.rfft2(tw, s=(L, L), axes=(1, 2), workers=-1)
    fs = sfft.rfft2(sw, axes=(1, 2), workers=-1)
    corr = sfft.irfft2((fs * np.conj(ft)).sum(axis=3), s=(L, L), axes=(1, 2), workers=-1)
    num = corr[:, :nlag, :nlag]
    n = float(t * t)
    b1 = _box_sums(sw, t, nlag).astype(np.float64)
    s1 = _box_sums((sw * sw).sum(axis=3, dtype=np.float64), t, nlag) - (b1 * b1).sum(axis=3) / n
    s2 = np.sqrt(np.maximum(s1, 1e-12))
    ncc = num / (s2 * tnorm[:, None, None] + 1e-9)
    origins = m_int - radius  # lag (0,0) means displacement m_int - radius - c_int
    return ncc, origins - c_int, tnorm / np.sqrt(n), usable


def _subpixel(surf: np.ndarray, iy: np.ndarray, ix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Parabolic sub-pixel refinement of each surface's peak in x and in y."""
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


def match_points(
    ref: np.ndarray,
    mov: np.ndarray,
    centres: np.ndarray,
    predicted: np.ndarray,
    half: int,
    radius: int,
    ref_valid: np.ndarray | None = None,
    mov_valid: np.ndarray | None = None,
    min_energy: float = 0.05,
) -> LocalMatches:
    """Find, for each centre in ``ref``, the sub-pixel position in ``mov`` with the highest
    feature NCC within ``radius`` of ``centre + predicted``. Batches of ``CHUNK`` points
    bound the memory of the FFT stacks."""
    if len(centres) > CHUNK:
        parts = [
            match_points(ref, mov, centres[i : i + CHUNK], predicted[i : i + CHUNK], half,
                         radius, ref_valid, mov_valid, min_energy)
            for i in range(0, len(centres), CHUNK)
        ]
        return LocalMatches(*(np.concatenate([getattr(p, f) for p in parts])
                              for f in ("src", "dst", "ncc", "margin", "valid")))
    if len(centres) == 0:
        z = np.zeros((0, 2))
        e = np.zeros(0)
        return LocalMatches(z, z, e, e, np.zeros(0, bool))
    surf, base, energy, usable = ncc_surfaces(
        ref, mov, centres, predicted, half, radius, ref_valid, mov_valid
    )
    nlag = surf.shape[1]
    flat = surf.reshape(len(surf), -1)
    k = flat.argmax(axis=1)
    iy, ix = np.divmod(k, nlag)
    peak = flat[np.arange(len(flat)), k]
    interior = (ix > 0) & (ix < nlag - 1) & (iy > 0) & (iy < nlag - 1)
    ixc = np.clip(ix, 1, nlag - 2)
    iyc = np.clip(iy, 1, nlag - 2)
    sx, sy = _subpixel(surf, iyc, ixc)
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
