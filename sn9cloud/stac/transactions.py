"""Publishing results into a STAC API through its Transactions extension.

In a cloud deployment the API's database is rarely reachable from the workers, but the
API is: results go in as `POST /collections` and `POST /collections/{id}/items`, with
hrefs made absolute as for `ingest`. Nothing already in the API is replaced: an item the
API already holds (409) is left as it is and counted, so a rerun is safe and data already
published is never lost; only the items a `--force` rerun republished (``replace``) are
updated, to new assets that sit beside the old ones (content-addressed), which stay. A bearer
token, where the API wants one, comes from the SN9CLOUD_STAC_API_TOKEN setting, never from
the command line.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests

from sn9cloud.errors import InputError, OutputError
from sn9cloud.stac.ingest import collect

TRANSACTION_CONFORMANCE = "ogcapi-features/extensions/transaction"


@dataclass(frozen=True)
class ApiPublication:
    collections_created: int
    items_created: int
    items_existing: int  # already in the API and left as they were
    items_replaced: int = 0


def _session(token: str | None = None) -> requests.Session:
    s = requests.Session()
    s.headers["Accept"] = "application/json"
    if token:
        s.headers["Authorization"] = f"Bearer {token}"
    return s


def _message(r: requests.Response) -> str:
    try:
        body = r.json()
        detail = body.get("detail") or body.get("description") or body.get("code")
    except ValueError:
        detail = r.text[:200]
    return f"HTTP {r.status_code}: {detail}"


def _call(s: requests.Session, method: str, url: str, timeout: float,
          **kw: Any) -> requests.Response:
    try:
        return s.request(method, url, timeout=timeout, **kw)
    except requests.RequestException as e:
        raise OutputError(f"STAC API {url}: unreachable ({type(e).__name__})") from e


def check_transactions(api_url: str, session: requests.Session | None = None,
                       timeout: float = 30.0) -> None:
    """Fail early, before anything is sent, if the API does not accept writes."""
    s = session or _session()
    r = _call(s, "GET", api_url.rstrip("/") + "/", timeout)
    if r.status_code != 200:
        raise OutputError(f"STAC API {api_url}: landing page answered {_message(r)}")
    try:
        conforms = r.json().get("conformsTo", [])
    except (ValueError, AttributeError) as e:
        raise InputError(f"{api_url}: not a STAC API (its landing page is not JSON)") from e
    if not any(TRANSACTION_CONFORMANCE in c for c in conforms):
        raise OutputError(
            f"STAC API {api_url} does not accept transactions (its conformance lists no "
            "Transactions extension); enable it there, or load the database with --pgstac")


def publish_to_api(catalog: str, api_url: str, replace: Collection[str] = (),
                   timeout: float = 30.0, token: str | None = None) -> ApiPublication:
    """Create the catalog's collections and items in the API where they are missing; of
    those it already holds, update the ones whose ids are in ``replace``."""
    collections, items = collect(catalog)
    if not collections:
        raise InputError(f"catalog {catalog}: no collections to publish")
    return publish_documents(collections, items, api_url, replace, timeout, token)


def publish_result(output: str, collection_id: str, item_id: str, api_url: str,
                   token: str | None = None, timeout: float = 30.0) -> ApiPublication:
    """One published result (and its collection, where the API lacks it), hrefs made
    absolute: what the service sends after each pair."""
    from sn9cloud.io.store import open_store
    from sn9cloud.stac.ingest import absolute

    store = open_store(output)
    docs = []
    for key in (f"{collection_id}/collection.json", f"{collection_id}/{item_id}/{item_id}.json"):
        blob = store.get(key)
        if blob is None:
            raise OutputError(f"{store.href(key)}: not published")
        docs.append(absolute(json.loads(blob.data), store.href(key)))
    docs[1]["collection"] = collection_id
    return publish_documents([docs[0]], [docs[1]], api_url, (), timeout, token)


def publish_documents(collections: list[dict[str, Any]], items: list[dict[str, Any]],
                      api_url: str, replace: Collection[str] = (), timeout: float = 30.0,
                      token: str | None = None) -> ApiPublication:
    base = api_url.rstrip("/")
    s = _session(token)
    check_transactions(base, s, timeout)
    created_c = created_i = existing = replaced = 0
    for c in collections:
        url = f"{base}/collections/{quote(c['id'], safe='')}"
        r = _call(s, "GET", url, timeout)
        if r.status_code == 404:
            r = _call(s, "POST", f"{base}/collections", timeout, json=c)
            if r.status_code == 409:  # created meanwhile by another publisher
                continue
            if r.status_code not in (200, 201):
                raise OutputError(f"STAC API {base}: creating collection {c['id']} answered "
                                  f"{_message(r)}")
            created_c += 1
        elif r.status_code != 200:
            raise OutputError(f"STAC API {url}: {_message(r)}")
    for it in items:
        url = f"{base}/collections/{quote(it['collection'], safe='')}/items"
        r = _call(s, "POST", url, timeout, json=it)
        if r.status_code in (200, 201):
            created_i += 1
        elif r.status_code == 409 and it["id"] in replace:
            r = _call(s, "PUT", f"{url}/{quote(it['id'], safe='')}", timeout, json=it)
            if r.status_code not in (200, 201):
                raise OutputError(f"STAC API {base}: replacing item {it['id']} answered "
                                  f"{_message(r)}")
            replaced += 1
        elif r.status_code == 409:
            existing += 1
        else:
            raise OutputError(f"STAC API {base}: creating item {it['id']} answered "
                              f"{_message(r)}")
    return ApiPublication(created_c, created_i, existing, replaced)
