"""Tiles for the keypoint detectors, as the SpaceNet 9 baseline made them.

Scene alignment: both images resampled onto one grid in the optical CRS at the coarser of
the two resolutions, over the union of their extents (padded with zeros). A sample is a
256 x 256 tile of each modality around one tie-point: for the SAR detector, centred on the
optical keypoint, with a Gaussian heatmap (sigma 13 px) at the SAR keypoint; for the
optical detector, centred on the SAR keypoint, the heatmap at the optical keypoint.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from affine import Affine
from torch.utils.data import Dataset

from sn9cloud.engine.features import to_intensity
from sn9cloud.engine.grid import apply_affine, reproject_points, resample_to
from sn9cloud.engine.keypoints import crop_tile
from sn9cloud.engine.types import Grid
from sn9cloud.errors import InputError
from sn9cloud.io.raster import read_image
from sn9cloud.models.unet import gaussian_heatmap
from sn9cloud.score import read_tiepoints


@dataclass
class AlignedScene:
    name: str
    optical: np.ndarray  # (H, W) float32 in [0, 1] on the common grid
    sar: np.ndarray
    opt_xy: np.ndarray  # (N, 2) tie-points on the common grid (pixel-centre coordinates)
    sar_xy: np.ndarray


def common_grid(a: Grid, b: Grid) -> Grid:
    """The coarser resolution over the union of both extents, in ``a``'s CRS."""
    px = max(max(a.pixel_size), max(b.pixel_size))
    corners = np.array([[0, 0], [b.width, 0], [0, b.height], [b.width, b.height]], float)
    bx = reproject_points(apply_affine(b.transform, corners), b.crs, a.crs)
    ax = apply_affine(a.transform, np.array([[0, 0], [a.width, a.height]], float))
    x0, x1 = min(ax[:, 0].min(), bx[:, 0].min()), max(ax[:, 0].max(), bx[:, 0].max())
    y0, y1 = min(ax[:, 1].min(), bx[:, 1].min()), max(ax[:, 1].max(), bx[:, 1].max())
    w, h = int(np.ceil((x1 - x0) / px)), int(np.ceil((y1 - y0) / px))
    return Grid(w, h, Affine(px, 0, x0, 0, -px, y1), a.crs)


def load_scene(optical: str, sar: str, tiepoints: str, name: str = "") -> AlignedScene:
    o_img, o_grid = read_image(optical, "optical")
    s_img, s_grid = read_image(sar, "SAR")
    tp = read_tiepoints(tiepoints).astype(np.float64)
    for role, grid, cols in (("SAR", s_grid, (1, 0)), ("optical", o_grid, (3, 2))):
        xy = tp[:, list(cols)]
        if (xy < 0).any() or (xy[:, 0] >= grid.width).any() or (xy[:, 1] >= grid.height).any():
            raise InputError(f"tie-points {tiepoints}: {role} points outside the {role} image")
    g = common_grid(o_grid, s_grid)
    o, om = resample_to(o_img, g, is_sar=False)
    s, sm = resample_to(s_img, g, is_sar=True)
    o = to_intensity(o, is_sar=False, valid=om)
    s = to_intensity(s, is_sar=True, valid=sm)
    o[~om], s[~sm] = 0.0, 0.0
    inv = ~g.transform
    opt_map = apply_affine(o_grid.transform, tp[:, [3, 2]] + 0.5)
    sar_map = reproject_points(apply_affine(s_grid.transform, tp[:, [1, 0]] + 0.5),
                               s_grid.crs, g.crs)
    return AlignedScene(name or Path(optical).stem, o.astype(np.float32), s.astype(np.float32),
                        apply_affine(inv, opt_map) - 0.5, apply_affine(inv, sar_map) - 0.5)


class TileDataset(Dataset):
    """(source tile, target tile, heatmap, keypoint xy in the target tile) per tie-point."""

    def __init__(self, scenes: list[AlignedScene], detector: str = "sar", tile: int = 256,
                 sigma: float = 13.0, augment: bool = False, seed: int = 0) -> None:
        if detector not in ("sar", "optical"):
            raise ValueError("detector is 'sar' or 'optical'")
        self.scenes, self.detector, self.tile, self.sigma = scenes, detector, tile, sigma
        self.augment = augment
        self.rng = np.random.default_rng(seed)
        self.index = [(i, k) for i, s in enumerate(scenes) for k in range(len(s.opt_xy))
                      if abs(s.sar_xy[k] - s.opt_xy[k]).max() < tile / 2 - 8]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, j: int) -> tuple[torch.Tensor, ...]:
        i, k = self.index[j]
        s = self.scenes[i]
        if self.detector == "sar":  # optical keypoint at the centre, find it in the SAR
            (cx, cy), (kx, ky), src, tgt = s.opt_xy[k], s.sar_xy[k], s.optical, s.sar
        else:
            (cx, cy), (kx, ky), src, tgt = s.sar_xy[k], s.opt_xy[k], s.sar, s.optical
        a, x0, y0 = crop_tile(src, cx, cy, self.tile)
        b, _, _ = crop_tile(tgt, cx, cy, self.tile)
        px, py = kx - x0, ky - y0
        if self.augment:  # the same flip / transposition of both tiles and the keypoint
            # flips about the centre pixel (index tile / 2), so that the source keypoint
            # stays where the detector expects it: i -> tile - i (mod tile)
            t = self.tile
            if self.rng.random() < 0.5:
                a, b, px = np.roll(a[:, ::-1], 1, 1), np.roll(b[:, ::-1], 1, 1), t - px
            if self.rng.random() < 0.5:
                a, b, py = np.roll(a[::-1], 1, 0), np.roll(b[::-1], 1, 0), t - py
            if self.rng.random() < 0.5:
                a, b, px, py = a.T, b.T, py, px
        heat = gaussian_heatmap(self.tile, px, py, self.sigma)
        return (torch.from_numpy(np.ascontiguousarray(a))[None],
                torch.from_numpy(np.ascontiguousarray(b))[None], heat[None],
                torch.tensor([px, py], dtype=torch.float32))


def load_manifest(path: Path) -> dict[str, list[AlignedScene]]:
    """Scenes of a manifest (``{"scenes": [{"optical", "sar", "tiepoints", "split"}]}``,
    paths relative to it), by split."""
    m = json.loads(Path(path).read_text())
    out: dict[str, list[AlignedScene]] = {"train": [], "val": []}
    for s in m["scenes"]:
        d = Path(path).parent
        out[s.get("split", "train")].append(
            load_scene(str(d / s["optical"]), str(d / s["sar"]), str(d / s["tiepoints"]),
                       s.get("name", "")))
    return out
