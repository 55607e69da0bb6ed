"""The service's state, stored beside the results with conditional writes (S3 or a local
folder; no database): one record per (optical, SAR, configuration hash), one per item
still waiting for a partner, the items the service knows, and the poller's watermark.

A pair's record moves waiting -> running (a lease: holder and expiry) -> published, or
-> failed (reason, attempts; ``final`` once retrying is pointless or the attempts are
spent). Every change is a compare-and-swap on the record's ETag, so two watchers never
both hold a pair, and a watcher that dies mid-pair leaves a lease that expires: the next
one to look takes the work over.

    OUTPUT/_sn9cloud-state/items/<h>.json                  the items the service knows
    OUTPUT/_sn9cloud-state/<config>/pairs/<h>.json          one per pair
    OUTPUT/_sn9cloud-state/<config>/waiting/<h>.json        an item without a partner yet
    OUTPUT/_sn9cloud-state/<config>/watermarks/<h>.json     a poller's progress
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from sn9cloud.errors import OutputError
from sn9cloud.io.store import Blob, PreconditionFailed, Store

STATE = "_sn9cloud-state"
MAX_CAS = 50
HISTORY = 10  # events kept per record


def _h(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


class LeaseLost(OutputError):
    """Another watcher took the pair over (our lease had expired): stop working on it."""


@dataclass
class Claim:
    """What `PairStates.claim` found: ``status`` is acquired (this watcher now holds the
    lease), published, failed (for good), or busy (``wait_s`` until worth asking again)."""

    status: str
    record: dict[str, Any]
    key: str
    etag: str = ""
    wait_s: float = 0.0


class PairStates:
    """The records of one configuration."""

    def __init__(self, store: Store, config_hash: str, holder: str,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.config_hash = config_hash
        self.holder = holder
        self.clock = clock
        self.base = f"{STATE}/{config_hash[:16]}"

    # ---- pairs -------------------------------------------------------------------------

    def pair_key(self, optical_id: str, sar_id: str) -> str:
        return f"{self.base}/pairs/{_h(optical_id, sar_id)}.json"

    def claim(self, optical_id: str, sar_id: str, item_id: str, lease_s: float) -> Claim:
        """Take the pair's lease if nobody holds a live one and it is not done."""
        key = self.pair_key(optical_id, sar_id)
        for _ in range(MAX_CAS):
            now = self.clock()
            blob = self.store.get(key)
            if blob is None:
                rec: dict[str, Any] = {"kind": "pair", "state": "running",
                                       "optical": optical_id,
                       "sar": sar_id, "config_hash": self.config_hash, "item_id": item_id,
                       "attempts": 1, "reason": None, "final": False, "retry_at": None,
                       "lease": {"holder": self.holder, "expires": now + lease_s},
                       "created": now, "updated": now, "history": []}
                _event(rec, now, f"claimed by {self.holder}")
                try:
                    self.store.put(key, _dump(rec), if_none_match=True,
                                   content_type="application/json")
                except PreconditionFailed:
                    continue
                return self._claimed(key, rec)
            rec = _load(blob)
            state = rec.get("state")
            if state == "published":
                return Claim("published", rec, key)
            if state == "failed" and rec.get("final"):
                return Claim("failed", rec, key)
            lease: dict[str, Any] = rec.get("lease") or {}
            if state == "running" and lease.get("expires", 0) > now \
                    and lease.get("holder") != self.holder:
                return Claim("busy", rec, key, wait_s=lease["expires"] - now)
            if state == "failed" and (rec.get("retry_at") or 0) > now:
                return Claim("busy", rec, key, wait_s=rec["retry_at"] - now)
            took = (f"taken over from {lease.get('holder')} (lease expired)"
                    if state == "running" and lease.get("holder") not in (None, self.holder)
                    else f"claimed by {self.holder}")
            rec.update(state="running", item_id=item_id, updated=now,
                       attempts=int(rec.get("attempts", 0)) + 1,
                       lease={"holder": self.holder, "expires": now + lease_s})
            _event(rec, now, took)
            try:
                self.store.put(key, _dump(rec), if_match=blob.etag,
                               content_type="application/json")
            except PreconditionFailed:
                continue
            return self._claimed(key, rec)
        raise OutputError(f"{self.store.href(key)}: too many concurrent updates")

    def _claimed(self, key: str, rec: dict[str, Any]) -> Claim:
        blob = self.store.get(key)
        if blob is None:  # deleted by hand between the two calls
            raise LeaseLost(f"{self.store.href(key)}: the state record disappeared")
        return Claim("acquired", _load(blob), key, blob.etag)

    def _update(self, claim: Claim, change: Callable[[dict[str, Any], float], None]) -> None:
        """Change a record this watcher holds; `LeaseLost` if someone took it over."""
        for _ in range(MAX_CAS):
            blob = self.store.get(claim.key)
            if blob is None:
                raise LeaseLost(f"{self.store.href(claim.key)}: the state record disappeared")
            rec = _load(blob)
            if (rec.get("lease") or {}).get("holder") != self.holder:
                raise LeaseLost(f"pair {rec.get('optical')} + {rec.get('sar')}: lease taken "
                                f"over by {(rec.get('lease') or {}).get('holder')}")
            now = self.clock()
            change(rec, now)
            rec["updated"] = now
            try:
                self.store.put(claim.key, _dump(rec), if_match=blob.etag,
                               content_type="application/json")
            except PreconditionFailed:
                continue
            claim.record = rec
            return
        raise OutputError(f"{self.store.href(claim.key)}: too many concurrent updates")

    def renew(self, claim: Claim, lease_s: float) -> None:
        def change(rec: dict[str, Any], now: float) -> None:
            rec["lease"]["expires"] = now + lease_s

        self._update(claim, change)

    def published(self, claim: Claim, item_href: str, seconds: float) -> None:
        def change(rec: dict[str, Any], now: float) -> None:
            rec.update(state="published", lease=None, reason=None, retry_at=None,
                       item_href=item_href)
            _event(rec, now, f"published by {self.holder} in {seconds:.1f} s")

        self._update(claim, change)

    def failed(self, claim: Claim, reason: str, kind: str, final: bool,
               retry_in_s: float = 0.0) -> None:
        def change(rec: dict[str, Any], now: float) -> None:
            rec.update(state="failed", lease=None, reason=reason, error_kind=kind,
                       final=final, retry_at=None if final else now + retry_in_s)
            _event(rec, now, f"failed ({'final' if final else 'will retry'}): {reason}")

        self._update(claim, change)

    def release(self, claim: Claim, why: str) -> None:
        """Give the lease back unfinished (a clean stop): anyone may take it at once."""
        def change(rec: dict[str, Any], now: float) -> None:
            rec.update(lease={"holder": None, "expires": now},
                       attempts=max(0, int(rec.get("attempts", 1)) - 1))
            _event(rec, now, f"released by {self.holder}: {why}")

        self._update(claim, change)

    # ---- items waiting for a partner ---------------------------------------------------

    def waiting_key(self, item_id: str) -> str:
        return f"{self.base}/waiting/{_h(item_id)}.json"

    def wait(self, item_id: str, modality: str) -> bool:
        """Record that ``item_id`` has no partner yet (once); True if newly recorded."""
        now = self.clock()
        rec: dict[str, Any] = {"kind": "item", "state": "waiting", "item": item_id,
                               "modality": modality,
               "config_hash": self.config_hash, "created": now, "updated": now,
               "reason": None, "final": False, "history": []}
        _event(rec, now, f"waiting for a partner (seen by {self.holder})")
        try:
            self.store.put(self.waiting_key(item_id), _dump(rec), if_none_match=True,
                           content_type="application/json")
        except PreconditionFailed:
            return False
        return True

    def partnered(self, item_id: str) -> None:
        """The item has a partner now: it no longer waits."""
        self.store.delete(self.waiting_key(item_id))

    def expire_waiting(self, timeout_s: float) -> list[dict[str, Any]]:
        """Waiting records older than ``timeout_s`` become failed (for good); returns them."""
        expired = []
        for key in self.store.list_keys(f"{self.base}/waiting/"):
            blob = self.store.get(key)
            if blob is None:
                continue
            rec = _load(blob)
            now = self.clock()
            if rec.get("state") != "waiting" or now - rec.get("created", now) < timeout_s:
                continue
            rec.update(state="failed", final=True, updated=now,
                       reason=f"no {'optical' if rec.get('modality') == 'sar' else 'SAR'} "
                              f"partner arrived within {timeout_s / 3600:g} h")
            _event(rec, now, rec["reason"])
            try:
                self.store.put(key, _dump(rec), if_match=blob.etag,
                               content_type="application/json")
            except PreconditionFailed:
                continue  # someone else changed it (paired, or expired it too)
            expired.append(rec)
        return expired

    # ---- the poller's watermark ----------------------------------------------------------

    def watermark_key(self, source: str) -> str:
        return f"{self.base}/watermarks/{_h(source)}.json"

    def watermark(self, source: str) -> str | None:
        blob = self.store.get(self.watermark_key(source))
        return None if blob is None else str(_load(blob).get("datetime") or "") or None

    def set_watermark(self, source: str, value: str) -> None:
        """Move the watermark forward only (a later write never moves it back)."""
        key = self.watermark_key(source)
        for _ in range(MAX_CAS):
            blob = self.store.get(key)
            if blob is not None and str(_load(blob).get("datetime") or "") >= value:
                return
            doc = _dump({"source": source, "datetime": value, "updated": self.clock()})
            try:
                if blob is None:
                    self.store.put(key, doc, if_none_match=True,
                                   content_type="application/json")
                else:
                    self.store.put(key, doc, if_match=blob.etag,
                                   content_type="application/json")
                return
            except PreconditionFailed:
                continue

    # ---- reading it all --------------------------------------------------------------

    def records(self) -> Iterator[dict[str, Any]]:
        for folder in ("pairs", "waiting"):
            for key in self.store.list_keys(f"{self.base}/{folder}/"):
                blob = self.store.get(key)
                if blob is not None:
                    yield _load(blob)


