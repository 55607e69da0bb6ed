"""Pairing time against the number of items: the spatial index (`pair_items`) beside the
all-pairs loop it replaced, on the same generated catalogs, in one run.

    python benchmarks/pairing.py [--sizes 300,1000,5000] [--naive-max 300]

Each catalog has N optical and N SAR items on a grid of overlapping scenes; the naive
peer computes the overlap of every optical with every SAR item, as pairing did before.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

import pystac
from shapely.geometry import box, mapping

from sn9cloud.stac.pairing import PairingOptions, overlap, pair_items

SAR_EXT = "https://stac-extensions.github.io/sar/v1.1.0/schema.json"


def catalog(n: int) -> list[pystac.Item]:
    side = max(1, int(n ** 0.5))
    items = []
    t = datetime(2023, 2, 7, tzinfo=UTC)
    for i in range(n):
        x, y = (i % side) * 0.01, (i // side) * 0.01
        for kind, dx in (("optical", 0.0), ("sar", 0.002)):
            g = box(x + dx, y, x + dx + 0.012, y + 0.012)
            it = pystac.Item(f"{kind}-{i}", mapping(g), list(g.bounds), t, {})
            if kind == "sar":
                it.stac_extensions.append(SAR_EXT)
                it.properties["sar:instrument_mode"] = "spotlight"
            items.append(it)
    return items


def naive(items: list[pystac.Item], opt: PairingOptions) -> int:
    sar = [i for i in items if i.id.startswith("sar")]
    optical = [i for i in items if i.id.startswith("optical")]
    found = 0
    for s in sar:
        best = max((overlap(o, s) for o in optical), default=0.0)
        found += best >= opt.min_overlap
    return found


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="300,1000,5000")
    ap.add_argument("--naive-max", type=int, default=300)
    a = ap.parse_args()
    opt = PairingOptions()
    print(f"{'items per modality':>18s} {'spatial index s':>16s} {'all pairs s':>12s} pairs")
    for n in (int(v) for v in a.sizes.split(",")):
        items = catalog(n)
        t0 = time.perf_counter()
        pairs, _ = pair_items(items, opt)
        t_index = time.perf_counter() - t0
        t_naive = "-"
        if n <= a.naive_max:
            t0 = time.perf_counter()
            assert naive(items, opt) == len(pairs)
            t_naive = f"{time.perf_counter() - t0:.2f}"
        print(f"{n:18d} {t_index:16.2f} {t_naive:>12s} {len(pairs)}")


if __name__ == "__main__":
    main()
