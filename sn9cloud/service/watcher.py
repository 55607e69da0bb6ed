"""The service: new input items registered on their own, exactly once.

An item arrives (an S3 event through SQS, or a STAC API poll); the watcher remembers it,
pairs it with the items of the other modality it knows (the pairing rules of `run`),
and registers and publishes each pair under a lease (`state.PairStates`), here or on a
Ray cluster. An item with no partner yet waits; when one arrives, by either trigger, the
pair runs; after the configured time the item is recorded as failed. Transient failures
are retried with backoff (the message's visibility, or the sweep for polled items); a
message is deleted only once its work is published or failed for good.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import pystac
from shapely.geometry import shape

from sn9cloud.config import RegistrationConfig
from sn9cloud.errors import outcome, reason
from sn9cloud.io.policy import ReadPolicy
from sn9cloud.io.store import open_store
from sn9cloud.pipeline import PairOutcome, RunOptions, process_pair
from sn9cloud.prepared import PreparedRun
from sn9cloud.service.logs import JsonLog
from sn9cloud.service.metrics import Metrics
from sn9cloud.service.state import Claim, Inventory, LeaseLost, PairStates
from sn9cloud.settings import Settings
from sn9cloud.stac.catalog import is_result, is_sar
from sn9cloud.stac.pairing import ItemPair, PairingOptions, overlap, pair_items
from sn9cloud.stac.publish import DEFAULT_COLLECTION, Publisher

#: failures worth another attempt: the store, the network, a worker lost, a bug that may
#: have been a fluke; an unreadable input or an unreliable registration would repeat
RETRYABLE = frozenset({"transient", "output", "internal"})


@dataclass(frozen=True)
class WatchOptions:
    output: str
    config: RegistrationConfig = field(default_factory=RegistrationConfig)
    results_collection: str = DEFAULT_COLLECTION
    pairing: PairingOptions = field(default_factory=PairingOptions)
    collections: tuple[str, ...] = ()  # input collections accepted (none given: any)
    lease_s: float = 300.0  # a pair's lease; renewed every third of it while it runs
    max_attempts: int = 5
    retry_base_s: float = 10.0  # backoff: base, doubled per attempt, at most 15 min
    partner_timeout_s: float = 24 * 3600.0
    stac_api: str | None = None  # also create each result in this STAC API
    #: what the items may make the watcher read (SECURITY.md); nothing unless allowed
    read_policy: ReadPolicy = field(default_factory=ReadPolicy)


class PairRunner(Protocol):
    def __call__(self, pair: ItemPair) -> PairOutcome: ...


class LocalRunner:
    """Pairs in this process, on the settings' threads."""

    def __init__(self, options: WatchOptions, run: PreparedRun, settings: Settings) -> None:
        self.publisher = Publisher(options.output, options.results_collection)
        self.run_options = RunOptions(output=options.output,
                                      results_collection=options.results_collection,
                                      config=options.config, pairing=options.pairing,
                                      read_policy=options.read_policy)
        self.run = run
        self.executor = settings.executor()

    def __call__(self, pair: ItemPair) -> PairOutcome:
        return process_pair(pair, self.publisher, self.run_options, self.run, self.executor)


class RayRunner:
    """Each pair as a task on a Ray cluster (`sn9cloud.distributed.batch`), awaited."""

    def __init__(self, options: WatchOptions, run: PreparedRun) -> None:
        from sn9cloud.distributed.batch import pair_task

        self.task = pair_task()
        self.run_options = RunOptions(output=options.output,
                                      results_collection=options.results_collection,
                                      config=options.config, pairing=options.pairing,
                                      read_policy=options.read_policy)
        self.run = run

    def __call__(self, pair: ItemPair) -> PairOutcome:
        import ray

        ref = self.task.remote(pair.optical.to_dict(include_self_link=False),
                               pair.optical.get_self_href(),
                               pair.sar.to_dict(include_self_link=False),
                               pair.sar.get_self_href(), pair.overlap, self.run_options,
                               self.run, False)
        try:
            result: PairOutcome = ray.get(ref)
        except Exception as e:  # the task's retries are spent: try again later
            o = outcome(e)
            return PairOutcome(pair.name, "failed", error=f"Ray task lost: {o.message}",
                               error_kind="transient")
        return result


@dataclass
class Pending:
    """Work not finished yet: worth trying again in ``wait_s``, for ``reason``."""

    wait_s: float
    reason: str


class _Heartbeat:
    """Renews a lease (and, for a queue message, its visibility) while a pair runs."""

    def __init__(self, every_s: float, beat: Callable[[], None]) -> None:
        self.every_s, self.beat = every_s, beat
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self.stop.wait(self.every_s):
            try:
                self.beat()
            except BaseException as e:  # lease lost, or the store unreachable
                self.error = e
                return

    def __enter__(self) -> _Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()


