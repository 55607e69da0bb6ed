"""Loading a static catalog (sn9cloud's results, or any input catalog) into pgstac, so that
the STAC API (stac-fastapi-pgstac) serves it to searches by bbox, datetime and collection.

A database has no "next to this file": asset and link hrefs are made absolute (s3:// or
local paths) before loading, and the static catalog's structural links are dropped (the
API writes its own). Loading upserts, so ingesting again after a rerun is safe.
"""

from __future__ import annotations

from typing import Any

import pystac

from sn9cloud.errors import InputError, OutputError
from sn9cloud.stac.stacio import stac_io

STRUCTURAL = {"root", "parent", "collection", "item", "child", "self"}


def absolute(doc: dict[str, Any], href_base: str) -> dict[str, Any]:
    """The document with its asset and non-structural link hrefs made absolute."""
    obj = pystac.read_dict(doc, href=href_base, stac_io=stac_io())
    for a in getattr(obj, "assets", {}).values():
        a.href = a.get_absolute_href() or a.href
    links = []
    for ln in obj.links:
        if ln.rel in STRUCTURAL:
            continue
        ln.target = ln.get_absolute_href() or ln.target
        links.append(ln)
    obj.links = links
    return obj.to_dict(include_self_link=False, transform_hrefs=False)


def collect(catalog: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Collections and items of a static catalog, hrefs made absolute."""
    try:
        root = pystac.read_file(catalog, stac_io=stac_io())
    except Exception as e:
        raise InputError(f"catalog {catalog}: cannot be read ({str(e).splitlines()[0]})") from e
    if not isinstance(root, pystac.Catalog):
        raise InputError(f"catalog {catalog}: not a catalog or collection")
    collections, items = [], []
    cats = [root, *root.get_all_collections()] if isinstance(root, pystac.Collection) \
        else list(root.get_all_collections())
    seen = set()
    for c in cats:
        if c.id in seen:
            continue
        seen.add(c.id)
        d = c.to_dict(include_self_link=False, transform_hrefs=False)
        collections.append(absolute(d, c.get_self_href() or catalog))
        for it in c.get_items(recursive=False):
            d = it.to_dict(include_self_link=False, transform_hrefs=False)
            d["collection"] = c.id
            items.append(absolute(d, it.get_self_href() or catalog))
    return collections, items


def ingest(catalog: str, dsn: str) -> tuple[int, int]:
    """Upsert the catalog's collections, then their items; return their counts."""
    from pypgstac.db import PgstacDB
    from pypgstac.load import Loader, Methods

    collections, items = collect(catalog)
    if not collections:
        raise InputError(f"catalog {catalog}: no collections to ingest")
    try:
        with PgstacDB(dsn=dsn) as db:
            loader = Loader(db=db)
            loader.load_collections(iter(collections), Methods.upsert)
            if items:
                loader.load_items(iter(items), Methods.upsert)
    except Exception as e:
        raise OutputError(f"pgstac: ingest failed ({str(e).splitlines()[0]})") from e
    return len(collections), len(items)
