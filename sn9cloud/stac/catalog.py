"""Reading input items from a static STAC catalog (local, s3://, https://) or a STAC API,
and telling SAR items from optical ones."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pystac

from sn9cloud.errors import InputError
from sn9cloud.stac.stacio import stac_io

SAR_EXTENSION = "https://stac-extensions.github.io/sar/"
GEOTIFF_TYPES = ("image/tiff", "image/geotiff", "image/vnd.stac.geotiff")
# asset keys in order of preference when an item has several rasters
OPTICAL_KEYS = ("visual", "image", "rgb", "data", "ms_analytic", "analytic", "pan_analytic")
SAR_KEYS = ("vv", "hh", "data", "image", "vh", "hv", "amplitude")


@dataclass(frozen=True)
class Search:
    collections: tuple[str, ...] = ()
    bbox: tuple[float, float, float, float] | None = None
    datetime: str | None = None
    max_items: int = 10_000


def load_items(source: str, search: Search | None = None) -> list[pystac.Item]:
    """Items of a static catalog, collection, item collection or item, or of an API search."""
    search = search or Search()
    try:
        d = stac_io().read_json(source)
    except Exception as e:
        raise InputError(f"catalog {source}: cannot be read ({_reason(e)})") from e
    if not isinstance(d, dict) or "type" not in d:
        raise InputError(f"catalog {source}: not a STAC document")
    if _is_api(d):
        return _search_api(source, search)
    try:
        if d["type"] == "FeatureCollection":
            return [it for it in pystac.ItemCollection.from_dict(d).items
                    if _matches(it, search)][: search.max_items]
        obj = pystac.read_dict(d, href=source, stac_io=stac_io())
        obj.set_self_href(source)
        if isinstance(obj, pystac.Item):
            items = [obj]
        elif isinstance(obj, pystac.Catalog):
            items = list(obj.get_items(recursive=True))
        else:
            raise InputError(f"catalog {source}: a {d['type']}, not a catalog, collection "
                             "or item")
    except InputError:
        raise
    except Exception as e:
        raise InputError(f"catalog {source}: cannot be read ({_reason(e)})") from e
    return [it for it in items if _matches(it, search)][: search.max_items]


def _is_api(d: dict[str, Any]) -> bool:
    return any("item-search" in c for c in d.get("conformsTo", []))


def _search_api(url: str, search: Search) -> list[pystac.Item]:
    from pystac_client import Client

    try:
        client = Client.open(url)
        res = client.search(collections=list(search.collections) or None, bbox=search.bbox,
                            datetime=search.datetime, max_items=search.max_items)
        return list(res.items())
    except Exception as e:
        raise InputError(f"STAC API {url}: search failed ({_reason(e)})") from e


def _matches(item: pystac.Item, search: Search) -> bool:
    if search.collections and item.collection_id not in search.collections:
        return False
    if search.bbox and item.bbox:
        a, b = search.bbox, item.bbox
        if a[0] > b[2] or a[2] < b[0] or a[1] > b[3] or a[3] < b[1]:
            return False
    if search.datetime:
        t = item.datetime or item.common_metadata.start_datetime
        start, slash, end = search.datetime.partition("/")
        lo = _parse_time(start) if start not in ("", "..") else None
        if slash:  # a range, open where ".." or empty
            hi = _parse_time(end) if end not in ("", "..") else None
        else:  # one instant
            hi = lo
        if t is not None and ((lo and t < lo) or (hi and t > hi)):
            return False
    return True


def _parse_time(s: str) -> datetime:
    t = datetime.fromisoformat(s.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def is_sar(item: pystac.Item, sar_collections: tuple[str, ...] = ()) -> bool:
    """SAR by the SAR extension's fields or a configured collection; optical otherwise."""
    if item.collection_id and item.collection_id in sar_collections:
        return True
    if any(e.startswith(SAR_EXTENSION) for e in item.stac_extensions):
        return True
    return any(k.startswith("sar:") for k in item.properties)


def raster_href(item: pystac.Item, sar: bool) -> str:
    """The absolute href of the item's GeoTIFF asset that holds the image."""
    candidates = {}
    for key, a in item.assets.items():
        roles = set(a.roles or ())
        if roles & {"thumbnail", "overview", "metadata"}:
            continue
        mt = (a.media_type or "").lower()
        if any(t in mt for t in GEOTIFF_TYPES) or a.href.lower().split("?")[0].endswith(
            (".tif", ".tiff")
        ):
            candidates[key] = a
    if not candidates:
        raise InputError(f"item {item.id}: no GeoTIFF raster asset "
                         f"(assets: {', '.join(item.assets) or 'none'})")
    for key in SAR_KEYS if sar else OPTICAL_KEYS:
        if key in candidates:
            return _absolute(candidates[key])
    data = [k for k, a in candidates.items() if "data" in (a.roles or ())]
    return _absolute(candidates[(data or sorted(candidates))[0]])


def _absolute(asset: pystac.Asset) -> str:
    # an absolute local path stays one (a STAC API serving local results would otherwise
    # turn it into a path on the API's host)
    if asset.href.startswith("/") or "://" in asset.href:
        return asset.href
    return asset.get_absolute_href() or asset.href


def _reason(e: Exception) -> str:
    if isinstance(e, json.JSONDecodeError):
        return "not JSON"
    s = str(e).strip().splitlines()
    return s[0] if s else type(e).__name__
