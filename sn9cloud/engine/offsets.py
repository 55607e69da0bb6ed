"""The SpaceNet 9 offset map, evaluated window by window so that memory does not grow with
the scene: the field is evaluated on a lattice over each window and bilinearly
interpolated between nodes (the field is smooth on scales far above the lattice step)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from sn9cloud.engine.fit import DisplacementField
from sn9cloud.engine.grid import pixel_centres_to_map, sn9_offsets
from sn9cloud.engine.types import Array, Grid

Window = tuple[int, int, int, int]  # row_off, col_off, height, width


def windows(grid: Grid, block: int = 512) -> Iterator[Window]:
    for r in range(0, grid.height, block):
        for c in range(0, grid.width, block):
            yield r, c, min(block, grid.height - r), min(block, grid.width - c)


def _nodes(start: int, length: int, step: int) -> Array:
    n = np.arange(start, start + length, step, dtype=np.float64)
    if n[-1] != start + length - 1:
        n = np.append(n, start + length - 1)
    return n


def _interp_weights(nodes: Array, x: Array) -> tuple[Array, Array]:
    i = np.clip(np.searchsorted(nodes, x, side="right") - 1, 0, max(len(nodes) - 2, 0))
    if len(nodes) == 1:
        return np.zeros(len(x), int), np.zeros(len(x))
    t = (x - nodes[i]) / (nodes[i + 1] - nodes[i])
    return i, t


def lattice_step(field: DisplacementField, optical: Grid) -> int:
    """Lattice spacing (px) at which bilinear interpolation of the field stays far below
    0.05 px: the field bends on the scale of the matches' spread (``field.scale``), so
    interpolation error falls with (step / scale)^2; 8 px on a 256 px tile, 32 px on a
    10,000 px scene."""
    if field.is_affine:
        return 64  # exactly linear: any spacing is exact
    scale_px = field.scale / float(np.mean(optical.pixel_size))
    return int(np.clip(scale_px // 160, 1, 4)) * 8


def offset_window(
    field: DisplacementField, optical: Grid, sar: Grid, window: Window, step: int | None = None
) -> Array:
    """(2, h, w) float32: band 0 dx, band 1 dy, SpaceNet 9 convention, for one window.

    The field is evaluated exactly on a lattice and interpolated bilinearly between."""
    step = step or lattice_step(field, optical)
    r0, c0, h, w = window
    rn = _nodes(r0, h, step)
    cn = _nodes(c0, w, step)
    cc, rr = np.meshgrid(cn, rn)
    pix = np.column_stack([cc.ravel(), rr.ravel()])
    p = pixel_centres_to_map(optical.transform, pix)
    q = p + field(p)
    off = sn9_offsets(optical, sar, pix, q).reshape(len(rn), len(cn), 2)
    ri, rt = _interp_weights(rn, np.arange(r0, r0 + h, dtype=np.float64))
    ci, ct = _interp_weights(cn, np.arange(c0, c0 + w, dtype=np.float64))
    out = np.empty((2, h, w), np.float32)
    for b in range(2):
        v = off[..., b]
        if len(cn) > 1:
            rows = v[:, ci] * (1 - ct) + v[:, ci + 1] * ct
        else:
            rows = np.repeat(v[:, :1], w, axis=1)
        if len(rn) > 1:
            full = rows[ri] * (1 - rt)[:, None] + rows[ri + 1] * rt[:, None]
        else:
            full = np.repeat(rows[:1], h, axis=0)
        out[b] = full
    return out


def offsets_at(
    field: DisplacementField, optical: Grid, sar: Grid, rows: Array, cols: Array
) -> Array:
    """Exact (N, 2) offsets at integer optical pixels, without the lattice."""
    pix = np.column_stack([np.asarray(cols, float), np.asarray(rows, float)])
    p = pixel_centres_to_map(optical.transform, pix)
    return sn9_offsets(optical, sar, pix, p + field(p))
