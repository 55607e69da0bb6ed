"""Many pairs at once on a Ray cluster: one task per pair, a bounded number in flight,
progress as they finish, retries when a worker or node is lost.

Each pair is published exactly once however often its task runs: the result id is
deterministic and the item is created only if absent, so a retried task (or a rerun of an
interrupted batch) finds its pair published and skips it.
"""

from __future__ import annotations

import time
from typing import Any

import pystac
import ray

from sn9cloud.errors import outcome
from sn9cloud.pipeline import PairOutcome, Progress, RunOptions, process_pair
from sn9cloud.prepared import PreparedRun
from sn9cloud.settings import Settings
from sn9cloud.stac.pairing import ItemPair
from sn9cloud.stac.publish import Publisher

#: a worker process or node lost mid-task costs a retry, not the batch
MAX_RETRIES = 3


def _item(d: dict[str, Any], href: str | None) -> pystac.Item:
    it = pystac.Item.from_dict(d, preserve_dict=False)
    if href:
        it.set_self_href(href)
    return it


@ray.remote(max_retries=MAX_RETRIES)
def _pair_task(optical: dict[str, Any], optical_href: str | None, sar: dict[str, Any],
               sar_href: str | None, overlap: float, options: RunOptions, run: PreparedRun,
               spread_windows: bool) -> PairOutcome:
    pair = ItemPair(_item(optical, optical_href), _item(sar, sar_href), overlap)
    pool = None
    try:
        # this worker's own settings (single-threaded, its models folder), read once here
        settings = Settings.from_env().apply()
        run = run.on_worker(settings)
        executor: Any = settings.executor()
        if spread_windows:
            from sn9cloud.distributed.executor import RayExecutor

            executor = RayExecutor()
            if run.resources.detector is not None:  # detector actors: loaded once each
                from sn9cloud.distributed.actors import ActorPoolDetector

                pool = ActorPoolDetector(run.resources.detector)
                run = run.with_detector(pool)
        publisher = Publisher(options.output, options.results_collection)
    except Exception as e:
        o = outcome(e)
        return PairOutcome(pair.name, "failed", error=o.message, error_kind=o.kind)
    try:
        result = process_pair(pair, publisher, options, run, executor)
    finally:
        if pool is not None:
            pool.close()
    result.node = ray.get_runtime_context().get_node_id()
    return result


def pair_task(cpus_per_pair: float = 1.0) -> Any:
    """The pair task, with the S3 and GDAL settings of this moment (not of when the
    cluster was joined); the job's own environment when they are the same (a new one
    costs fresh worker processes)."""
    from sn9cloud.distributed.cluster import runtime_env

    env = runtime_env()
    job_env = dict(ray.get_runtime_context().runtime_env or {})
    opts: dict[str, Any] = {"num_cpus": cpus_per_pair}
    if job_env.get("env_vars") != env["env_vars"]:
        opts["runtime_env"] = env
    return _pair_task.options(**opts)


def run_batch(
    pairs: list[ItemPair],
    options: RunOptions,
    run: PreparedRun,
    progress: Progress | None = None,
    max_in_flight: int | None = None,
    spread_windows: bool = False,
    cpus_per_pair: float = 1.0,
) -> list[PairOutcome]:
    """Run every pair on the connected cluster (see `cluster.connect`); outcomes in the
    order of ``pairs``."""
    from sn9cloud.distributed.cluster import require

    require({"CPU": cpus_per_pair})
    cpus = int(ray.cluster_resources().get("CPU", 1))
    limit = max_in_flight or max(1, 2 * cpus)  # enough to keep every core busy, no more
    task = pair_task(cpus_per_pair)
    outcomes: list[PairOutcome | None] = [None] * len(pairs)
    in_flight: dict[Any, int] = {}
    started: dict[Any, float] = {}
    todo = list(enumerate(pairs))
    done = 0
    while todo or in_flight:
        while todo and len(in_flight) < limit:
            i, p = todo.pop(0)
            ref = task.remote(p.optical.to_dict(include_self_link=False), p.optical.get_self_href(),
                              p.sar.to_dict(include_self_link=False), p.sar.get_self_href(),
                              p.overlap, options, run, spread_windows)
            in_flight[ref] = i
            started[ref] = time.perf_counter()
        ready, _ = ray.wait(list(in_flight), num_returns=1)
        for ref in ready:
            i = in_flight.pop(ref)
            try:
                result: PairOutcome = ray.get(ref)
            except Exception as e:  # retries exhausted: the pair fails, the batch goes on
                lines = [ln for ln in str(e).splitlines() if ln.strip()]
                msg = lines[-1].strip() if lines else type(e).__name__
                result = PairOutcome(pairs[i].name, "failed", error=f"lost after "
                                     f"{MAX_RETRIES} retries: {msg}", error_kind="transient",
                                     seconds=round(time.perf_counter() - started[ref], 3))
            outcomes[i] = result
            done += 1
            if progress:
                progress(done, len(pairs), result)
    return [o for o in outcomes if o is not None]
