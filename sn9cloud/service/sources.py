"""Where new items come from: S3 event notifications through an SQS queue, and a STAC
API polled for items newer than a stored watermark. Both hand items to the `Watcher`."""

from __future__ import annotations

import json
import posixpath
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sn9cloud.errors import InputError, outcome
from sn9cloud.service.events import ObjectCreated, PoisonMessage, parse_message
from sn9cloud.service.watcher import Pending, Watcher

COG_SUFFIXES = (".tif", ".tiff")


@dataclass
class QueueInfo:
    url: str
    dead_letter_url: str | None
    max_receives: int | None  # the redrive policy's maxReceiveCount


def _sqs() -> Any:
    import boto3

    # boto3 reads AWS_ENDPOINT_URL(_SQS) and the credentials itself
    return boto3.client("sqs")


class SqsSource:
    """One message at a time: its objects resolved to items, the items handled, then the
    message deleted, made visible again later (a transient failure, with backoff), or
    dead-lettered (a message no retry can help, or the last allowed receive)."""

    def __init__(self, queue_url: str, watcher: Watcher, prefixes: tuple[str, ...] = (),
                 wait_s: int = 2) -> None:
        self.watcher = watcher
        self.prefixes = prefixes
        self.wait_s = wait_s
        self.sqs = _sqs()
        self.queue = self._queue_info(queue_url)

    def _queue_info(self, url: str) -> QueueInfo:
        try:
            attrs = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])[
                "Attributes"]
        except Exception as e:
            raise InputError(f"queue {url}: not reachable ({outcome(e).message})") from e
        dlq = max_rc = None
        policy = attrs.get("RedrivePolicy")
        if policy:
            p = json.loads(policy)
            max_rc = int(p.get("maxReceiveCount", 0)) or None
            name = str(p.get("deadLetterTargetArn", "")).rsplit(":", 1)[-1]
            if name:
                dlq = self.sqs.get_queue_url(QueueName=name)["QueueUrl"]
        return QueueInfo(url, dlq, max_rc)

    def step(self) -> bool:
        """Receive and handle at most one message; True if there was one."""
        r = self.sqs.receive_message(QueueUrl=self.queue.url, MaxNumberOfMessages=1,
                                     WaitTimeSeconds=self.wait_s,
                                     AttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
                                     MessageAttributeNames=["All"])
        msgs = r.get("Messages", [])
        for m in msgs:
            self.handle(m)
        return bool(msgs)

    def handle(self, m: dict[str, Any]) -> None:
        t0 = time.perf_counter()
        log, metrics = self.watcher.log, self.watcher.metrics
        mid, receipt = m["MessageId"], m["ReceiptHandle"]
        receives = int(m.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        try:
            objects = parse_message(m.get("Body", ""))
        except PoisonMessage as e:
            self._dead_letter(m, str(e))
            metrics.messages.labels(outcome="dead_lettered").inc()
            return
        pending: Pending | None = None

        def extend() -> None:
            self.sqs.change_message_visibility(
                QueueUrl=self.queue.url, ReceiptHandle=receipt,
                VisibilityTimeout=int(self.watcher.options.lease_s))

        for obj in objects:
            try:
                p = self._object(obj, extend)
            except Exception as e:  # reading the object failed: worth another receive
                o = outcome(e)
                p = Pending(self.watcher.options.retry_base_s * 2 ** (receives - 1),
                            f"{obj.href}: {o.message}")
                log("object", level="warning", href=obj.href, reason=p.reason)
            if p is not None and (pending is None or p.wait_s < pending.wait_s):
                pending = p
        seconds = round(time.perf_counter() - t0, 3)
        if pending is None:
            self.sqs.delete_message(QueueUrl=self.queue.url, ReceiptHandle=receipt)
            metrics.messages.labels(outcome="done").inc()
            log("message", message_id=mid, objects=len(objects), outcome="deleted",
                receives=receives, seconds=seconds)
            return
        if self.queue.max_receives is not None and receives >= self.queue.max_receives:
            self._dead_letter(m, f"still failing after {receives} receives: {pending.reason}")
            metrics.messages.labels(outcome="dead_lettered").inc()
            return
        wait = int(min(max(pending.wait_s, 1.0), 43_200))
        self.sqs.change_message_visibility(QueueUrl=self.queue.url, ReceiptHandle=receipt,
                                           VisibilityTimeout=wait)
        metrics.messages.labels(outcome="retry").inc()
        log("message", level="warning", message_id=mid, objects=len(objects),
            outcome="retry", receives=receives, retry_in_s=wait, reason=pending.reason,
            seconds=seconds)

    def _dead_letter(self, m: dict[str, Any], reason: str) -> None:
        """Into the dead-letter queue with the reason as a message attribute (and out of
        this one); without a dead-letter queue, logged and dropped."""
        mid = m["MessageId"]
        if self.queue.dead_letter_url:
            self.sqs.send_message(
                QueueUrl=self.queue.dead_letter_url, MessageBody=m.get("Body", ""),
                MessageAttributes={
                    "sn9cloud-reason": {"DataType": "String", "StringValue": reason[:1000]},
                    "sn9cloud-source-message-id": {"DataType": "String", "StringValue": mid}})
        self.sqs.delete_message(QueueUrl=self.queue.url, ReceiptHandle=m["ReceiptHandle"])
        self.watcher.log("message", level="error", message_id=mid, outcome="dead_lettered"
                         if self.queue.dead_letter_url else "dropped", reason=reason)

    def _object(self, obj: ObjectCreated, extend: Any) -> Pending | None:
        log = self.watcher.log
        if self.prefixes and not obj.key.startswith(self.prefixes):
            log("skip", href=obj.href, reason="outside the watched prefixes")
            return None
        resolved = self._resolve(obj)
        if resolved is None:
            return None
        item, href = resolved
        return self.watcher.handle_item(item, href, obj.event_time, extend)

    def _resolve(self, obj: ObjectCreated) -> tuple[dict[str, Any], str] | None:
        """The STAC item an object is (item JSON) or belongs to (a COG its sibling item
        names as an asset); None, logged, for anything else."""
        from sn9cloud.io.s3 import client

        log = self.watcher.log
        if not self.watcher.options.read_policy.allows(obj.href):
            log("skip", href=obj.href, reason="refused: outside the allowed locations "
                "(--allow)")
            return None
        s3 = client()
        key = obj.key.lower()
        if key.endswith(".json"):
            doc = _read_json(s3, obj.bucket, obj.key)
            if not isinstance(doc, dict) or doc.get("type") != "Feature":
                log("skip", href=obj.href, reason="a JSON object that is not a STAC item")
                return None
            return doc, obj.href
        if key.endswith(COG_SUFFIXES):
            folder = posixpath.dirname(obj.key)
            listing = s3.list_objects_v2(Bucket=obj.bucket,
                                         Prefix=f"{folder}/" if folder else "")
            for o in listing.get("Contents", []):
                k = o["Key"]
                if not k.lower().endswith(".json") or posixpath.dirname(k) != folder:
                    continue
                doc = _read_json(s3, obj.bucket, k)
                if isinstance(doc, dict) and doc.get("type") == "Feature" and any(
                        _asset_href(a, f"s3://{obj.bucket}/{k}") == obj.href
                        for a in (doc.get("assets") or {}).values() if isinstance(a, dict)):
                    return doc, f"s3://{obj.bucket}/{k}"
            log("skip", href=obj.href, reason="a COG no item beside it names yet (its item's "
                "own event will bring it)")
            return None
        log("skip", href=obj.href, reason="neither a STAC item nor a COG")
        return None


def _read_json(s3: Any, bucket: str, key: str) -> Any:
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    try:
        return json.loads(body)
    except ValueError:
        return None


def _asset_href(asset: dict[str, Any], item_href: str) -> str:
    """An asset's absolute s3:// href, for an item at s3:// ``item_href``."""
    href = str(asset.get("href", ""))
    if "://" in href:
        return href
    folder = posixpath.dirname(item_href.removeprefix("s3://"))
    return "s3://" + posixpath.normpath(posixpath.join(folder, href))


class ApiPoller:
    """A STAC API searched every ``interval_s`` for items of ``collections`` acquired
    after the stored watermark, less ``overlap_s`` (late arrivals a little older than the
    newest item seen are still found; those seen before are known and skipped)."""

    def __init__(self, url: str, collections: tuple[str, ...], watcher: Watcher,
                 interval_s: float = 60.0, overlap_s: float = 86_400.0,
                 since: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.collections = collections
        self.watcher = watcher
        self.interval_s = interval_s
        self.overlap_s = overlap_s
        self.since = since
        self.source = f"{self.url} {','.join(sorted(collections))}"
        self._next = 0.0

    def step(self) -> bool:
        if time.monotonic() < self._next:
            return False
        self._next = time.monotonic() + self.interval_s
        return self.poll() > 0

    def poll(self) -> int:
        """One poll; returns how many new or changed items it handled."""
        from pystac_client import Client

        states, log = self.watcher.states, self.watcher.log
        mark = states.watermark(self.source) or self.since
        dt = None
        if mark:
            start = _parse(mark) - timedelta(seconds=self.overlap_s)
            dt = f"{start.isoformat().replace('+00:00', 'Z')}/.."
        try:
            client = Client.open(self.url)
            found = list(client.search(collections=list(self.collections) or None,
                                       datetime=dt).items())
        except Exception as e:
            log("poll", level="error", source=self.url, reason=outcome(e).message)
            return 0
        found.sort(key=lambda it: (str(it.properties.get("datetime") or ""), it.id))
        handled = 0
        newest = mark
        for it in found:
            d = it.to_dict(include_self_link=False, transform_hrefs=False)
            href = it.get_self_href()
            if self.watcher.accepts(d) is None and self.watcher.inventory.add(d, href):
                self.watcher.handle_item(d, href)
                handled += 1
            t = str(it.properties.get("datetime") or "")
            if t and (newest is None or t > newest):
                newest = t
        if newest and newest != mark:
            states.set_watermark(self.source, newest)
        self.watcher.metrics.messages.labels(outcome="polled").inc(handled)
        log("poll", source=self.url, found=len(found), handled=handled, watermark=newest)
        return handled


def _parse(s: str) -> datetime:
    t = datetime.fromisoformat(s.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=UTC)