def all_records(store: Store) -> Iterator[dict[str, Any]]:
    """Every pair and waiting record of every configuration in an output."""
    for key in store.list_keys(f"{STATE}/"):
        if "/pairs/" in key or "/waiting/" in key:
            blob = store.get(key)
            if blob is not None:
                yield _load(blob)


class Inventory:
    """The input items the service knows (shared by all configurations), cached here and
    read again only for what another watcher added meanwhile."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._items: dict[str, dict[str, Any]] = {}

    def key(self, item_id: str) -> str:
        return f"{STATE}/items/{_h(item_id)}.json"

    def add(self, item: dict[str, Any], href: str | None) -> bool:
        """Remember an item; True if it is new or changed."""
        doc = {"item": item, "href": href}
        key = self.key(str(item.get("id")))
        known = self._items.get(key)
        if known == doc:
            return False
        blob = self.store.get(key)
        if blob is not None and _load(blob) == doc:
            self._items[key] = doc
            return False
        self.store.put(key, _dump(doc), content_type="application/json")
        self._items[key] = doc
        return True

    def all(self) -> list[dict[str, Any]]:
        for key in self.store.list_keys(f"{STATE}/items/"):
            if key not in self._items:
                blob = self.store.get(key)
                if blob is not None:
                    self._items[key] = _load(blob)
        return list(self._items.values())

    def get(self, item_id: str) -> dict[str, Any] | None:
        key = self.key(item_id)
        if key not in self._items:
            blob = self.store.get(key)
            if blob is None:
                return None
            self._items[key] = _load(blob)
        return self._items[key]


def _event(rec: dict[str, Any], now: float, what: str) -> None:
    rec["history"] = [*rec.get("history", []), {"t": round(now, 3), "event": what}][-HISTORY:]


def _dump(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, indent=1, sort_keys=True).encode()


def _load(blob: Blob) -> dict[str, Any]:
    try:
        d = json.loads(blob.data)
    except ValueError as e:
        raise OutputError(f"a state record is not JSON ({e})") from e
    if not isinstance(d, dict):
        raise OutputError("a state record is not a JSON object")
    return d
