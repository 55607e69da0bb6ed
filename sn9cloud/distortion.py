"""Known geocoding errors for co-registered pairs: the ground truth of benchmarks, sample
catalogs and training data.

A distortion is a global shift and scale (carried by the SAR geotransform, as a real
geocoding error would be) plus an optional smooth non-rigid warp (carried by the SAR
pixels). All quantities are in optical pixel units; ``truth_offsets`` gives the exact
SpaceNet 9 offsets it implies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from affine import Affine


@dataclass(frozen=True)
class Distortion:
    shift: tuple[float, float]  # px
    scale: float
    centre: tuple[float, float]  # px, scaling centre
    bumps: np.ndarray  # (K, 5): cx, cy, sigma, ax, ay of Gaussian bumps (px)

    def displacement(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """u(p): where (in optical px, map-centre terms) the SAR geocoding puts the feature
        that the optical geocoding puts at p = (x, y)."""
        cx, cy = self.centre
        ux = (self.scale - 1.0) * (x - cx) + self.shift[0]
        uy = (self.scale - 1.0) * (y - cy) + self.shift[1]
        for bx, by, s, ax, ay in self.bumps:
            g = np.exp(-((x - bx) ** 2 + (y - by) ** 2) / (2 * s * s))
            ux = ux + ax * g
            uy = uy + ay * g
        return ux, uy

    def to_dict(self) -> dict[str, Any]:
        return {"shift": list(self.shift), "scale": self.scale, "centre": list(self.centre),
                "bumps": np.asarray(self.bumps).tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Distortion:
        return cls(tuple(d["shift"]), float(d["scale"]), tuple(d["centre"]),
                   np.asarray(d["bumps"], float).reshape(-1, 5))

    def sar_pixel_affine(self) -> Affine:
        """SAR pixel coordinates -> optical pixel coordinates (the geocoding error's affine
        part), to be composed with the optical geotransform."""
        cx, cy = self.centre
        s = self.scale
        return Affine(s, 0, cx * (1 - s) + self.shift[0], 0, s, cy * (1 - s) + self.shift[1])


def random_distortion(
    rng: np.random.Generator,
    width: int,
    height: int,
    max_shift: float = 0.15,
    max_scale: float = 0.03,
    nonrigid: float = 0.0,
) -> Distortion:
    """Shift up to ``max_shift`` of the side, scale up to ``max_scale``, and a non-rigid
    warp of peak magnitude up to ``nonrigid`` of the side (0: none)."""
    side = float(min(width, height))
    shift = (
        float(rng.uniform(-max_shift, max_shift) * width),
        float(rng.uniform(-max_shift, max_shift) * height),
    )
    scale = float(1.0 + rng.uniform(-max_scale, max_scale))
    bumps = np.zeros((0, 5))
    if nonrigid > 0:
        k = 3
        bumps = np.column_stack([
            rng.uniform(0.1, 0.9, k) * width,
            rng.uniform(0.1, 0.9, k) * height,
            rng.uniform(0.25, 0.4, k) * side,
            rng.normal(0, 1, k),
            rng.normal(0, 1, k),
        ])
        d = Distortion((0.0, 0.0), 1.0, (0.0, 0.0), bumps)
        yy, xx = np.mgrid[0:height:4, 0:width:4].astype(np.float64)
        ux, uy = d.displacement(xx, yy)
        peak = float(np.max(np.hypot(ux, uy)))
        target = rng.uniform(0.5, 1.0) * nonrigid * side
        bumps[:, 3:] *= target / max(peak, 1e-9)
    return Distortion(shift, scale, ((width - 1) / 2.0, (height - 1) / 2.0), bumps)


def _invert(d: Distortion, mx: np.ndarray, my: np.ndarray, iters: int = 30) -> tuple[Any, ...]:
    """p such that p + u(p) = m, by fixed-point iteration (u is smooth and small)."""
    px, py = mx.copy(), my.copy()
    for _ in range(iters):
        ux, uy = d.displacement(px, py)
        px, py = mx - ux, my - uy
    return px, py


def distort_sar(
    sar: np.ndarray, d: Distortion, nodata: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Resample a SAR image co-registered with the optical (same pixel grid) so that, on
    the pixel grid given by ``d.sar_pixel_affine()``, it carries the distortion. Returns
    (pixels, valid mask)."""
    h, w = sar.shape[-2:]
    a = d.sar_pixel_affine()
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    # centre of SAR pixel (x, y) in optical pixel-centre coordinates
    mx = a.a * (xx + 0.5) + a.c - 0.5
    my = a.e * (yy + 0.5) + a.f - 0.5
    px, py = _invert(d, mx, my)
    src = np.asarray(sar, np.float32)
    mapx, mapy = px.astype(np.float32), py.astype(np.float32)
    valid = (px >= 0) & (px <= w - 1) & (py >= 0) & (py <= h - 1)
    if src.ndim == 3:
        out = np.stack([cv2.remap(b, mapx, mapy, cv2.INTER_LINEAR) for b in src])
        out[:, ~valid] = nodata
    else:
        out = cv2.remap(src, mapx, mapy, cv2.INTER_LINEAR)
        out[~valid] = nodata
    return out, valid


def truth_offsets(d: Distortion, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """(2, H, W) exact SpaceNet 9 offsets of the distortion on an optical grid with square
    pixels, and the mask of optical pixels whose feature lies inside the SAR image."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    ux, uy = d.displacement(xx, yy)
    s = d.scale
    off = np.stack([ux + 0.5 * (1 - s), uy + 0.5 * (1 - s)]).astype(np.float32)
    a = ~d.sar_pixel_affine()
    # SAR pixel index holding the feature: centre of optical px p maps to p + u
    sx = a.a * (xx + ux + 0.5) + a.c - 0.5
    sy = a.e * (yy + uy + 0.5) + a.f - 0.5
    inside = (sx >= 0) & (sx <= width - 1) & (sy >= 0) & (sy <= height - 1)
    return off, inside


def truth_tiepoints(
    d: Distortion, width: int, height: int, sar_factor: float = 1.0, step: int = 4
) -> np.ndarray:
    """(N, 4) int tie-points ``sar_row, sar_col, optical_row, optical_col`` (SpaceNet 9
    CSV order) of the distortion on a lattice of optical pixels, for a distorted SAR image
    resampled by ``sar_factor`` (SAR pixels per distorted-grid pixel)."""
    yy, xx = np.mgrid[step // 2:height:step, step // 2:width:step].astype(np.float64)
    ux, uy = d.displacement(xx, yy)
    a = ~d.sar_pixel_affine()
    sx = a.a * (xx + ux + 0.5) + a.c  # distorted-grid pixel coordinates (corner origin)
    sy = a.e * (yy + uy + 0.5) + a.f
    sx, sy = sx * sar_factor - 0.5, sy * sar_factor - 0.5  # resampled, centre indices
    w2, h2 = round(width * sar_factor), round(height * sar_factor)
    inside = (sx >= 0) & (sx <= w2 - 1) & (sy >= 0) & (sy <= h2 - 1)
    tp = np.column_stack([np.round(sy[inside]), np.round(sx[inside]),
                          yy[inside], xx[inside]]).astype(np.int64)
    return tp
