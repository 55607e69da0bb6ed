"""The result item of one registered pair, built by one function from what the pipeline
measured: the offset-map COG, the report, the two input items."""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pystac

from sn9cloud import ALGORITHM_VERSION, __version__
from sn9cloud.engine.types import Grid
from sn9cloud.errors import InputError
from sn9cloud.prepared import PreparedRun

STAC_VERSION = "1.1.0"
EXTENSIONS = {
    "projection": "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "raster": "https://stac-extensions.github.io/raster/v2.0.0/schema.json",
    "file": "https://stac-extensions.github.io/file/v2.1.0/schema.json",
    "processing": "https://stac-extensions.github.io/processing/v1.2.0/schema.json",
}
COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
KEY_LIBRARIES = ("numpy", "scipy", "opencv-python-headless", "rasterio", "rio-cogeo", "pystac")


def multihash_sha256(digest_hex: str) -> str:
    """``file:checksum`` is a multihash: 0x12 (sha2-256), 0x20 (32 bytes), digest."""
    return "1220" + digest_hex


def software_versions() -> dict[str, str]:
    out = {"sn9cloud": __version__}
    for name in KEY_LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


@dataclass(frozen=True)
class PublishedFile:
    href: str  # relative to the item
    size: int
    sha256: str


def item_datetime(item: pystac.Item) -> datetime:
    t = item.datetime or item.common_metadata.start_datetime
    if t is None:
        raise InputError(f"item {item.id}: no datetime (neither datetime nor start_datetime)")
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _report_summary(report: dict[str, Any]) -> dict[str, Any]:
    keys = ("model", "matches", "consistent_matches", "inliers", "residual_rmse_px",
            "residual_p90_px", "estimated_error_px", "estimated_error_m", "overlap_fraction")
    out = {k: report[k] for k in keys if k in report}
    for k, v in list(out.items()):
        if isinstance(v, float):
            out[k] = round(v, 4)
    out["timings_s"] = report.get("timings_s", {})
    return out


def footprint(grid: Grid) -> tuple[dict[str, Any], list[float]]:
    """The grid's outline in WGS84, and its bbox."""
    from rasterio.warp import transform_geom

    t, w, h = grid.transform, grid.width, grid.height
    ring = [t * c for c in ((0, 0), (w, 0), (w, h), (0, h), (0, 0))]
    geom = transform_geom(grid.crs, "EPSG:4326", {"type": "Polygon",
                                                  "coordinates": [[list(p) for p in ring]]})
    coords = [[round(x, 8), round(y, 8)] for x, y in geom["coordinates"][0]]
    xs, ys = [c[0] for c in coords], [c[1] for c in coords]
    return {"type": "Polygon", "coordinates": [coords]}, [min(xs), min(ys), max(xs), max(ys)]


