"""Where window jobs run: in this process, or (sn9cloud.distributed) on a Ray cluster.

The engine plans its work as independent jobs (a function and its arguments) and hands
them to an executor; the results come back in order, so the plan gives the same answer
wherever it runs. This module holds the interface and the in-process executor; it knows
nothing of Ray.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import cv2


def threads() -> int:
    """Threads one process may use for FFTs, OpenCV and GDAL: ``SN9CLOUD_THREADS`` or all
    cores. Ray workers are single-threaded (the cluster runs one job per core): they set 1.
    """
    v = os.environ.get("SN9CLOUD_THREADS")
    n = max(1, int(v)) if v else (os.cpu_count() or 1)
    if v and cv2.getNumThreads() != n:
        cv2.setNumThreads(n)
    return n


class Executor(Protocol):
    def map(self, fn: Callable[..., Any], jobs: list[tuple]) -> list[Any]:
        """``[fn(*job) for job in jobs]``, in order, wherever they run."""
        ...

    def imap(self, fn: Callable[..., Any], jobs: Iterable[tuple], lookahead: int) -> Iterator[Any]:
        """Like `map`, streamed: at most ``lookahead`` jobs computed ahead of the consumer."""
        ...


class LocalExecutor:
    """Jobs in this process; `imap` overlaps the next jobs with the consumer on a thread."""

    def map(self, fn: Callable[..., Any], jobs: list[tuple]) -> list[Any]:
        return [fn(*job) for job in jobs]

    def imap(self, fn: Callable[..., Any], jobs: Iterable[tuple], lookahead: int) -> Iterator[Any]:
        it = iter(jobs)
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = [pool.submit(fn, *job) for _, job in zip(range(lookahead), it, strict=False)]
            while pending:
                result = pending.pop(0).result()
                nxt = next(it, None)
                if nxt is not None:
                    pending.append(pool.submit(fn, *nxt))
                yield result


LOCAL = LocalExecutor()
