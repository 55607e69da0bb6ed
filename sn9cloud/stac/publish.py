"""Publishing result items to a static catalog in a local folder or an S3 prefix.

Order makes it safe to read at any moment: the assets first (under content-addressed
names, so a republished item never overwrites what an older item points to), then the item
JSON (the commit point), then the collection's and the catalog's links. Links are updated
by compare-and-swap (S3 conditional writes, or a lock on a local folder), so runs that
publish into one collection at the same time lose no item and no link.

    OUTPUT/catalog.json
    OUTPUT/<collection>/collection.json
    OUTPUT/<collection>/<item id>/<item id>.json
    OUTPUT/<collection>/<item id>/offsets-<sha>.tif, report-<sha>.json, thumbnail-<sha>.png
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sn9cloud import ALGORITHM_VERSION
from sn9cloud.errors import InputError, OutputError
from sn9cloud.io.store import PreconditionFailed, Store, open_store
from sn9cloud.stac.items import (
    PublishedFile,
    add_child_to_catalog,
    add_item_to_collection,
    new_catalog,
    new_collection,
)

MAX_CAS_ATTEMPTS = 200
DEFAULT_COLLECTION = "sn9cloud-offsets"  # the results collection unless configured
#: a collection id is a folder name and a URL segment: nothing that climbs or escapes
_COLLECTION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_collection_id(collection_id: str) -> None:
    if not _COLLECTION_ID.match(collection_id) or ".." in collection_id:
        raise InputError(f"results collection {collection_id[:80]!r}: want letters, digits, "
                         "'.', '_' or '-' (at most 128, starting with a letter or digit)")


@dataclass(frozen=True)
class LocalFile:
    name: str  # stem of the published name, e.g. "offsets"
    path: str
    content_type: str


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class Publisher:
    def __init__(self, output: str, collection_id: str = DEFAULT_COLLECTION) -> None:
        check_collection_id(collection_id)
        self.output = output
        self.collection_id = collection_id
        self.store: Store = open_store(output)

    def item_key(self, item_id: str) -> str:
        return f"{self.collection_id}/{item_id}/{item_id}.json"

    def item_href(self, item_id: str) -> str:
        return self.store.href(self.item_key(item_id))

    def published_item(self, item_id: str, config_hash: str) -> dict[str, Any] | None:
        """The item already published under this id by this algorithm version and this
        effective configuration, if any (the id hashes both; this checks what it says)."""
        blob = self.store.get(self.item_key(item_id))
        if blob is None:
            return None
        try:
            item = json.loads(blob.data)
            props = item["properties"]
        except (ValueError, KeyError, TypeError):
            return None
        if (props.get("sn9cloud:algorithm_version") != ALGORITHM_VERSION
                or props.get("sn9cloud:config_hash") != config_hash):
            return None
        return dict(item)

    def publish(
        self,
        item_id: str,
        files: list[LocalFile],
        build_item: Callable[[dict[str, PublishedFile]], dict[str, Any]],
        force: bool = False,
    ) -> tuple[dict[str, Any], bool]:
        """Publish assets, item and links; return the item and whether this call wrote it.

        Without ``force`` an item that appears meanwhile (a concurrent run) wins and this
        call only makes sure it is linked.
        """
        prefix = f"{self.collection_id}/{item_id}"
        published: dict[str, PublishedFile] = {}
        created: list[str] = []
        try:
            for f in files:
                digest = sha256_file(f.path)
                ext = os.path.splitext(f.path)[1]
                name = f"{f.name}-{digest[:12]}{ext}"
                key = f"{prefix}/{name}"
                if not self.store.exists(key):
                    self.store.put_file(key, f.path, f.content_type)
                    created.append(key)
                published[f.name] = PublishedFile(f"./{name}", os.path.getsize(f.path), digest)
            item = build_item(published)
            data = json.dumps(item, indent=1).encode()
            try:
                self.store.put(self.item_key(item_id), data, if_none_match=not force,
                               content_type="application/geo+json")
                wrote = True
            except PreconditionFailed:
                existing = self.published_item(item_id, item["properties"]
                                               ["sn9cloud:config_hash"])
                if existing is None:
                    raise OutputError(
                        f"item {self.item_href(item_id)} exists from another algorithm "
                        "version or configuration; rerun with --force to replace it") from None
                item, wrote = existing, False
                self._remove(created)
        except BaseException:
            self._remove(created)
            raise
        self.link(item)
        return item, wrote

    def link(self, item: dict[str, Any]) -> None:
        """Link the item from its collection and the collection from the catalog."""
        self._update(f"{self.collection_id}/collection.json",
                     lambda: new_collection(self.collection_id),
                     lambda c: add_item_to_collection(c, item))
        self._update("catalog.json", new_catalog,
                     lambda c: add_child_to_catalog(c, self.collection_id))

    def _update(self, key: str, create: Callable[[], dict[str, Any]],
                change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        for attempt in range(MAX_CAS_ATTEMPTS):
            blob = self.store.get(key)
            try:
                if blob is None:
                    doc = change(create())
                    self.store.put(key, _dump(doc), if_none_match=True,
                                   content_type="application/json")
                else:
                    doc = json.loads(blob.data)
                    new = change(json.loads(blob.data))
                    if new == doc:
                        return
                    self.store.put(key, _dump(new), if_match=blob.etag,
                                   content_type="application/json")
                return
            except PreconditionFailed:
                time.sleep(random.uniform(0, 0.02 * min(attempt + 1, 10)))
        raise OutputError(f"{self.store.href(key)}: too many concurrent updates, gave up")

    def _remove(self, keys: list[str]) -> None:
        for k in keys:
            try:
                self.store.delete(k)
            except Exception:  # best effort: an orphan asset is harmless, never referenced
                continue


def _dump(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, indent=1).encode()
