"""`RayExecutor`: the engine's window jobs as Ray tasks, results in order, a bounded number
in flight so that the object store never fills."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import ray


@ray.remote(max_retries=3)
def _call(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


class RayExecutor:
    #: each job runs in a single-threaded worker (the cluster runs one job per core)
    threads = 1

    def __init__(self, max_in_flight: int | None = None) -> None:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.max_in_flight = max_in_flight or max(2, 2 * cpus)

    def map(self, fn: Callable[..., Any], jobs: list[tuple[Any, ...]]) -> list[Any]:
        return list(self.imap(fn, jobs, self.max_in_flight))

    def imap(self, fn: Callable[..., Any], jobs: Iterable[tuple[Any, ...]],
             lookahead: int) -> Iterator[Any]:
        fn_ref = ray.put(fn)  # shipped once, not with every job
        window = max(1, min(lookahead, self.max_in_flight))
        it = iter(jobs)
        pending = [_call.remote(fn_ref, *job) for _, job in zip(range(window), it, strict=False)]
        while pending:
            result = ray.get(pending.pop(0))
            nxt = next(it, None)
            if nxt is not None:
                pending.append(_call.remote(fn_ref, *nxt))
            yield result
