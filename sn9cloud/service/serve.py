"""The watcher's main loop: sources stepped in turn, a sweep now and then, a clean stop on
SIGTERM or SIGINT (the pair in hand is finished and published, or not started: never half
published), and optionally an exit once idle (batch-like runs, tests, benchmarks)."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Sequence
from typing import Protocol

from sn9cloud.errors import outcome
from sn9cloud.service.watcher import Watcher


class Source(Protocol):
    def step(self) -> bool: ...


def stop_on_signals(stop: threading.Event, watcher: Watcher) -> None:
    def handler(signum: int, _frame: object) -> None:
        watcher.log("stopping", signal=signal.Signals(signum).name,
                    reason="finishing the pair in hand, then exiting")
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def serve(watcher: Watcher, sources: Sequence[Source], stop: threading.Event,
          sweep_s: float = 30.0, idle_exit_s: float | None = None,
          once: bool = False) -> None:
    """Run until ``stop`` is set (or, with ``idle_exit_s``, until nothing came for that
    long; with ``once``, after one round of every source and a sweep)."""
    watcher.log("started", holder=watcher.holder, config_hash=watcher.run.config_hash,
                sources=len(sources))
    last_work = last_sweep = time.monotonic()
    while not stop.is_set():
        worked = False
        for src in sources:
            if stop.is_set():
                break
            try:
                worked = src.step() or worked
            except Exception as e:  # a queue or API gone: logged, retried next round
                watcher.log("source", level="error", source=type(src).__name__,
                            reason=outcome(e).message)
                stop.wait(2.0)
        now = time.monotonic()
        if once or now - last_sweep >= sweep_s:
            try:
                watcher.sweep()
            except Exception as e:
                watcher.log("sweep", level="error", reason=outcome(e).message)
            last_sweep = now
        if once:
            break
        if worked:
            last_work = now
        elif idle_exit_s is not None and now - last_work >= idle_exit_s:
            watcher.log("idle", reason=f"nothing for {idle_exit_s:g} s")
            break
        if not worked:
            stop.wait(0.2)
    watcher.log("stopped", holder=watcher.holder)
