"""Modality-robust structure features.

Raw intensities do not match across optical and SAR (contrast reverses, speckle, layover),
but the *orientation* of edges does. The features are channel features of oriented
gradients (CFOG, Ye et al. 2019): unsigned gradient energy in a few orientations, smoothed
in space and across orientation, normalised per pixel.
"""

from __future__ import annotations

import cv2
import numpy as np

from sn9cloud.engine.executor import Executor, LocalExecutor
from sn9cloud.engine.types import Array

N_ORIENTATIONS = 8


def to_intensity(array: Array, is_sar: bool, valid: Array | None = None) -> Array:
    """One float32 band in [0, 1]: luminance for optical, log-amplitude for SAR.

    SAR that is still linear power or amplitude (a wide dynamic range) goes through a log,
    which turns multiplicative speckle into additive noise so that gradients behave.
    """
    a = np.asarray(array, dtype=np.float32)
    if a.ndim == 3:
        if a.shape[0] >= 3 and not is_sar:
            a = 0.299 * a[0] + 0.587 * a[1] + 0.114 * a[2]
        else:
            a = a.mean(axis=0)
    mask = np.isfinite(a) if valid is None else (valid & np.isfinite(a))
    if not mask.any():
        return np.zeros(a.shape, np.float32)
    vals = a[mask]
    if is_sar:
        lo, med = float(np.percentile(vals, 1)), float(np.median(vals))
        if lo >= 0 and med > 0 and float(np.percentile(vals, 99.5)) / med > 30:
            a = np.log1p(np.maximum(a, 0) / med)
            vals = a[mask]
    lo, hi = np.percentile(vals, [1, 99])
    scale = float(hi - lo) if hi > lo else 1.0
    out: Array = np.clip((a - lo) / scale, 0.0, 1.0).astype(np.float32)
    out[~mask] = float(np.median(out[mask]))
    return out


#: rows of context a strip job needs on each side so that its filters see what the whole
#: image would give them (pre-smoothing, Sobel and the orientation blurs, with margin)
HALO = 24
STRIP = 256


def oriented_energy(intensity: Array, sigma: float = 1.2,
                    presmooth: float = 0.0) -> Array:
    """The unnormalised CFOG channels (H, W, N_ORIENTATIONS): all the filtering, local."""
    img = intensity
    if presmooth > 0:
        img = cv2.GaussianBlur(img, (0, 0), presmooth)
    gx = cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=3)
    chans = []
    for k in range(N_ORIENTATIONS):
        t = np.pi * k / N_ORIENTATIONS
        c = np.abs(gx * np.float32(np.cos(t)) + gy * np.float32(np.sin(t)))
        chans.append(cv2.GaussianBlur(c, (0, 0), sigma))
    f = np.stack(chans, axis=-1)
    # smooth across orientation with a circular [1, 2, 1] kernel
    return 0.5 * f + 0.25 * (np.roll(f, 1, axis=-1) + np.roll(f, -1, axis=-1))


def _strip_energy(chunk: Array, top: int, bottom: int, sigma: float,
                  presmooth: float) -> Array:
    """One window job: the channels of rows [top, bottom) of a strip cut with its halo."""
    return oriented_energy(chunk, sigma, presmooth)[top:bottom]


def structure_features(
    intensity: Array, sigma: float = 1.2, presmooth: float = 0.0,
    executor: Executor | None = None,
) -> Array:
    """CFOG features, shape (H, W, N_ORIENTATIONS), float32, unit L2 norm per pixel where
    there is structure and near zero where there is none.

    The filtering runs as strip jobs (rows plus a halo) on a distributed ``executor``; only
    the normalisation, which needs the whole image's mean energy, runs here. In this
    process the whole image is filtered at once: the strips would give the same, slower."""
    h = intensity.shape[0]
    if executor is None or isinstance(executor, LocalExecutor) or h <= STRIP:
        f = oriented_energy(intensity, sigma, presmooth)
    else:
        jobs = []
        for r in range(0, h, STRIP):
            a, b = max(r - HALO, 0), min(r + STRIP + HALO, h)
            jobs.append((intensity[a:b], r - a, min(r + STRIP, h) - a, sigma, presmooth))
        f = np.concatenate(executor.map(_strip_energy, jobs), axis=0)
    norm = np.sqrt((f * f).sum(axis=-1, keepdims=True))
    eps = 0.1 * float(np.mean(norm)) + 1e-6
    out: Array = (f / (norm + eps)).astype(np.float32)
    return out
