"""Common grid: both images on one working grid in the optical CRS, through georeferencing.

Inputs without a CRS are taken to share one pixel grid: their transforms (identity for a
plain PNG) are used as they are, in a placeholder CRS common to both.
"""

from __future__ import annotations

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import Resampling, reproject
from rasterio.warp import transform as warp_transform

from sn9cloud.engine.types import Array, GeoImage, Grid
from sn9cloud.errors import InputError

#: Placeholder CRS for inputs that carry none (used identically for both, so it cancels).
PIXEL_CRS = CRS.from_epsg(3857)


def check_crs_pair(optical_crs: CRS | None, sar_crs: CRS | None) -> None:
    """Refuse to mix a georeferenced image with one that has no CRS: which grid they share
    would be a guess."""
    if (optical_crs is None) != (sar_crs is None):
        which = "optical" if optical_crs is None else "SAR"
        raise InputError(
            f"the {which} image has no CRS while the other has one: "
            "georeference both or neither"
        )


def effective_crs(crs: CRS | None) -> CRS:
    return PIXEL_CRS if crs is None else crs


def working_factor(optical: Grid, sar: Grid, max_size: int) -> float:
    """How many optical pixels one working pixel spans: no finer than the coarser of the
    two images, and no more than ``max_size`` pixels on the longer side."""
    ow, oh = optical.pixel_size
    sw, sh = sar.pixel_size
    same_units = optical.crs is not None and sar.crs is not None and (
        optical.crs.linear_units == sar.crs.linear_units
    )
    ratio = max(sw / ow, sh / oh) if (same_units or optical.crs is None) else 1.0
    factor = max(1.0, ratio)
    longest = max(optical.width, optical.height) / factor
    if longest > max_size:
        factor *= longest / max_size
    return float(factor)


def resample_to(image: GeoImage, grid: Grid, is_sar: bool,
                threads: int = 1) -> tuple[Array, Array]:
    """One float32 band of ``image`` on ``grid`` (area-averaged when coarser) and a mask of
    where it has data."""
    bands = image.bands.astype(np.float32)
    valid = image.valid_mask()
    src = np.where(valid[None], bands, np.nan).astype(np.float32)
    if not is_sar and src.shape[0] >= 3:
        src = (0.299 * src[0] + 0.587 * src[1] + 0.114 * src[2])[None]
    elif src.shape[0] > 1:
        src = np.nanmean(src, axis=0)[None] if np.isfinite(src).any() else src[:1]
    dst = np.full((1, grid.height, grid.width), np.nan, np.float32)
    reproject(
        source=src,
        destination=dst,
        src_transform=image.transform,
        src_crs=effective_crs(image.crs),
        src_nodata=np.nan,
        dst_transform=grid.transform,
        dst_crs=effective_crs(grid.crs),
        dst_nodata=np.nan,
        resampling=Resampling.average,
        num_threads=threads,
    )
    out = dst[0]
    return out, np.isfinite(out)


def apply_affine(t: Affine, xy: Array) -> Array:
    """``t`` applied to (N, 2) points, vectorised."""
    return np.stack([t.a * xy[:, 0] + t.b * xy[:, 1] + t.c,
                     t.d * xy[:, 0] + t.e * xy[:, 1] + t.f], axis=1)


def linear_inverse(t: Affine) -> Array:
    """(2, 2) inverse of ``t``'s linear part: map-unit vectors to pixel-unit vectors."""
    inv = ~Affine(t.a, t.b, 0.0, t.d, t.e, 0.0)
    return np.array([[inv.a, inv.b], [inv.d, inv.e]])


def pixel_centres_to_map(transform: Affine, xy: Array) -> Array:
    """Map coordinates of pixel-index positions (index i is the centre of pixel i)."""
    return apply_affine(transform, xy + 0.5)


def map_to_pixel_centres(transform: Affine, pts: Array) -> Array:
    return apply_affine(~transform, pts) - 0.5


def reproject_points(pts: Array, src: CRS | None, dst: CRS | None) -> Array:
    if src is None or dst is None or src == dst or len(pts) == 0:
        return pts
    xs, ys = warp_transform(src, dst, pts[:, 0].tolist(), pts[:, 1].tolist())
    return np.stack([np.asarray(xs), np.asarray(ys)], axis=1)


def sn9_offsets(
    optical: Grid, sar: Grid, opt_pix: Array, sar_map_in_optical_crs: Array
) -> Array:
    """The SpaceNet 9 offset (dx, dy in optical pixels) of optical pixel indices whose
    features lie, in the SAR image's own geocoding, at the given map points (optical CRS).

    The convention uses pixel upper-left corners: the SAR pixel index of the point is
    taken in SAR pixel units, then its corner is compared with the optical pixel's corner.
    """
    q_sar = reproject_points(sar_map_in_optical_crs, optical.crs, sar.crs)
    s_idx = map_to_pixel_centres(sar.transform, q_sar)
    corner = reproject_points(apply_affine(sar.transform, s_idx), sar.crs, optical.crs)
    d = corner - apply_affine(optical.transform, opt_pix)
    return d @ linear_inverse(optical.transform).T
