"""Coarse alignment: one global shift (and scale) from masked FFT cross-correlation of
structure features at low resolution.

Masked normalised cross-correlation (Padfield 2012) normalises every shift by the overlap
it actually has, so a large geocoding error (a small overlap) is not penalised against a
spurious peak near zero shift.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import scipy.fft as sfft

from sn9cloud.engine.types import Array


@dataclass(frozen=True)
class CoarseResult:
    shift: Array  # (2,) working px: a feature at p in the reference is at p*scale + shift
    scale: float
    peak: float  # NCC at the peak
    margin: float  # peak minus the best peak away from it
    centre: Array  # (2,) scaling centre, working px


def _masked_ncc(
    f1: Array, m1: Array, f2: Array, m2: Array, min_overlap: float, threads: int = 1
) -> Array:
    """NCC of f1 (reference) with f2 at every shift (dy, dx), FFT-wrapped, channels summed.

    Entry [dy, dx] compares f1(p) with f2(p + (dx, dy)).
    """
    h = f1.shape[0] + f2.shape[0]
    w = f1.shape[1] + f2.shape[1]
    shape = (sfft.next_fast_len(h), sfft.next_fast_len(w))

    def F(a: Array) -> Array:
        return sfft.rfft2(a, s=shape, axes=(0, 1), workers=threads)

    def corr(a_hat: Array, b_hat: Array) -> Array:
        # sum_p a(p) b(p + s)
        return sfft.irfft2(np.conj(a_hat) * b_hat, s=shape, axes=(0, 1), workers=threads)

    m1f = m1.astype(np.float64)
    m2f = m2.astype(np.float64)
    M1, M2 = F(m1f), F(m2f)
    overlap = corr(M1, M2)
    overlap = np.maximum(np.round(overlap), 0.0)
    c = f1.shape[2]
    g1 = f1 * m1f[..., None]
    g2 = f2 * m2f[..., None]
    G1, G2 = F(g1), F(g2)
    G1s, G2s = F(g1 * g1), F(g2 * g2)
    num = np.zeros(shape)
    d1 = np.zeros(shape)
    d2 = np.zeros(shape)
    ov = np.maximum(overlap, 1.0)
    for ch in range(c):
        s12 = corr(G1[..., ch], G2[..., ch])
        s1 = corr(G1[..., ch], M2)
        s2 = corr(M1, G2[..., ch])
        num += s12 - s1 * s2 / ov
        d1 += corr(G1s[..., ch], M2) - s1 * s1 / ov
        d2 += corr(M1, G2s[..., ch]) - s2 * s2 / ov
    den = np.sqrt(np.maximum(d1, 1e-12) * np.maximum(d2, 1e-12))
    ncc: Array = num / den
    need = min_overlap * min(m1.sum(), m2.sum())
    ncc[overlap < need] = -1.0
    return ncc


def parabola_vertex(a: float, b: float, c: float) -> float:
    """Sub-pixel offset in [-0.5, 0.5] of the maximum of the parabola through (-1, a),
    (0, b), (1, c); 0 where b is not a strict maximum."""
    den = a - 2 * b + c
    return float(np.clip(0.5 * (a - c) / den, -0.5, 0.5)) if den < 0 else 0.0


def correlation_peak(ncc: Array, max_shift: tuple[float, float],
                     exclude: int) -> tuple[Array, float, float]:
    """The highest NCC within ``max_shift`` (x, y) of an FFT-wrapped surface: its sub-pixel
    (dx, dy), its value, and its margin over the best value more than ``exclude`` px away."""
    hh, ww = ncc.shape
    dy = np.fft.fftfreq(hh, 1.0 / hh)
    dx = np.fft.fftfreq(ww, 1.0 / ww)
    allowed = (np.abs(dy)[:, None] <= max_shift[1]) & (np.abs(dx)[None, :] <= max_shift[0])
    s = np.where(allowed, ncc, -1.0)
    k = int(np.argmax(s))
    iy, ix = divmod(k, ww)
    best = float(s[iy, ix])
    # sub-pixel by parabola
    sx = parabola_vertex(s[iy, (ix - 1) % ww], best, s[iy, (ix + 1) % ww])
    sy = parabola_vertex(s[(iy - 1) % hh, ix], best, s[(iy + 1) % hh, ix])
    ring = (np.abs(((np.arange(hh) - iy + hh // 2) % hh) - hh // 2)[:, None] > exclude) | (
        np.abs(((np.arange(ww) - ix + ww // 2) % ww) - ww // 2)[None, :] > exclude
    )
    second = float(np.max(np.where(ring, s, -1.0)))
    return np.array([dx[ix] + sx, dy[iy] + sy]), best, best - second


def coarse_align(
    ref: Array,
    ref_valid: Array,
    mov: Array,
    mov_valid: Array,
    max_shift: tuple[float, float],
    scales: tuple[float, ...] = (1.0,),
    min_overlap: float = 0.3,
    threads: int = 1,
) -> CoarseResult:
    """Best global (shift, scale) between feature images on one grid.

    ``mov`` is rescaled about the image centre by each candidate scale; the scale with the
    highest NCC peak wins.
    """
    h, w = ref.shape[:2]
    centre = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    best: CoarseResult | None = None
    for s in scales:
        if s == 1.0:
            mv, mm = mov, mov_valid
        else:
            # resample mov so that mv(p) = mov(centre + s (p - centre))
            m = np.array([[s, 0, centre[0] * (1 - s)], [0, s, centre[1] * (1 - s)]], np.float32)
            flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
            mv = np.stack(
                [cv2.warpAffine(mov[..., i], m, (w, h), flags=flags) for i in range(mov.shape[2])],
                axis=-1,
            )
            mm = cv2.warpAffine(mov_valid.astype(np.uint8), m, (w, h), flags=cv2.INTER_NEAREST,
                                borderValue=0).astype(bool)
        ncc = _masked_ncc(ref, ref_valid, mv, mm, min_overlap, threads)
        shift, value, margin = correlation_peak(ncc, max_shift, exclude=3)
        if best is None or value > best.peak:
            # feature at p in ref is at p' in mv = p + shift; in mov: centre + s (p' - centre)
            best = CoarseResult(shift=shift, scale=s, peak=value, margin=margin, centre=centre)
    assert best is not None
    return best


def coarse_displacement(c: CoarseResult, pts: Array) -> Array:
    """Displacement predicted by the coarse result at reference points (working px)."""
    moved = c.centre + c.scale * (pts + c.shift - c.centre)
    return moved - pts
