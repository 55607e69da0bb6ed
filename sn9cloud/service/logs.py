"""Structured logs: one JSON object a line (on stderr), one line per event and per pair,
so that a log pipeline can count, filter and alert without parsing prose."""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any, TextIO

_lock = threading.Lock()


class JsonLog:
    def __init__(self, stream: TextIO | None = None, **context: Any) -> None:
        self.stream = stream or sys.stderr
        self.context = context

    def __call__(self, event: str, level: str = "info", **fields: Any) -> None:
        doc = {"ts": round(time.time(), 3), "level": level, "event": event, **self.context,
               **{k: v for k, v in fields.items() if v is not None}}
        line = json.dumps(doc, default=str, sort_keys=False)
        with _lock:
            self.stream.write(line + "\n")
            self.stream.flush()
