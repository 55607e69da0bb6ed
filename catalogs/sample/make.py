"""Build the sample catalog that ships with sn9cloud, from real co-registered 3MOS tile
pairs (Apache-2.0): three optical/SAR pairs of one area as COGs with STAC items.

    python catalogs/sample/make.py [--data ../shared/data]

Each optical tile keeps its pixels. Each SAR tile gets a known geocoding error: a shift and
scale in its geotransform and a smooth non-rigid warp in its pixels, then is resampled to
coarser pixels (4/3 of the optical spacing, as 0.4 m SAR beside 0.3 m optical). The
georeference (UTM 37N, 10 m optical pixels, near Kahramanmaras) is illustrative: the
dataset does not publish the tiles' true location. ``truth/<SAR id>.csv`` holds the exact
tie-points of each pair in the SpaceNet 9 format, for `sn9cloud score`.
"""

from __future__ import annotations

import argparse
import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform_geom

from sn9cloud.distortion import distort_sar, random_distortion, truth_tiepoints
from sn9cloud.io.cog import write_image_cog

HERE = Path(__file__).resolve().parent
TILES = ("SEN_city_05", "SEN_city_06", "SEN_city_09")
EPSG = 32637
ORIGIN = (354000.0, 4160000.0)
OPTICAL_PX = 10.0
SAR_FACTOR = 0.75  # SAR pixels per optical pixel along each axis
T0 = datetime(2023, 2, 7, 8, 10, tzinfo=UTC)
STAC = "1.1.0"
PROJ = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
SAR_EXT = "https://stac-extensions.github.io/sar/v1.1.0/schema.json"
COG = "image/tiff; application=geotiff; profile=cloud-optimized"
LICENCE_NOTE = ("Pixels from the 3MOS dataset (3M-OS/3MOS, Apache-2.0); synthetic "
                "geocoding error and illustrative georeference added by sn9cloud.")


def _footprint(transform: Affine, w: int, h: int) -> tuple[dict, list[float]]:
    corners = [transform * c for c in ((0, 0), (w, 0), (w, h), (0, h), (0, 0))]
    geom = transform_geom(f"EPSG:{EPSG}", "EPSG:4326",
                          {"type": "Polygon", "coordinates": [corners]})
    ring = [[round(x, 7), round(y, 7)] for x, y in geom["coordinates"][0]]
    xs, ys = [p[0] for p in ring], [p[1] for p in ring]
    return {"type": "Polygon", "coordinates": [ring]}, [min(xs), min(ys), max(xs), max(ys)]


def _item(item_id: str, collection: str, t: datetime, transform: Affine, w: int, h: int,
          asset_key: str, asset_href: str, extra_props: dict, extensions: list[str]) -> dict:
    geom, bbox = _footprint(transform, w, h)
    return {
        "type": "Feature", "stac_version": STAC, "stac_extensions": [PROJ, *extensions],
        "id": item_id, "collection": collection, "geometry": geom, "bbox": bbox,
        "properties": {
            "datetime": t.isoformat().replace("+00:00", "Z"),
            "proj:code": f"EPSG:{EPSG}", "proj:shape": [h, w],
            "proj:transform": [*list(transform)[:6], 0.0, 0.0, 1.0],
            "gsd": round(abs(transform.a), 4), "license": "Apache-2.0",
            "description": LICENCE_NOTE, **extra_props,
        },
        "assets": {asset_key: {"href": asset_href, "type": COG, "roles": ["data"]}},
        "links": [
            {"rel": "root", "href": "../../catalog.json", "type": "application/json"},
            {"rel": "parent", "href": "../collection.json", "type": "application/json"},
            {"rel": "collection", "href": "../collection.json", "type": "application/json"},
        ],
    }


