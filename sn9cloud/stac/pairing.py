"""Pairing SAR items with the optical item that overlaps them most.

Overlap is the intersection area over the smaller footprint, measured in degrees on the
items' WGS84 geometries: a ratio on scenes a few km across, where the distortion of
degrees cancels out.
"""

from __future__ import annotations

from dataclasses import dataclass

import pystac
from shapely import STRtree
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from sn9cloud.stac.catalog import is_sar


@dataclass(frozen=True)
class PairingOptions:
    min_overlap: float = 0.3  # intersection / smaller footprint
    max_days: float | None = None  # acquisition time window; None: any
    sar_collections: tuple[str, ...] = ()


@dataclass(frozen=True)
class ItemPair:
    optical: pystac.Item
    sar: pystac.Item
    overlap: float

    @property
    def name(self) -> str:
        return f"{self.optical.id} + {self.sar.id}"


@dataclass(frozen=True)
class PairingProblem:
    name: str
    reason: str


def footprint(item: pystac.Item) -> BaseGeometry | None:
    """The item's geometry as a valid shape, or None (no geometry, or none usable)."""
    if not item.geometry:
        return None
    try:
        g = shape(item.geometry)
        if not g.is_valid:
            g = g.buffer(0)
    except Exception:  # a malformed geometry pairs with nothing
        return None
    return None if g.is_empty else g


def _overlap(ga: BaseGeometry | None, gb: BaseGeometry | None) -> float:
    if ga is None or gb is None:
        return 0.0
    smaller = min(ga.area, gb.area)
    return float(ga.intersection(gb).area / smaller) if smaller > 0 else 0.0


def overlap(a: pystac.Item, b: pystac.Item) -> float:
    return _overlap(footprint(a), footprint(b))


def _days(a: pystac.Item, b: pystac.Item) -> float | None:
    ta = a.datetime or a.common_metadata.start_datetime
    tb = b.datetime or b.common_metadata.start_datetime
    if ta is None or tb is None:
        return None
    return abs((ta - tb).total_seconds()) / 86400.0


def pair_items(
    items: list[pystac.Item], options: PairingOptions | None = None
) -> tuple[list[ItemPair], list[PairingProblem]]:
    """Each SAR item with its best optical item; a problem for each SAR item left alone."""
    opt = options or PairingOptions()
    sar = [it for it in items if is_sar(it, opt.sar_collections)]
    optical = [it for it in items if not is_sar(it, opt.sar_collections)]
    # a spatial index of the optical footprints: each SAR item meets only the few whose
    # boxes touch its own (near-linear in the number of items, not quadratic)
    shapes = [footprint(o) for o in optical]
    indexed = [i for i, g in enumerate(shapes) if g is not None]
    tree = STRtree([shapes[i] for i in indexed])
    pairs, problems = [], []
    for s in sar:
        best: tuple[float, float, pystac.Item] | None = None
        gs = footprint(s)
        near = [] if gs is None else [indexed[int(j)] for j in tree.query(gs)]
        for k in sorted(near):
            o = optical[k]
            ov = _overlap(shapes[k], gs)
            if ov < opt.min_overlap or ov <= 0:
                continue
            days = _days(o, s)
            if opt.max_days is not None and days is not None and days > opt.max_days:
                continue
            key = (ov, -(days or 0.0))
            if best is None or key > best[:2]:
                best = (*key, o)
        if best is None:
            window = f" within {opt.max_days:g} days" if opt.max_days is not None else ""
            problems.append(PairingProblem(
                s.id, f"no optical item overlaps SAR item {s.id} by at least "
                      f"{opt.min_overlap:.0%}{window}"))
        else:
            pairs.append(ItemPair(best[2], s, best[0]))
    if not sar:
        problems.append(PairingProblem("catalog", "no SAR item found (no sar:* fields and no "
                                                  "configured SAR collection)"))
    return pairs, problems


def explicit_pairs(
    items: list[pystac.Item], names: list[tuple[str, str]]
) -> tuple[list[ItemPair], list[PairingProblem]]:
    by_id = {it.id: it for it in items}
    pairs, problems = [], []
    for o_id, s_id in names:
        missing = [i for i in (o_id, s_id) if i not in by_id]
        if missing:
            problems.append(PairingProblem(f"{o_id} + {s_id}",
                                           f"item(s) not in the catalog: {', '.join(missing)}"))
            continue
        pairs.append(ItemPair(by_id[o_id], by_id[s_id], overlap(by_id[o_id], by_id[s_id])))
    return pairs, problems
