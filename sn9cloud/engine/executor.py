"""Where window jobs run: in this process, or (sn9cloud.distributed) on a Ray cluster.

The engine plans its work as independent jobs (a function and its arguments) and hands
them to an executor; the results come back in order, so the plan gives the same answer
wherever it runs. An executor also says how many threads one job may use where it runs
(FFT workers, GDAL threads): the engine reads no environment, it is told. This module
holds the interface and the in-process executor; it knows nothing of Ray.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol


class Executor(Protocol):
    @property
    def threads(self) -> int:
        """Threads one job may use where it runs."""
        ...

    def map(self, fn: Callable[..., Any], jobs: list[tuple[Any, ...]]) -> list[Any]:
        """``[fn(*job) for job in jobs]``, in order, wherever they run."""
        ...

    def imap(self, fn: Callable[..., Any], jobs: Iterable[tuple[Any, ...]],
             lookahead: int) -> Iterator[Any]:
        """Like `map`, streamed: at most ``lookahead`` jobs computed ahead of the consumer."""
        ...


@dataclass(frozen=True)
class LocalExecutor:
    """Jobs in this process, each with ``threads`` threads; `imap` overlaps the next jobs
    with the consumer on one helper thread."""

    threads: int = 1

    def __post_init__(self) -> None:
        if self.threads < 1:
            raise ValueError(f"threads must be at least 1, got {self.threads}")

    def map(self, fn: Callable[..., Any], jobs: list[tuple[Any, ...]]) -> list[Any]:
        return [fn(*job) for job in jobs]

    def imap(self, fn: Callable[..., Any], jobs: Iterable[tuple[Any, ...]],
             lookahead: int) -> Iterator[Any]:
        it = iter(jobs)
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending: list[Future[Any]] = [
                pool.submit(fn, *job) for _, job in zip(range(lookahead), it, strict=False)]
            while pending:
                result = pending.pop(0).result()
                nxt = next(it, None)
                if nxt is not None:
                    pending.append(pool.submit(fn, *nxt))
                yield result


#: one thread, this process: what the engine uses when it is given no executor
SERIAL = LocalExecutor(threads=1)