def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Watcher:
    def __init__(self, options: WatchOptions, run: PreparedRun, runner: PairRunner,
                 log: JsonLog | None = None, metrics: Metrics | None = None,
                 holder: str | None = None, clock: Callable[[], float] = time.time,
                 api_token: str | None = None) -> None:
        self.options = options
        self.api_token = api_token
        self.run = run
        self.runner = runner
        self.log = log or JsonLog()
        self.metrics = metrics or Metrics()
        self.holder = holder or holder_name()
        self.clock = clock
        self.store = open_store(options.output)
        self.states = PairStates(self.store, run.config_hash, self.holder, clock)
        self.inventory = Inventory(self.store)

    # ---- an item arrives ----------------------------------------------------------------

    def accepts(self, item: dict[str, Any], href: str | None = None) -> str | None:
        """Why the item is not an input of this watcher, or None if it is."""
        if item.get("type") != "Feature":
            return "not a STAC item"
        if href is not None and not self.options.read_policy.allows(href):
            return f"refused href {href}: outside the allowed locations (--allow)"
        coll = item.get("collection")
        props = item.get("properties")
        if not isinstance(props, dict):
            return "not a STAC item (no properties)"
        if is_result(str(coll) if coll else None, props, self.options.results_collection):
            return "a result of sn9cloud (results never feed back as inputs)"
        if self.options.collections and coll not in self.options.collections:
            return (f"collection {coll!r} is not one this watcher serves "
                    f"({', '.join(self.options.collections)})")
        return None

    def handle_item(self, item: dict[str, Any], href: str | None,
                    uploaded_at: float | None = None,
                    extend: Callable[[], None] | None = None) -> Pending | None:
        """Remember ``item`` and run every pair it completes; None when nothing is left
        to do for it, else what is pending."""
        why = self.accepts(item, href)
        it = None
        if why is None:
            try:
                it = _pystac(item, href)
                if it.geometry is not None:
                    shape(it.geometry)
            except Exception as e:  # an untrusted document: skipped, never retried
                why = f"not a valid STAC item ({reason(e)})"
        if why is not None or it is None:
            self.log("skip", item=str(item.get("id"))[:200], href=href, reason=why)
            return None
        self.inventory.add(item, href)
        sar = is_sar(it, self.options.pairing.sar_collections)
        pairs = self.partners(it, sar)
        self.log("item", item=it.id, href=href, modality="sar" if sar else "optical",
                 pairs=len(pairs))
        if not pairs:
            if self.states.wait(it.id, "sar" if sar else "optical"):
                self.log("waiting", item=it.id, reason="no partner of the other modality "
                         "known yet")
            self._count_waiting()
            return None
        pending: Pending | None = None
        for pair in pairs:
            p = self.run_pair(pair, uploaded_at, extend)
            if p is not None and (pending is None or p.wait_s < pending.wait_s):
                pending = p
        return pending

    def partners(self, item: pystac.Item, sar: bool) -> list[ItemPair]:
        """The pairs ``item`` is part of among the known items, by `run`'s rules."""
        known = [_pystac(d["item"], d.get("href")) for d in self.inventory.all()]
        known = [k for k in known if k.id != item.id] + [item]
        opt_sar = self.options.pairing.sar_collections
        if sar:
            optical = [k for k in known if not is_sar(k, opt_sar)]
            pairs, _ = pair_items([item, *optical], self.options.pairing)
            return [p for p in pairs if p.sar.id == item.id]
        # an optical item: each SAR item whose best optical item it now is
        sars = [k for k in known if is_sar(k, opt_sar)
                and overlap(item, k) >= self.options.pairing.min_overlap]
        optical = [k for k in known if not is_sar(k, opt_sar)]
        pairs, _ = pair_items([*sars, *optical], self.options.pairing)
        return [p for p in pairs if p.optical.id == item.id]

    # ---- a pair -----------------------------------------------------------------------

    def run_pair(self, pair: ItemPair, uploaded_at: float | None = None,
                 extend: Callable[[], None] | None = None) -> Pending | None:
        item_id = self.run.result_id(pair.optical.id, pair.sar.id)
        claim = self.states.claim(pair.optical.id, pair.sar.id, item_id, self.options.lease_s)
        if claim.status == "published":
            self._partnered(pair)
            self.log("pair", optical=pair.optical.id, sar=pair.sar.id, status="done",
                     item_id=item_id, reason="already published")
            return None
        if claim.status == "failed":
            self.log("pair", optical=pair.optical.id, sar=pair.sar.id, status="done",
                     item_id=item_id, reason=f"failed for good: {claim.record.get('reason')}")
            return None
        if claim.status == "busy":
            wait = max(1.0, claim.wait_s)
            self.log("pair", optical=pair.optical.id, sar=pair.sar.id, status="busy",
                     item_id=item_id, retry_in_s=round(wait, 1),
                     reason=_busy_reason(claim))
            return Pending(wait, _busy_reason(claim))
        return self._work(pair, claim, item_id, uploaded_at, extend)

    def _work(self, pair: ItemPair, claim: Claim, item_id: str, uploaded_at: float | None,
              extend: Callable[[], None] | None) -> Pending | None:
        lease = self.options.lease_s

        def beat() -> None:
            self.states.renew(claim, lease)
            if extend is not None:
                extend()

        t0 = time.perf_counter()
        self.log("pair", optical=pair.optical.id, sar=pair.sar.id, status="running",
                 item_id=item_id, attempt=claim.record.get("attempts"))
        with _Heartbeat(lease / 3.0, beat) as hb:
            result = self.runner(pair)
        seconds = time.perf_counter() - t0
        if isinstance(hb.error, LeaseLost):
            # another watcher took the pair over while this one was slow: its result (or
            # ours, whichever published first) stands; publishing is create-if-absent
            self.log("pair", level="warning", optical=pair.optical.id, sar=pair.sar.id,
                     status="lease_lost", item_id=item_id, reason=str(hb.error))
            return None
        self.metrics.pair_seconds.observe(seconds)
        try:
            if result.status in ("published", "skipped"):
                self.states.published(claim, result.item_href or "", seconds)
                self._partnered(pair)
                latency = None if uploaded_at is None else self.clock() - uploaded_at
                if latency is not None and result.status == "published":
                    self.metrics.latency.observe(latency)
                self.metrics.pairs.labels(status=result.status).inc()
                self.log("pair", optical=pair.optical.id, sar=pair.sar.id,
                         status=result.status, item_id=item_id,
                         seconds=round(seconds, 3),
                         latency_s=None if latency is None else round(latency, 3),
                         estimated_error_m=result.estimated_error_m)
                if self.options.stac_api and result.status == "published":
                    self._to_api(item_id)
                return None
            kind = result.error_kind or "internal"
            attempts = int(claim.record.get("attempts", 1))
            retry = kind in RETRYABLE and attempts < self.options.max_attempts
            wait = min(self.options.retry_base_s * 2 ** (attempts - 1), 900.0)
            reason = result.error or "failed"
            if not retry and kind in RETRYABLE:
                reason = f"gave up after {attempts} attempts: {reason}"
            self.states.failed(claim, reason, kind, final=not retry, retry_in_s=wait)
        except LeaseLost as e:
            self.log("pair", level="warning", optical=pair.optical.id, sar=pair.sar.id,
                     status="lease_lost", item_id=item_id, reason=str(e))
            return None
        self.metrics.pairs.labels(status="retrying" if retry else "failed").inc()
        self.log("pair", level="warning" if retry else "error", optical=pair.optical.id,
                 sar=pair.sar.id, status="retrying" if retry else "failed",
                 item_id=item_id, seconds=round(seconds, 3), error_kind=kind,
                 reason=reason, retry_in_s=round(wait, 1) if retry else None)
        return Pending(wait, reason) if retry else None

    def _partnered(self, pair: ItemPair) -> None:
        self.states.partnered(pair.optical.id)
        self.states.partnered(pair.sar.id)
        self._count_waiting()

    def _count_waiting(self) -> None:
        n = sum(1 for r in self.states.records() if r.get("state") == "waiting")
        self.metrics.waiting.set(n)

    def _to_api(self, item_id: str) -> None:
        from sn9cloud.stac.transactions import publish_result

        try:
            publish_result(self.options.output, self.options.results_collection, item_id,
                           self.options.stac_api or "", self.api_token)
        except Exception as e:  # the static catalog has it; the API is retried next time
            self.log("stac_api", level="error", item_id=item_id, reason=outcome(e).message)

    # ---- the sweep: leases that expired, retries that are due, partners that never came

    def sweep(self) -> None:
        now = self.clock()
        for rec in self.states.expire_waiting(self.options.partner_timeout_s):
            self.metrics.pairs.labels(status="failed").inc()
            self.log("waiting_expired", level="error", item=rec.get("item"),
                     reason=rec.get("reason"))
        for rec in list(self.states.records()):
            if rec.get("kind") != "pair":
                continue
            state, lease = rec.get("state"), rec.get("lease") or {}
            due = (state == "failed" and not rec.get("final")
                   and (rec.get("retry_at") or 0) <= now) or (
                state == "running" and lease.get("expires", 0) <= now)
            if not due:
                continue
            o, s = (self.inventory.get(rec["optical"]), self.inventory.get(rec["sar"]))
            if o is None or s is None:
                continue
            oi, si = _pystac(o["item"], o.get("href")), _pystac(s["item"], s.get("href"))
            self.log("sweep", optical=oi.id, sar=si.id, state=state)
            self.run_pair(ItemPair(oi, si, overlap(oi, si)))
        self._count_waiting()


def _busy_reason(claim: Claim) -> str:
    rec = claim.record
    if rec.get("state") == "failed":
        return f"retry due later: {rec.get('reason')}"
    return f"being registered by {(rec.get('lease') or {}).get('holder')}"


def _pystac(item: dict[str, Any], href: str | None) -> pystac.Item:
    it = pystac.Item.from_dict(item, preserve_dict=True)
    if href:
        it.set_self_href(href)
    return it
