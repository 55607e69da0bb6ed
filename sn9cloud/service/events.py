"""S3 event notifications, as SQS delivers them: straight from S3, or wrapped in an SNS
notification; S3's test event carries no records. A body that is none of these is a
`PoisonMessage`: no retry can make sense of it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

from sn9cloud.errors import InputError


class PoisonMessage(InputError):
    """A message that can never be processed (not an S3 event notification)."""


@dataclass(frozen=True)
class ObjectCreated:
    bucket: str
    key: str
    event_time: float | None  # epoch seconds of the upload, where the event says

    @property
    def href(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def parse_message(body: str) -> list[ObjectCreated]:
    """The objects a message says were created; [] for a test event or other events."""
    try:
        doc = json.loads(body)
    except ValueError:
        raise PoisonMessage(f"message body is not JSON ({body[:60]!r})") from None
    if not isinstance(doc, dict):
        raise PoisonMessage("message body is not a JSON object")
    if doc.get("Type") == "Notification" and "Message" in doc:  # SNS wrapped it
        inner = doc["Message"]
        if not isinstance(inner, str):
            raise PoisonMessage("SNS notification whose Message is not a string")
        return parse_message(inner)
    if doc.get("Event") == "s3:TestEvent":
        return []
    records = doc.get("Records")
    if not isinstance(records, list):
        raise PoisonMessage("not an S3 event notification (no Records)")
    out = []
    for r in records:
        if not isinstance(r, dict):
            raise PoisonMessage("an S3 event record that is not an object")
        if not str(r.get("eventName", "")).startswith("ObjectCreated"):
            continue
        try:
            bucket = str(r["s3"]["bucket"]["name"])
            key = unquote_plus(str(r["s3"]["object"]["key"]))
        except (KeyError, TypeError):
            raise PoisonMessage("an S3 event record without s3.bucket.name and "
                                "s3.object.key") from None
        out.append(ObjectCreated(bucket, key, _time(r.get("eventTime"))))
    return out


def _time(v: Any) -> float | None:
    if not isinstance(v, str):
        return None
    try:
        t = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()
