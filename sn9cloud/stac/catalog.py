"""Reading input items from a static STAC catalog (local, s3://, https://) or a STAC API,
and telling SAR items from optical ones."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pystac
from shapely.geometry import shape

from sn9cloud.errors import InputError, Sn9Error, reason
from sn9cloud.io.net import read_bytes, timeout
from sn9cloud.io.policy import PolicyError, ReadPolicy, normalize, strip_credentials

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
    #: None: every item; a number: more items than this is an error that says so
    max_items: int | None = None
    #: the results collection: items sn9cloud published are never inputs
    results_collection: str | None = None


@dataclass
class Loaded:
    """The items of a source, and what could not be read (a problem never stops the rest
    of the catalog: it is reported beside the results)."""

    items: list[pystac.Item] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (where, why)


def load_items(source: str, search: Search | None = None,
               policy: ReadPolicy | None = None) -> Loaded:
    """Items of a static catalog, collection, item collection or item, or of an API search,
    read only where ``policy`` allows (by default: the source's own location)."""
    search = search or Search()
    try:
        location = normalize(source)
    except PolicyError as e:
        raise InputError(f"catalog {source}: {e}") from e
    policy = policy or ReadPolicy.of([location])
    try:
        d = json.loads(read_bytes(location, policy))
    except Sn9Error as e:
        raise InputError(f"catalog {source}: cannot be read ({reason(e)})") from e
    except Exception as e:
        raise InputError(f"catalog {source}: cannot be read ({_reason(e)})") from e
    if not isinstance(d, dict) or "type" not in d:
        raise InputError(f"catalog {source}: not a STAC document")
    if _is_api(d):
        return _search_api(source, search)
    if d["type"] not in ("Feature", "FeatureCollection", "Catalog", "Collection"):
        raise InputError(f"catalog {source}: a {str(d['type'])[:40]!r}, not a catalog, "
                         "collection or item")
    loaded = Loaded()
    for it in _walk(location, d, policy, loaded.problems):
        if not _is_result(it, search.results_collection) and _matches(it, search):
            loaded.items.append(it)
            if search.max_items is not None and len(loaded.items) > search.max_items:
                raise InputError(f"catalog {source}: more than {search.max_items} items "
                                 "match (the --max-items limit); narrow the search or raise "
                                 "the limit")
    return loaded


def _walk(root: str, doc: dict[str, Any], policy: ReadPolicy,
          problems: list[tuple[str, str]]) -> Iterator[pystac.Item]:
    """Every item under ``root``, depth first, each document read once: child and item
    links are resolved and checked by the policy; a link back to an ancestor (a cycle) is
    reported and not followed; a document that cannot be read is reported and skipped."""
    stack: list[tuple[str, dict[str, Any] | None, tuple[str, ...]]] = [(root, doc, ())]
    seen: set[str] = set()
    while stack:
        href, d, ancestors = stack.pop()
        if href in ancestors:
            problems.append((ancestors[-1], f"catalog cycle: links back to {href} (not "
                                            "followed again)"))
            continue
        if href in seen:
            continue
        seen.add(href)
        if d is None:
            try:
                d = json.loads(read_bytes(href, policy))
            except Exception as e:
                problems.append((href, f"cannot be read ({_reason(e)})"))
                continue
        if not isinstance(d, dict):
            problems.append((href, "not a STAC document"))
            continue
        kind = d.get("type")
        if kind == "Feature":
            item = _item(d, href, problems)
            if item is not None:
                yield item
            continue
        if kind == "FeatureCollection":
            features = d.get("features")
            if not isinstance(features, list):
                problems.append((href, "a FeatureCollection without a features list"))
                continue
            for f in features:
                item = _item(f, href, problems) if isinstance(f, dict) else None
                if item is not None:
                    yield item
            continue
        links = d.get("links") or []
        children = []
        for ln in links if isinstance(links, list) else []:
            if not isinstance(ln, dict) or ln.get("rel") not in ("child", "item"):
                continue
            try:
                target = policy.check(str(ln.get("href", "")), href)
            except PolicyError as e:
                problems.append((href, reason(e)))
                continue
            children.append((target, None, (*ancestors, href)))
        stack.extend(reversed(children))


def _item(d: dict[str, Any], href: str, problems: list[tuple[str, str]]) -> pystac.Item | None:
    """An item from an untrusted document: its own "self" link is ignored (the place it
    was read from is its location), its geometry checked."""
    name = str(d.get("id", href))[:200]
    try:
        d = {**d, "links": [ln for ln in d.get("links") or []
                            if isinstance(ln, dict) and ln.get("rel") != "self"]}
        item = pystac.Item.from_dict(d, preserve_dict=False)
        item.set_self_href(href)
        if item.geometry is not None:
            shape(item.geometry)
    except Exception as e:
        problems.append((f"item {name}", f"not a valid STAC item ({_reason(e)})"))
        return None
    return item


def _is_result(item: pystac.Item, results_collection: str | None) -> bool:
    return is_result(item.collection_id, item.properties, results_collection)


def is_result(collection_id: str | None, props: dict[str, Any],
              results_collection: str | None) -> bool:
    """An item sn9cloud published: never an input (results may live inside a catalog)."""
    if results_collection and collection_id == results_collection:
        return True
    software = props.get("processing:software")
    return "sn9cloud:config_hash" in props or (
        isinstance(software, dict) and "sn9cloud" in software)


def _is_api(d: dict[str, Any]) -> bool:
    conforms = d.get("conformsTo")
    return isinstance(conforms, list) and any("item-search" in str(c) for c in conforms)


def _search_api(url: str, search: Search) -> Loaded:
    from pystac_client import Client

    limit = None if search.max_items is None else search.max_items + 1
    try:
        client = Client.open(url, timeout=timeout())
        res = client.search(collections=list(search.collections) or None, bbox=search.bbox,
                            datetime=search.datetime, max_items=limit)
        items = [it for it in res.items() if not _is_result(it, search.results_collection)]
    except Exception as e:
        raise InputError(f"STAC API {strip_credentials(url)}: search failed "
                         f"({_reason(e)})") from e
    if search.max_items is not None and len(items) > search.max_items:
        raise InputError(f"STAC API {strip_credentials(url)}: more than {search.max_items} "
                         "items match (the --max-items limit); narrow the search or raise "
                         "the limit")
    return Loaded(items)


def _matches(item: pystac.Item, search: Search) -> bool:
    if search.collections and item.collection_id not in search.collections:
        return False
    if search.bbox and item.bbox:
        a, b = search.bbox, item.bbox
        if a[0] > b[2] or a[2] < b[0] or a[1] > b[3] or a[3] < b[1]:
            return False
    if search.datetime:
        t = item.datetime or item.common_metadata.start_datetime
        lo, hi = parse_interval(search.datetime)
        if t is not None and ((lo and t < lo) or (hi and t > hi)):
            return False
    return True


def parse_interval(value: str) -> tuple[datetime | None, datetime | None]:
    """An RFC 3339 instant or ``start/end`` range (``..`` or empty: open) as its bounds;
    anything else is an `InputError` naming the value."""
    start, slash, end = value.strip().partition("/")
    try:
        lo = _parse_time(start) if start not in ("", "..") else None
        if slash:  # a range, open where ".." or empty
            hi = _parse_time(end) if end not in ("", "..") else None
        else:  # one instant
            if lo is None:
                raise ValueError
            hi = lo
    except (ValueError, OverflowError):
        raise InputError(f"datetime {value[:80]!r}: want an RFC 3339 instant "
                         "(2023-02-07T08:10:00Z) or START/END with '..' for an open end") from None
    if lo and hi and lo > hi:
        raise InputError(f"datetime {value[:80]!r}: the start is after the end")
    return lo, hi


def _parse_time(s: str) -> datetime:
    t = datetime.fromisoformat(s.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def is_sar(item: pystac.Item, sar_collections: tuple[str, ...] = ()) -> bool:
    """SAR by the SAR extension's fields or a configured collection; optical otherwise."""
    if item.collection_id and item.collection_id in sar_collections:
        return True
    if any(e.startswith(SAR_EXTENSION) for e in item.stac_extensions):
        return True
    return any(k.startswith("sar:") for k in item.properties)


def raster_href(item: pystac.Item, sar: bool, policy: ReadPolicy | None = None) -> str:
    """The absolute href of the item's GeoTIFF asset that holds the image, checked by the
    read policy (resolved against the item's own location)."""
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
    chosen = next((candidates[k] for k in (SAR_KEYS if sar else OPTICAL_KEYS)
                   if k in candidates), None)
    if chosen is None:
        data = [k for k, a in candidates.items() if "data" in (a.roles or ())]
        chosen = candidates[(data or sorted(candidates))[0]]
    base = item.get_self_href()
    try:
        return policy.check(chosen.href, base) if policy else normalize(chosen.href, base)
    except PolicyError as e:
        raise PolicyError(f"item {item.id}: {e}") from None


def _reason(e: Exception) -> str:
    if isinstance(e, json.JSONDecodeError):
        return "not JSON"
    s = str(e).strip().splitlines()
    return s[0] if s else type(e).__name__