def build_result_item(
    *,
    run: PreparedRun,
    optical: pystac.Item,
    sar: pystac.Item,
    optical_href: str,
    sar_href: str,
    optical_item_href: str | None,
    sar_item_href: str | None,
    grid: Grid,
    report: dict[str, Any],
    cog: PublishedFile,
    report_file: PublishedFile,
    thumbnail: PublishedFile,
    collection_id: str,
    processed_at: datetime | None = None,
) -> dict[str, Any]:
    """The STAC item (a dict) of one offset map, saying what computed it: the matcher, the
    field model and the whole effective configuration, hashed into its id."""
    item_id = run.result_id(optical.id, sar.id)
    processed_at = processed_at or datetime.now(UTC)
    crs = grid.crs
    epsg = crs.to_epsg() if crs is not None else None
    t = grid.transform
    proj: dict[str, Any] = {"proj:code": f"EPSG:{epsg}" if epsg else None,
                  "proj:shape": [grid.height, grid.width],
                  "proj:transform": [t.a, t.b, t.c, t.d, t.e, t.f, 0.0, 0.0, 1.0]}
    if not epsg and crs is not None:
        proj["proj:wkt2"] = crs.to_wkt()
    summary = _report_summary(report)
    res = round(float(sum(grid.pixel_size) / 2.0), 6)
    bands = [
        {"name": "dx", "description": "SpaceNet 9 offset, x: SAR column minus optical column "
                                      "of the same ground point, optical pixels",
         "data_type": "float32", "unit": "pixel", "raster:sampling": "area",
         "raster:spatial_resolution": res},
        {"name": "dy", "description": "SpaceNet 9 offset, y: SAR row minus optical row, "
                                      "optical pixels",
         "data_type": "float32", "unit": "pixel", "raster:sampling": "area",
         "raster:spatial_resolution": res},
    ]
    properties = {
        "datetime": _iso(item_datetime(sar)),
        "title": f"SpaceNet 9 offset map: {sar.id} onto {optical.id} ({run.label()})",
        "description": "For every optical pixel, the shift to the matching SAR pixel "
                       "(SpaceNet 9 convention), computed by sn9cloud.",
        "created": _iso(processed_at),
        "processing:software": software_versions(),
        "processing:datetime": _iso(processed_at),
        "processing:level": "L4",
        "processing:lineage": (
            f"SAR item {sar.id} ({sar_href}) registered onto optical item {optical.id} "
            f"({optical_href}) by {ALGORITHM_VERSION}, {run.config.matcher} matcher: "
            f"{run.matcher.lineage(run.config)}; evaluated on the optical grid "
            f"(configuration {run.config_hash[:12]})."),
        "sn9cloud:algorithm_version": ALGORITHM_VERSION,
        "sn9cloud:optical_id": optical.id,
        "sn9cloud:sar_id": sar.id,
        "sn9cloud:matcher": run.config.matcher,
        "sn9cloud:model": run.field_model,
        "sn9cloud:config": run.effective,
        "sn9cloud:config_hash": run.config_hash,
        "sn9cloud:report": summary,
    }
    assets = {
        "offsets": {
            "href": cog.href, "type": COG_TYPE, "title": "Offset map (dx, dy)",
            "roles": ["data"], "file:size": cog.size,
            "file:checksum": multihash_sha256(cog.sha256), "bands": bands, **proj,
        },
        "report": {
            "href": report_file.href, "type": "application/json",
            "title": "Registration report", "roles": ["metadata"],
            "file:size": report_file.size, "file:checksum": multihash_sha256(report_file.sha256),
        },
        "thumbnail": {
            "href": thumbnail.href, "type": "image/png", "title": "Offset magnitude",
            "roles": ["thumbnail"], "file:size": thumbnail.size,
            "file:checksum": multihash_sha256(thumbnail.sha256),
        },
    }
    links = [
        {"rel": "root", "href": "../../catalog.json", "type": "application/json"},
        {"rel": "parent", "href": "../collection.json", "type": "application/json"},
        {"rel": "collection", "href": "../collection.json", "type": "application/json"},
    ]
    for href, title in ((optical_item_href, f"optical {optical.id}"),
                        (sar_item_href, f"SAR {sar.id}")):
        if href:
            links.append({"rel": "derived_from", "href": href, "type": "application/geo+json",
                          "title": title})
    geometry, bbox = optical.geometry, list(optical.bbox) if optical.bbox else None
    if geometry is None or bbox is None:
        geometry, bbox = footprint(grid)  # the map covers the optical grid, whatever it says
    return {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": list(EXTENSIONS.values()),
        "id": item_id,
        "collection": collection_id,
        "geometry": geometry,
        "bbox": bbox,
        "properties": properties,
        "assets": assets,
        "links": links,
    }


def new_collection(collection_id: str) -> dict[str, Any]:
    return {
        "type": "Collection",
        "stac_version": STAC_VERSION,
        "stac_extensions": [],
        "id": collection_id,
        "title": "sn9cloud offset maps",
        "description": "SpaceNet 9 offset maps (optical to SAR) computed by sn9cloud, one per "
                       "registered optical/SAR pair, with the registration report.",
        "license": "other",
        "extent": {"spatial": {"bbox": [[-180.0, -90.0, 180.0, 90.0]]},
                   "temporal": {"interval": [[None, None]]}},
        "providers": [{"name": "sn9cloud", "roles": ["processor"]}],
        "links": [
            {"rel": "root", "href": "../catalog.json", "type": "application/json"},
            {"rel": "parent", "href": "../catalog.json", "type": "application/json"},
        ],
    }


def new_catalog() -> dict[str, Any]:
    return {
        "type": "Catalog",
        "stac_version": STAC_VERSION,
        "id": "sn9cloud-results",
        "title": "sn9cloud results",
        "description": "Results published by sn9cloud.",
        "links": [{"rel": "root", "href": "./catalog.json", "type": "application/json"}],
    }


def add_item_to_collection(collection: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    """Link the item and grow the extents; idempotent (a link is never doubled)."""
    href = f"./{item['id']}/{item['id']}.json"
    links = collection["links"]
    if not any(ln["rel"] == "item" and ln["href"] == href for ln in links):
        links.append({"rel": "item", "href": href, "type": "application/geo+json"})
    n_items = sum(1 for ln in links if ln["rel"] == "item")
    bb = item.get("bbox")
    if bb:
        cur = collection["extent"]["spatial"]["bbox"][0]
        if n_items == 1 or cur == [-180.0, -90.0, 180.0, 90.0]:
            new = list(bb)
        else:
            new = [min(cur[0], bb[0]), min(cur[1], bb[1]), max(cur[2], bb[2]), max(cur[3], bb[3])]
        collection["extent"]["spatial"]["bbox"][0] = new
    t = item["properties"]["datetime"]
    lo, hi = collection["extent"]["temporal"]["interval"][0]
    collection["extent"]["temporal"]["interval"][0] = [
        t if lo is None or t < lo else lo, t if hi is None or t > hi else hi]
    return collection


def add_child_to_catalog(catalog: dict[str, Any], collection_id: str) -> dict[str, Any]:
    href = f"./{collection_id}/collection.json"
    if not any(ln["rel"] == "child" and ln["href"] == href for ln in catalog["links"]):
        catalog["links"].append({"rel": "child", "href": href, "type": "application/json"})
    return catalog
