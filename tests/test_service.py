"""The service end to end on moto's real server (S3 notifications into a real SQS queue
with a redrive policy) and the real STAC API: watchers as separate processes, killed,
stopped and doubled; the poller; state leases; the stac-task entry; the events."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner
from runs import result_id

from sn9cloud.cli import main
from sn9cloud.io.store import LocalStore
from sn9cloud.service.events import PoisonMessage, parse_message
from sn9cloud.service.state import PairStates

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "catalogs" / "sample"
SN9 = str(Path(sys.executable).with_name("sn9cloud"))


# ---- the events ---------------------------------------------------------------------

def _record(key: str, name: str = "ObjectCreated:Put") -> dict[str, Any]:
    return {"eventName": name, "eventTime": "2026-12-01T10:00:00.000Z",
            "s3": {"bucket": {"name": "bkt"}, "object": {"key": key}}}


def test_event_messages_direct_through_sns_and_poisoned() -> None:
    direct = json.dumps({"Records": [_record("items/a+b%2Bc.json"),
                                     _record("x.json", "ObjectRemoved:Delete")]})
    (obj,) = parse_message(direct)
    assert (obj.bucket, obj.key, obj.href) == ("bkt", "items/a b+c.json",
                                               "s3://bkt/items/a b+c.json")
    assert obj.event_time is not None
    sns = json.dumps({"Type": "Notification", "Message": direct})
    assert parse_message(sns) == [obj]
    assert parse_message(json.dumps({"Event": "s3:TestEvent", "Bucket": "bkt"})) == []
    for body, why in (("garbage", "not JSON"), ("[1]", "not a JSON object"),
                      ('{"Records": 3}', "no Records"),
                      ('{"Records": [{"eventName": "ObjectCreated:Put", "s3": {}}]}',
                       "without s3.bucket.name"),
                      ('{"Type": "Notification", "Message": 5}', "not a string")):
        with pytest.raises(PoisonMessage, match=why):
            parse_message(body)


# ---- state: leases, takeover, retries ------------------------------------------------

def test_leases_are_exclusive_expire_and_are_taken_over(tmp_path: Path) -> None:
    now = [1000.0]
    store = LocalStore(str(tmp_path))
    a = PairStates(store, "c" * 64, "watcher-a", clock=lambda: now[0])
    b = PairStates(store, "c" * 64, "watcher-b", clock=lambda: now[0])
    claim = a.claim("o", "s", "item", lease_s=10)
    assert claim.status == "acquired"
    busy = b.claim("o", "s", "item", lease_s=10)
    assert busy.status == "busy" and busy.wait_s == pytest.approx(10)
    now[0] += 5
    a.renew(claim, 10)
    assert b.claim("o", "s", "item", 10).wait_s == pytest.approx(10)
    now[0] += 11  # a died: its lease ran out
    taken = b.claim("o", "s", "item", 10)
    assert taken.status == "acquired" and taken.record["attempts"] == 2
    assert "taken over from watcher-a" in taken.record["history"][-1]["event"]
    from sn9cloud.service.state import LeaseLost

    with pytest.raises(LeaseLost):  # a, back from the dead, may not write
        a.published(claim, "href", 1.0)
    b.failed(taken, "S3 503", "transient", final=False, retry_in_s=30)
    assert a.claim("o", "s", "item", 10).status == "busy"  # retry not due yet
    now[0] += 31
    again = a.claim("o", "s", "item", 10)
    assert again.status == "acquired" and again.record["attempts"] == 3
    a.published(again, "s3://x/item.json", 2.0)
    assert b.claim("o", "s", "item", 10).status == "published"
    # a pair failed for good stays failed; a released lease is free at once
    c = a.claim("o2", "s2", "item2", 10)
    a.release(c, "SIGTERM")
    assert b.claim("o2", "s2", "item2", 10).status == "acquired"
    d = a.claim("o3", "s3", "item3", 10)
    a.failed(d, "not a raster", "input", final=True)
    assert b.claim("o3", "s3", "item3", 10).status == "failed"
    # waiting items expire into failed records with the reason
    assert a.wait("lonely", "sar") and not b.wait("lonely", "sar")
    now[0] += 7200
    (expired,) = a.expire_waiting(3600)
    assert expired["state"] == "failed" and "no optical partner arrived within 1 h" in \
        expired["reason"]
    a.set_watermark("api", "2023-02-08T00:00:00Z")
    a.set_watermark("api", "2023-02-01T00:00:00Z")  # never moves back
    assert b.watermark("api") == "2023-02-08T00:00:00Z"


# ---- a bucket and a queue on moto's server --------------------------------------------

@dataclass
class Events:
    env: dict[str, str]
    bucket: str
    queue: str
    dlq: str
    out: str
    s3: Any
    sqs: Any

    def upload(self, rel: str, prefix: str = "cat") -> None:
        """An item folder of the sample catalog: the COG first, then the item JSON."""
        for suffix in (".tif", ".json"):
            for f in sorted((SAMPLE / rel).iterdir()):
                if f.suffix == suffix:
                    self.s3.upload_file(str(f), self.bucket, f"{prefix}/{rel}/{f.name}")

    def result_items(self) -> list[dict[str, Any]]:
        bucket, prefix = self.out[5:].split("/", 1)
        keys = [o["Key"] for o in self.s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
                .get("Contents", [])]
        return [json.loads(self.s3.get_object(Bucket=bucket, Key=k)["Body"].read())
                for k in keys if "/sn9-offsets-" in k and k.endswith(".json")
                and "/report-" not in k]

    def dead(self) -> list[dict[str, Any]]:
        msgs = []
        while True:
            r = self.sqs.receive_message(QueueUrl=self.dlq, MaxNumberOfMessages=10,
                                         MessageAttributeNames=["All"], WaitTimeSeconds=0)
            if not r.get("Messages"):
                return msgs
            msgs += r["Messages"]
            for m in r["Messages"]:
                self.sqs.delete_message(QueueUrl=self.dlq, ReceiptHandle=m["ReceiptHandle"])


@pytest.fixture()
def events(s3_env: str) -> Events:
    name = f"sn9-{uuid.uuid4().hex[:10]}"
    s3, sqs = boto3.client("s3"), boto3.client("sqs")
    s3.create_bucket(Bucket=name)
    dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    q = sqs.create_queue(QueueName=name, Attributes={
        "VisibilityTimeout": "5", "RedrivePolicy": json.dumps(
            {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "4"})})["QueueUrl"]
    qarn = sqs.get_queue_attributes(QueueUrl=q, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"]
    s3.put_bucket_notification_configuration(Bucket=name, NotificationConfiguration={
        "QueueConfigurations": [{"QueueArn": qarn, "Events": ["s3:ObjectCreated:*"],
                                 "Filter": {"Key": {"FilterRules": [
                                     {"Name": "prefix", "Value": "cat/"}]}}}]})
    env = {k: v for k, v in os.environ.items() if not k.startswith("SN9CLOUD_")}
    return Events(env, name, q, dlq, f"s3://{name}/results", s3, sqs)


def _watch(ev: Events, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([SN9, "watch", "--queue", ev.queue, "--out", ev.out,
                             "--allow", f"s3://{ev.bucket}/cat/", *args],
                            env=ev.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _logs(p: subprocess.Popen[str], timeout: float = 180) -> tuple[int, list[dict[str, Any]]]:
    _, err = p.communicate(timeout=timeout)
    lines = []
    for ln in err.splitlines():
        try:
            lines.append(json.loads(ln))
        except ValueError:
            continue  # a library's own stderr line
    return p.returncode, lines


def _published(logs: list[dict[str, Any]]) -> list[str]:
    return [e["item_id"] for e in logs if e["event"] == "pair" and e["status"] == "published"]


def test_optical_then_sar_one_result_found_through_the_api(
        events: Events, stac_api: dict[str, str]) -> None:
    ev = events
    url = stac_api["STAC_API_URL"]
    ev.upload("sample-optical/sample-optical-02")
    ev.upload("sample-sar/sample-sar-02")
    ev.s3.put_object(Bucket=ev.bucket, Key="cat/notes.txt", Body=b"not an item")
    ev.sqs.send_message(QueueUrl=ev.queue, MessageBody="{not json")
    code, logs = _logs(_watch(ev, "--max-idle", "4", "--publish-api", url,
                              "--results-collection", "sn9-service"))
    assert code == 0, logs[-5:]
    rid = result_id("sample-optical-02", "sample-sar-02")
    assert _published(logs) == [rid]
    assert [it["id"] for it in ev.result_items()] == [rid]
    assert any(e["event"] == "skip" and "neither a STAC item nor a COG" in e["reason"]
               for e in logs)
    from pystac_client import Client

    found = list(Client.open(url).search(collections=["sn9-service"], ids=[rid]).items())
    assert len(found) == 1 and found[0].assets["offsets"].href.startswith("s3://")
    (dead,) = ev.dead()
    assert dead["Body"] == "{not json"
    assert "not JSON" in dead["MessageAttributes"]["sn9cloud-reason"]["StringValue"]

    # the same event again (a duplicate delivery): nothing changes
    before = {o["Key"]: o["ETag"] for o in ev.s3.list_objects_v2(
        Bucket=ev.bucket, Prefix="results/sn9-service/")["Contents"]}
    body = json.dumps({"Records": [{
        "eventName": "ObjectCreated:Put", "eventTime": "2026-12-01T10:00:00Z",
        "s3": {"bucket": {"name": ev.bucket}, "object": {
            "key": "cat/sample-sar/sample-sar-02/sample-sar-02.json"}}}]})
    ev.sqs.send_message(QueueUrl=ev.queue, MessageBody=body)
    ev.sqs.send_message(QueueUrl=ev.queue, MessageBody=json.dumps(
        {"Type": "Notification", "Message": body}))  # and through SNS
    code, logs = _logs(_watch(ev, "--max-idle", "3", "--publish-api", url,
                              "--results-collection", "sn9-service"))
    assert code == 0 and _published(logs) == []
    assert sum(e["event"] == "pair" and e.get("reason") == "already published"
               for e in logs) == 2
    after = {o["Key"]: o["ETag"] for o in ev.s3.list_objects_v2(
        Bucket=ev.bucket, Prefix="results/sn9-service/")["Contents"]}
    assert after == before
    assert len(list(Client.open(url).search(collections=["sn9-service"]).items())) == 1


def test_a_message_that_keeps_failing_ends_in_the_dead_letter_queue(events: Events) -> None:
    """Its object is gone (deleted before the watcher read it): each receive fails, is
    retried with backoff, and the last allowed receive dead-letters it with the reason."""
    ev = events
    ev.sqs.send_message(QueueUrl=ev.queue, MessageBody=json.dumps({"Records": [
        {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": ev.bucket},
                                                  "object": {"key": "cat/gone/item.json"}}}]}))
    code, logs = _logs(_watch(ev, "--retry-base", "0.5", "--max-idle", "8"))
    assert code == 0
    retries = [e for e in logs if e["event"] == "message" and e["outcome"] == "retry"]
    assert [e["receives"] for e in retries] == [1, 2, 3]
    (dead,) = ev.dead()
    reason = dead["MessageAttributes"]["sn9cloud-reason"]["StringValue"]
    assert "still failing after 4 receives" in reason and "cat/gone/item.json" in reason


def test_a_partner_that_arrives_later_and_one_that_never_does(events: Events) -> None:
    ev = events
    ev.upload("sample-optical/sample-optical-01")
    code, logs = _logs(_watch(ev, "--max-idle", "3"))
    assert code == 0 and _published(logs) == []
    assert any(e["event"] == "waiting" and e["item"] == "sample-optical-01" for e in logs)
    res = CliRunner().invoke(main, ["status", ev.out])
    assert "1 waiting" in res.output, res.output
    ev.upload("sample-sar/sample-sar-01")
    ev.upload("sample-sar/sample-sar-03")  # its optical item never comes
    code, logs = _logs(_watch(ev, "--max-idle", "4", "--partner-timeout", "0.0005",
                              "--sweep-interval", "1"))
    assert code == 0
    assert _published(logs) == [result_id("sample-optical-01", "sample-sar-01")]
    expired = [e for e in logs if e["event"] == "waiting_expired"]
    assert [e["item"] for e in expired] == ["sample-sar-03"]
    res = CliRunner().invoke(main, ["status", ev.out])
    assert "1 published" in res.output and "1 failed" in res.output
    assert "failed: item sample-sar-03" in res.output
    assert "no optical partner arrived within" in res.output


def _state_running(ev: Events) -> bool:
    keys = [o["Key"] for o in ev.s3.list_objects_v2(
        Bucket=ev.bucket, Prefix="results/_sn9cloud-state/").get("Contents", [])
        if "/pairs/" in o["Key"]]
    for k in keys:
        rec = json.loads(ev.s3.get_object(Bucket=ev.bucket, Key=k)["Body"].read())
        if rec["state"] == "running":
            return True
    return False


def _wait_running(ev: Events, p: subprocess.Popen[str], timeout: float = 120) -> None:
    t0 = time.time()
    while not _state_running(ev):
        assert p.poll() is None, "the watcher ended before it started the pair"
        assert time.time() - t0 < timeout, "the pair never started"
        time.sleep(0.01)


def test_a_killed_watcher_is_replaced_and_the_pair_published_once(events: Events) -> None:
    ev = events
    ev.upload("sample-optical/sample-optical-03")
    ev.upload("sample-sar/sample-sar-03")
    first = _watch(ev, "--lease", "3")
    _wait_running(ev, first)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    assert ev.result_items() == []  # killed mid-pair, before its item was written
    code, logs = _logs(_watch(ev, "--lease", "3", "--max-idle", "8",
                              "--sweep-interval", "1"))
    assert code == 0
    rid = result_id("sample-optical-03", "sample-sar-03")
    assert _published(logs) == [rid]
    assert [it["id"] for it in ev.result_items()] == [rid]
    res = CliRunner().invoke(main, ["status", ev.out, "--json"])
    (rec,) = [json.loads(ln) for ln in res.output.splitlines()
              if json.loads(ln)["kind"] == "pair"]
    assert rec["state"] == "published" and rec["attempts"] == 2
    assert any("taken over" in h["event"] for h in rec["history"])


def test_sigterm_finishes_the_pair_in_hand_then_stops(events: Events) -> None:
    ev = events
    ev.upload("sample-optical/sample-optical-01")
    ev.upload("sample-sar/sample-sar-01")
    p = _watch(ev)
    _wait_running(ev, p)
    p.send_signal(signal.SIGTERM)
    code, logs = _logs(p, timeout=120)
    assert code == 0
    assert any(e["event"] == "stopping" and e["signal"] == "SIGTERM" for e in logs)
    assert _published(logs) == [result_id("sample-optical-01", "sample-sar-01")]
    assert logs[-1]["event"] == "stopped"


def test_two_watchers_on_one_queue_never_publish_a_pair_twice(events: Events) -> None:
    ev = events
    for n in ("01", "02", "03"):
        ev.upload(f"sample-optical/sample-optical-{n}")
    for n in ("01", "02", "03"):
        ev.upload(f"sample-sar/sample-sar-{n}")
        key = f"cat/sample-sar/sample-sar-{n}/sample-sar-{n}.json"
        for _ in range(2):  # duplicate deliveries, for both watchers to race on
            ev.sqs.send_message(QueueUrl=ev.queue, MessageBody=json.dumps({"Records": [
                {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": ev.bucket},
                                                          "object": {"key": key}}}]}))
    a, b = _watch(ev, "--max-idle", "6"), _watch(ev, "--max-idle", "6")
    (ca, la), (cb, lb) = _logs(a), _logs(b)
    assert ca == cb == 0
    published = _published(la) + _published(lb)
    assert sorted(published) == sorted(result_id(f"sample-optical-{n}", f"sample-sar-{n}")
                                       for n in ("01", "02", "03"))
    assert len(ev.result_items()) == 3
    assert ev.dead() == []


def test_the_poller_picks_up_items_added_to_the_api(stac_api: dict[str, str],
                                                    tmp_path: Path) -> None:
    dsn, url = stac_api["PGSTAC_DSN"], stac_api["STAC_API_URL"]
    res = CliRunner().invoke(main, ["ingest", str(SAMPLE / "catalog.json"), "--dsn", dsn])
    assert res.exit_code == 0, res.output
    out = tmp_path / "out"
    args = [SN9, "watch", "--stac-api", url, "--collection", "sample-optical",
            "--collection", "sample-sar", "--out", str(out), "--once", "--allow", str(SAMPLE)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SN9CLOUD_")}

    def poll() -> list[str]:
        p = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        code, logs = _logs(p)
        assert code == 0, logs[-5:]
        return _published(logs)

    assert len(poll()) == 3
    assert poll() == []  # an overlapping poll publishes nothing twice
    # a new SAR item arrives in the API: the next poll pairs and publishes it
    sar = json.loads((SAMPLE / "sample-sar" / "sample-sar-02" / "sample-sar-02.json")
                     .read_text())
    sar["id"] = "sample-sar-02-later"
    sar["properties"]["datetime"] = "2023-02-09T10:00:00Z"
    for a in sar["assets"].values():
        a["href"] = str(SAMPLE / "sample-sar" / "sample-sar-02" / a["href"])
    sar["links"] = []
    import requests

    r = requests.post(f"{url}/collections/sample-sar/items", json=sar, timeout=30)
    assert r.status_code in (200, 201), r.text
    try:
        assert poll() == [result_id("sample-optical-02", "sample-sar-02-later")]
    finally:  # the API is shared by the session's tests: leave it as it was
        requests.delete(f"{url}/collections/sample-sar/items/{sar['id']}", timeout=30)


# ---- operations ----------------------------------------------------------------------

def test_metrics_are_served(tmp_path: Path) -> None:
    import urllib.request

    from conftest import free_port
    from runs import default_run

    from sn9cloud.io.policy import ReadPolicy
    from sn9cloud.service.logs import JsonLog
    from sn9cloud.service.watcher import LocalRunner, Watcher, WatchOptions
    from sn9cloud.settings import Settings

    options = WatchOptions(output=str(tmp_path / "out"),
                           read_policy=ReadPolicy.of(allow=[str(SAMPLE)]))
    run = default_run()
    log_path = tmp_path / "log.jsonl"
    with log_path.open("w") as stream:
        w = Watcher(options, run, LocalRunner(options, run, Settings.from_env()),
                    JsonLog(stream))
        for rel in ("sample-optical/sample-optical-01", "sample-sar/sample-sar-01"):
            p = next((SAMPLE / rel).glob("*.json"))
            assert w.handle_item(json.loads(p.read_text()), str(p), time.time()) is None
        port = free_port()
        server = w.metrics.serve(port, "127.0.0.1")
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                          timeout=10).read().decode()
        finally:
            server[0].shutdown()
    assert 'sn9cloud_pairs_total{status="published"} 1.0' in text
    assert "sn9cloud_publish_latency_seconds_count 1.0" in text
    assert "sn9cloud_items_waiting 0.0" in text
    events_ = [json.loads(ln)["event"] for ln in log_path.read_text().splitlines()]
    assert events_.count("pair") == 2 and "waiting" in events_


def test_watch_needs_a_source_and_sane_numbers(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["watch", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "nothing to watch" in res.output
    res = CliRunner().invoke(main, ["watch", "--out", str(tmp_path), "--queue", "q",
                                    "--lease", "0"])
    assert res.exit_code == 2 and "--lease 0: must be more than 0" in res.output
    assert not any(tmp_path.iterdir())


def test_a_queue_that_is_not_there(s3_env: str, tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["watch", "--out", str(tmp_path / "o"), "--queue",
                                    f"{s3_env}/123456789012/none", "--allow", "s3://b/"])
    assert res.exit_code == 2
    assert "queue" in res.output and "not reachable" in res.output


# ---- stac-task ---------------------------------------------------------------------

def _payload(items: list[str], path_template: str) -> dict[str, Any]:
    feats = []
    for rel in items:
        p = next((SAMPLE / rel).glob("*.json"))
        d = json.loads(p.read_text())
        for a in d["assets"].values():
            a["href"] = str((p.parent / a["href"]).resolve())
        d["links"] = [{"rel": "self", "href": str(p)}]
        feats.append(d)
    return {"type": "FeatureCollection", "id": "sn9-test-payload", "features": feats,
            "process": [{"upload_options": {"path_template": path_template,
                                            "s3_urls": True},
                         "tasks": {"sn9cloud": {"matcher": "engine",
                                                "engine": {"model": "affine"},
                                                "results_collection": "sn9-task"}}}]}


def test_stac_task_payload_in_result_items_out(s3_env: str, tmp_path: Path) -> None:
    bucket = f"sn9-task-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=bucket)
    payload = tmp_path / "payload.json"
    payload.write_text(json.dumps(_payload(
        ["sample-optical/sample-optical-02", "sample-sar/sample-sar-02"],
        f"s3://{bucket}/${{collection}}/${{id}}/")))
    out = tmp_path / "out.json"
    res = CliRunner().invoke(main, ["task", str(payload), "--output", str(out)])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    (item,) = doc["features"]
    rid = result_id("sample-optical-02", "sample-sar-02", **{"engine.model": "affine"})
    assert item["id"] == rid and item["collection"] == "sn9-task"
    assert item["properties"]["sn9cloud:model"] == "affine"
    assert {ln["rel"] for ln in item["links"]} == {"derived_from"}
    import hashlib

    cog = item["assets"]["offsets"]["href"]
    assert cog.startswith(f"s3://{bucket}/sn9-task/{rid}/offsets-")
    body = s3.get_object(Bucket=bucket, Key=cog.split("/", 3)[3])["Body"].read()
    assert item["assets"]["offsets"]["file:checksum"] == "1220" + hashlib.sha256(body).hexdigest()
    # a payload the task cannot use: one line, exit 2
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_payload(["sample-sar/sample-sar-02"], "s3://x/${id}/")))
    res = CliRunner().invoke(main, ["task", str(bad)])
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1
    assert "needs at least one SAR and one optical item" in res.output
    p = _payload(["sample-optical/sample-optical-02", "sample-sar/sample-sar-02"], "x/")
    p["process"][0]["tasks"]["sn9cloud"]["engine"] = {"half": 1}
    bad.write_text(json.dumps(p))
    res = CliRunner().invoke(main, ["task", str(bad)])
    assert res.exit_code == 2 and "task parameters: engine.half = 1: must be at least 4" \
        in res.output


def test_a_queue_or_api_that_disappears_is_logged_and_the_watcher_goes_on(
        events: Events, tmp_path: Path) -> None:
    import io
    import threading

    from conftest import free_port
    from runs import default_run

    from sn9cloud.service.logs import JsonLog
    from sn9cloud.service.serve import serve
    from sn9cloud.service.sources import ApiPoller, SqsSource
    from sn9cloud.service.watcher import LocalRunner, Watcher, WatchOptions
    from sn9cloud.settings import Settings

    options = WatchOptions(output=str(tmp_path / "out"))
    run = default_run()
    stream = io.StringIO()
    w = Watcher(options, run, LocalRunner(options, run, Settings.from_env()), JsonLog(stream))
    queue = SqsSource(events.queue, w, wait_s=0)
    api = ApiPoller(f"http://127.0.0.1:{free_port()}", ("x",), w, interval_s=0.5)
    events.sqs.delete_queue(QueueUrl=events.queue)
    serve(w, [queue, api], threading.Event(), sweep_s=0.5, idle_exit_s=3)
    logs = [json.loads(ln) for ln in stream.getvalue().splitlines()]
    kinds = {(e["event"], e["level"]) for e in logs}
    assert ("source", "error") in kinds and ("poll", "error") in kinds
    assert sum(e["event"] == "source" for e in logs) >= 2  # it kept trying
    assert logs[-1]["event"] == "stopped"
