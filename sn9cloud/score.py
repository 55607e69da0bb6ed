"""The SpaceNet 9 metric, exactly as the challenge scored it.

Reference offsets come from the tie-points and each image's own geotransform (pixel
upper-left corners, SAR points reprojected into the optical CRS), rounded to whole
pixels; the prediction is read at the exact integer optical pixel (no interpolation); the
scene's score is the mean Euclidean distance in optical pixels.
"""

from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.windows import Window

from sn9cloud.engine.grid import apply_affine, reproject_points
from sn9cloud.engine.types import Grid
from sn9cloud.errors import InputError
from sn9cloud.io.raster import open_grid, open_raster

COLUMNS = ("sar_row", "sar_col", "optical_row", "optical_col")
MAX_INDEX = 10_000_000  # pixel rows and columns; beyond any scene


@dataclass(frozen=True)
class Score:
    mean_px: float
    mean_m: float
    score: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: a NaN (a map with NaN at a tie-point) is null, not the non-JSON
        token ``NaN``."""
        return {k: None if isinstance(v, float) and not math.isfinite(v) else v
                for k, v in asdict(self).items()}


def read_tiepoints(path: str | Path, allow_duplicates: bool = False) -> np.ndarray:
    """(N, 4) int array in COLUMNS order; refuses missing columns, non-integers, NaN and
    (unless allowed: the challenge scored a real file that holds one) duplicate rows."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"tie-points {p}: no such file")
    try:
        rows = _rows(p)
    except UnicodeDecodeError:
        raise InputError(f"tie-points {p}: not UTF-8 text (a CSV file is)") from None
    except csv.Error as e:
        raise InputError(f"tie-points {p}: not a CSV file ({e})") from None
    if not rows:
        raise InputError(f"tie-points {p}: no tie-points")
    a = np.asarray(rows, np.int64)
    if not allow_duplicates and len(np.unique(a, axis=0)) != len(a):
        raise InputError(f"tie-points {p}: duplicate rows")
    return a


def _rows(p: Path) -> list[list[int]]:
    with p.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"tie-points {p}: missing column(s) {', '.join(missing)}")
        rows = []
        for i, row in enumerate(reader, start=2):
            try:
                vals = [float(row[c]) for c in COLUMNS]
            except (TypeError, ValueError) as e:
                raise InputError(f"tie-points {p}: line {i} is not numeric") from e
            if not all(math.isfinite(v) and v == int(v) for v in vals):
                raise InputError(f"tie-points {p}: line {i} holds a non-integer or NaN")
            if not all(0 <= v < MAX_INDEX for v in vals):
                raise InputError(f"tie-points {p}: line {i} holds a pixel index outside 0 to "
                                 f"{MAX_INDEX:,}")
            rows.append([int(v) for v in vals])
    return rows


def reference_offsets(tp: np.ndarray, optical: Grid, sar: Grid) -> np.ndarray:
    """(N, 2) reference (dx, dy) in optical pixels, rounded to whole pixels."""
    t = tp.astype(np.float64)
    sar_xy = reproject_points(apply_affine(sar.transform, t[:, [1, 0]]), sar.crs, optical.crs)
    d = sar_xy - apply_affine(optical.transform, t[:, [3, 2]])
    return np.round(d / [optical.transform.a, optical.transform.e])


def score_offsets(offsets: str, tiepoints: str, optical: str, sar: str) -> Score:
    tp = read_tiepoints(tiepoints, allow_duplicates=True)
    og = open_grid(optical, "optical")
    sg = open_grid(sar, "SAR")
    ref = reference_offsets(tp, og, sg)
    rows, cols = tp[:, 2], tp[:, 3]
    if (rows < 0).any() or (cols < 0).any() or (rows >= og.height).any() \
            or (cols >= og.width).any():
        raise InputError(f"tie-points {tiepoints}: optical points outside the optical image")
    pred = np.empty((len(tp), 2))
    with open_raster(offsets, "offsets") as ds:
        if (ds.width, ds.height) != (og.width, og.height):
            raise InputError(
                f"offsets {offsets}: {ds.width}x{ds.height} px, but the optical image is "
                f"{og.width}x{og.height}"
            )
        if ds.count < 2:
            raise InputError(f"offsets {offsets}: needs 2 bands (dx, dy), has {ds.count}")
        for i, (r, c) in enumerate(zip(rows, cols, strict=True)):
            pred[i] = ds.read([1, 2], window=Window(int(c), int(r), 1, 1))[:, 0, 0]
    d = pred - ref
    dist = np.hypot(d[:, 0], d[:, 1])
    mean_px = float(np.mean(dist))  # NaN in the map makes the score NaN, as in the challenge
    metres = np.hypot(d[:, 0] * og.transform.a, d[:, 1] * og.transform.e)
    return Score(mean_px, float(np.mean(metres)), 100.0 / (1.0 + 0.01 * mean_px), len(tp))
