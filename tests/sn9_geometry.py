"""The real SpaceNet 9 training scenes' geometry, recovered from the tie-point GeoJSON twins.

The images are not public here, but each tie-point is given both as pixel indices (CSV)
and as map coordinates (GeoJSON), which pins down each scene's geotransform exactly.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from affine import Affine

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TIEPOINTS = DATA / "sn9_tiepoints"
EPSG = 32637
#: (optical width, height), (SAR width, height) from ../shared/data/README.md
SIZES = {
    "02_tiepoints_train_01": ((10155, 3208), (7477, 2293)),
    "02_tiepoints_train_02": ((10155, 3990), (7477, 2929)),
    "03_tiepoints_train_01": ((7740, 10998), (5292, 7520)),
}
NAMES = tuple(SIZES)


@dataclass(frozen=True)
class Scene:
    name: str
    csv_path: Path
    sar_rc: np.ndarray  # (N, 2) row, col
    opt_rc: np.ndarray
    sar_xy: np.ndarray  # (N, 2) map
    opt_xy: np.ndarray
    opt_transform: Affine
    sar_transform: Affine
    opt_size: tuple[int, int]
    sar_size: tuple[int, int]


def _fit(rc: np.ndarray, xy: np.ndarray) -> Affine:
    h = np.column_stack([rc[:, 1], rc[:, 0], np.ones(len(rc))])
    sx, *_ = np.linalg.lstsq(h, xy[:, 0], rcond=None)
    sy, *_ = np.linalg.lstsq(h, xy[:, 1], rcond=None)
    return Affine(sx[0], sx[1], sx[2], sy[0], sy[1], sy[2])


def load(name: str) -> Scene:
    csv_path = TIEPOINTS / f"{name}.csv"
    with csv_path.open() as f:
        rows = [[int(v) for v in r.values()] for r in csv.DictReader(f)]
    a = np.asarray(rows, float)
    sar_rc, opt_rc = a[:, 0:2], a[:, 2:4]
    gj = json.loads((TIEPOINTS / f"{name}.geojson").read_text())
    sar = {f["properties"]["index"]: f["geometry"]["coordinates"]
           for f in gj["features"] if f["properties"]["type"] == "sar"}
    opt = {f["properties"]["index"]: f["geometry"]["coordinates"]
           for f in gj["features"] if f["properties"]["type"] != "sar"}
    sar_xy = np.asarray([sar[i] for i in range(len(a))], float)
    opt_xy = np.asarray([opt[i] for i in range(len(a))], float)
    osz, ssz = SIZES[name]
    return Scene(name, csv_path, sar_rc, opt_rc, sar_xy, opt_xy,
                 _fit(opt_rc, opt_xy), _fit(sar_rc, sar_xy), osz, ssz)
