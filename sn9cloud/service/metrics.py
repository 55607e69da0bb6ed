"""Prometheus metrics of a watcher, on their own registry (so that several watchers in one
process, as in tests, do not collide), served on ``--metrics-port``."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

LATENCY_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.messages = Counter("sn9cloud_messages_total", "Queue messages and polled items "
                                "handled, by outcome", ["outcome"], registry=r)
        self.pairs = Counter("sn9cloud_pairs_total", "Pairs finished, by status",
                             ["status"], registry=r)
        self.waiting = Gauge("sn9cloud_items_waiting", "Items waiting for a partner",
                             registry=r)
        self.latency = Histogram("sn9cloud_publish_latency_seconds", "From the upload of "
                                 "the item that completed a pair to its published result",
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.pair_seconds = Histogram("sn9cloud_pair_seconds", "Registering and publishing "
                                      "one pair", buckets=LATENCY_BUCKETS, registry=r)

    def serve(self, port: int, host: str = "0.0.0.0") -> Any:
        return start_http_server(port, addr=host, registry=self.registry)