def _collection(cid: str, title: str, items: list[dict], extensions: list[str]) -> dict:
    bb = np.array([it["bbox"] for it in items])
    times = sorted(it["properties"]["datetime"] for it in items)
    return {
        "type": "Collection", "stac_version": STAC, "stac_extensions": extensions,
        "id": cid, "title": title, "description": f"{title}. {LICENCE_NOTE}",
        "license": "Apache-2.0",
        "providers": [{"name": "3MOS dataset (3M-OS/3MOS)", "roles": ["producer", "licensor"],
                       "url": "https://github.com/3M-OS/3MOS"}],
        "extent": {"spatial": {"bbox": [[*bb[:, :2].min(0).tolist(), *bb[:, 2:].max(0).tolist()]]},
                   "temporal": {"interval": [[times[0], times[-1]]]}},
        "links": [{"rel": "root", "href": "../catalog.json", "type": "application/json"},
                  {"rel": "parent", "href": "../catalog.json", "type": "application/json"}]
        + [{"rel": "item", "href": f"./{it['id']}/{it['id']}.json",
            "type": "application/geo+json"} for it in items],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=HERE.parents[2] / "shared" / "data")
    args = ap.parse_args()
    tiles = args.data / "3mos_tiles"
    rng = np.random.default_rng(2026)
    optical_items, sar_items, truth = [], [], {}
    (HERE / "truth").mkdir(exist_ok=True)
    for i, tile in enumerate(TILES):
        opt = cv2.imread(str(tiles / f"{tile}_optical.png"), cv2.IMREAD_COLOR)[:, :, ::-1]
        sar = cv2.imread(str(tiles / f"{tile}_sar.png"), cv2.IMREAD_GRAYSCALE)
        h, w = sar.shape
        d = random_distortion(rng, w, h, nonrigid=0.05)
        sar_d, valid = distort_sar(sar.astype(np.float32), d)
        w2, h2 = round(w * SAR_FACTOR), round(h * SAR_FACTOR)
        sar_r = cv2.resize(sar_d, (w2, h2), interpolation=cv2.INTER_AREA)
        valid_r = cv2.resize(valid.astype(np.float32), (w2, h2), cv2.INTER_AREA) > 0.999
        sar_u8 = np.clip(np.round(sar_r), 1, 255).astype(np.uint8)
        sar_u8[~valid_r] = 0
        t_opt = Affine(OPTICAL_PX, 0, ORIGIN[0] + i * 2600.0, 0, -OPTICAL_PX, ORIGIN[1])
        t_sar = t_opt * d.sar_pixel_affine() * Affine.scale(w / w2, h / h2)
        opt_id = f"sample-optical-{i + 1:02d}"
        sar_id = f"sample-sar-{i + 1:02d}"
        for cid, iid in (("sample-optical", opt_id), ("sample-sar", sar_id)):
            (HERE / cid / iid).mkdir(parents=True, exist_ok=True)
        write_image_cog(HERE / "sample-optical" / opt_id / "visual.tif",
                        np.ascontiguousarray(opt.transpose(2, 0, 1)), t_opt,
                        CRS.from_epsg(EPSG), None, block=128)
        write_image_cog(HERE / "sample-sar" / sar_id / "vv.tif", sar_u8[None], t_sar,
                        CRS.from_epsg(EPSG), 0, block=128)
        t_o = T0 + timedelta(minutes=7 * i)
        optical_items.append(_item(opt_id, "sample-optical", t_o, t_opt, w, h, "visual",
                                   "./visual.tif", {"title": f"Optical tile {tile}"}, []))
        sar_items.append(_item(
            sar_id, "sample-sar", t_o + timedelta(days=1, hours=7), t_sar, w2, h2, "vv",
            "./vv.tif",
            {"title": f"SAR tile {tile} (Sentinel-1 pixels)", "sar:instrument_mode": "IW",
             "sar:frequency_band": "C", "sar:polarizations": ["VV"],
             "sar:product_type": "GRD"}, [SAR_EXT]))
        tp = truth_tiepoints(d, w, h, sar_factor=SAR_FACTOR)
        with (HERE / "truth" / f"{sar_id}.csv").open("w", newline="") as f:
            wr = csv.writer(f)
            wr.writerow(["sar_row", "sar_col", "optical_row", "optical_col"])
            wr.writerows(tp.tolist())
        truth[sar_id] = {"optical_id": opt_id, "tile": tile, "tiepoints": f"{sar_id}.csv",
                         "distortion_optical_px": d.to_dict()}
    for cid, title, items, ext in (
        ("sample-optical", "Sample optical scenes", optical_items, []),
        ("sample-sar", "Sample SAR scenes", sar_items, [SAR_EXT]),
    ):
        for it in items:
            (HERE / cid / it["id"] / f"{it['id']}.json").write_text(json.dumps(it, indent=1) + "\n")
        (HERE / cid / "collection.json").write_text(
            json.dumps(_collection(cid, title, items, ext), indent=1) + "\n")
    catalog = {
        "type": "Catalog", "stac_version": STAC, "id": "sn9cloud-sample",
        "title": "sn9cloud sample catalog",
        "description": "Three optical/SAR pairs of one area with a known geocoding error. "
                       + LICENCE_NOTE + " See ATTRIBUTION.md.",
        "links": [{"rel": "root", "href": "./catalog.json", "type": "application/json"},
                  {"rel": "child", "href": "./sample-optical/collection.json",
                   "type": "application/json"},
                  {"rel": "child", "href": "./sample-sar/collection.json",
                   "type": "application/json"},
                  {"rel": "license", "href": "./LICENSE-3MOS-Apache-2.0.txt",
                   "type": "text/plain", "title": "3MOS licence (Apache-2.0)"}],
    }
    (HERE / "catalog.json").write_text(json.dumps(catalog, indent=1) + "\n")
    (HERE / "truth" / "truth.json").write_text(json.dumps(truth, indent=1) + "\n")


if __name__ == "__main__":
    main()
