"""Trigger benchmark: a burst of new-item notifications into one SQS queue served by two
watchers, against the same pairs in one `sn9cloud run`, in one run on this machine.

    python benchmarks/trigger.py [--pairs 18] [--lonely 4] [--data ../shared/data]

moto's real server (its own process) holds the bucket and the queue (S3 notifications of
new item JSON into SQS, a redrive policy into a dead-letter queue). The pairs are real
3MOS city tiles with a known distortion each (as in benchmarks/batch.py), their COGs
uploaded first; then the burst: every item JSON in a shuffled order (SAR before optical
for some pairs), ``--lonely`` SAR items no optical item overlaps, duplicate deliveries of
some events and poisoned messages, 50 messages with the defaults. Two `sn9cloud watch`
processes serve the queue from before the burst until idle.

Printed: the latency from the upload of the item that completed a pair to its published
item (median and worst, from the watchers' JSON logs), pairs published, duplicates
(a pair published twice: must be 0), lost (a pair never published: must be 0),
dead-lettered messages and whether they are exactly the poisoned ones; and beside it
the wall time of one `sn9cloud run` over the same pairs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from batch import pair_files  # noqa: E402

BUCKET = "sn9-trigger"
SN9 = str(Path(sys.executable).with_name("sn9cloud"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--pairs", type=int, default=18)
    ap.add_argument("--lonely", type=int, default=4)
    ap.add_argument("--duplicates", type=int, default=6)
    ap.add_argument("--poisoned", type=int, default=4)
    args = ap.parse_args(argv)

    import boto3

    from sn9cloud.io.moto_server import moto_server

    rng = random.Random(3)
    with moto_server() as url, tempfile.TemporaryDirectory() as tmp:
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("SN9CLOUD_")},
               "AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "bench",
               "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
        os.environ.update({k: env[k] for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
                                               "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")})
        s3, sqs = boto3.client("s3"), boto3.client("sqs")
        s3.create_bucket(Bucket=BUCKET)
        dlq = sqs.create_queue(QueueName="trigger-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])[
            "Attributes"]["QueueArn"]
        queue = sqs.create_queue(QueueName="trigger", Attributes={
            "VisibilityTimeout": "60", "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"})})["QueueUrl"]
        qarn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])[
            "Attributes"]["QueueArn"]

        # the data: COGs first (not watched), the items wait for the burst
        items: list[tuple[str, bool, dict]] = []
        for iid, sar, tif, key, it in pair_files(args.data, args.pairs, Path(tmp)):
            s3.upload_file(str(tif), BUCKET, f"data/{iid}/{key}.tif")
            it["assets"][key]["href"] = f"s3://{BUCKET}/data/{iid}/{key}.tif"
            items.append((iid, sar, it))
        lonely = []
        for iid, sar, tif, key, it in pair_files(args.data, args.lonely, Path(tmp),
                                                 first=args.pairs + 10):
            if not sar:
                continue  # only its SAR item comes: no optical item overlaps it
            s3.upload_file(str(tif), BUCKET, f"data/{iid}/{key}.tif")
            it["assets"][key]["href"] = f"s3://{BUCKET}/data/{iid}/{key}.tif"
            lonely.append((iid, sar, it))
        # the same pairs for one `sn9cloud run`, from their own catalog
        links = []
        for iid, _, it in items:
            s3.put_object(Bucket=BUCKET, Key=f"runcat/{iid}/{iid}.json", Body=json.dumps(it))
            links.append({"rel": "item", "href": f"./{iid}/{iid}.json"})
        s3.put_object(Bucket=BUCKET, Key="runcat/catalog.json", Body=json.dumps(
            {"type": "Catalog", "stac_version": "1.1.0", "id": "run", "description": "run",
             "links": [{"rel": "root", "href": "./catalog.json"}, *links]}))
        s3.put_bucket_notification_configuration(Bucket=BUCKET, NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": qarn, "Events": ["s3:ObjectCreated:*"],
                                     "Filter": {"Key": {"FilterRules": [
                                         {"Name": "prefix", "Value": "cat/"},
                                         {"Name": "suffix", "Value": ".json"}]}}}]})
        # S3's test event, then an empty queue for the burst
        sqs.purge_queue(QueueUrl=queue)

        t0 = time.perf_counter()
        run = subprocess.run([SN9, "run", f"s3://{BUCKET}/runcat/catalog.json", "--out",
                              f"s3://{BUCKET}/run-out"], env=env, capture_output=True,
                             text=True)
        run_s = time.perf_counter() - t0
        assert run.returncode in (0, 2), run.stderr[-2000:]  # 2: some pairs declined

        watchers = [subprocess.Popen([SN9, "watch", "--queue", queue, "--out",
                                      f"s3://{BUCKET}/out", "--prefix", "cat/",
                                      "--allow", f"s3://{BUCKET}/cat/",
                                      "--max-idle", "15"], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True) for _ in range(2)]
        time.sleep(4.0)  # both watchers started and polling before the burst
        order = items + lonely
        rng.shuffle(order)
        uploaded: dict[str, float] = {}
        messages = 0
        for iid, _, it in order:
            uploaded[iid] = time.time()
            s3.put_object(Bucket=BUCKET, Key=f"cat/{iid}/{iid}.json", Body=json.dumps(it))
            messages += 1
        for iid, _, _ in rng.sample(items, args.duplicates):  # the same event again
            rec = {"eventName": "ObjectCreated:Put", "s3": {
                "bucket": {"name": BUCKET}, "object": {"key": f"cat/{iid}/{iid}.json"}}}
            sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"Records": [rec]}))
            messages += 1
        poisoned = [f"poison {k}: not an S3 event" for k in range(args.poisoned)]
        for body in poisoned:
            sqs.send_message(QueueUrl=queue, MessageBody=body)
            messages += 1
        logs = []
        for w in watchers:
            _, err = w.communicate(timeout=1800)
            for ln in err.splitlines():
                try:
                    logs.append(json.loads(ln))
                except ValueError:
                    pass
        dead = []
        while True:
            r = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            if not r.get("Messages"):
                break
            dead += [m["Body"] for m in r["Messages"]]
            for m in r["Messages"]:
                sqs.delete_message(QueueUrl=dlq, ReceiptHandle=m["ReceiptHandle"])

    by_id = {iid: it for iid, _, it in items}
    expected = {f"pair{i:02d}" for i in range(args.pairs)}
    published = [e for e in logs if e.get("event") == "pair" and e.get("status") == "published"]
    counts = Counter(e["optical"].rsplit("-", 1)[0] for e in published)
    latencies = []
    for e in published:
        pair = e["optical"].rsplit("-", 1)[0]
        done_at = max(uploaded[f"{pair}-optical"], uploaded[f"{pair}-sar"])
        latencies.append(e["ts"] - done_at)
    declined = {e["optical"].rsplit("-", 1)[0] for e in logs if e.get("event") == "pair"
                and e.get("status") == "failed"}
    lost = sorted(expected - set(counts) - declined)
    dup = sum(c - 1 for c in counts.values() if c > 1)
    run_published = run.stdout.count(" published ")
    print(f"\n{messages} messages ({len(order)} item uploads, {args.duplicates} duplicate "
          f"deliveries, {args.poisoned} poisoned) into one queue, two watchers")
    print(f"pairs expected {len(expected)}: published {len(counts)}, declined as "
          f"unreliable {len(declined)}, duplicates {dup}, lost {len(lost)} {lost or ''}")
    print(f"dead-lettered {len(dead)}: exactly the poisoned ones: "
          f"{sorted(dead) == sorted(poisoned)}")
    waiting = {e["item"] for e in logs if e.get("event") == "waiting"}
    print(f"lonely SAR items recorded waiting: {len(waiting & {i for i, _, _ in lonely})} of "
          f"{len(lonely)}")
    if latencies:
        print(f"latency upload -> published: median {statistics.median(latencies):.1f} s, "
              f"worst {max(latencies):.1f} s")
    print(f"one `sn9cloud run` over the same {len(by_id) // 2} pairs: {run_s:.1f} s "
          f"({run_published} lines published); median latency / run time: "
          f"{statistics.median(latencies) / run_s:.2f}" if latencies else "")
    return 0 if dup == 0 and not lost else 1


if __name__ == "__main__":
    raise SystemExit(main())
