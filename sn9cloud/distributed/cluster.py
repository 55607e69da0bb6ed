"""Connecting to a Ray cluster (or starting a local one), and what every worker needs.

Workers inherit nothing from the driver's shell: GDAL and S3 settings travel in the
runtime environment. GPUs are detected, never assumed: an actor that asks for a GPU on a
cluster without one waits forever, so GPU requests are made only where GPUs exist.
"""

from __future__ import annotations

import os
import socket
from typing import Any
from urllib.parse import urlparse

from sn9cloud.errors import Sn9Error

#: environment variables a worker needs to read and write where the driver does (not the
#: driver's other settings: a STAC API token or a browser folder mean nothing on a worker)
FORWARDED_PREFIXES = ("AWS_", "GDAL_", "CPL_", "VSI_", "PROJ_")
FORWARDED_SETTINGS = ("SN9CLOUD_MODELS",)
#: one thread per worker: the cluster runs one job per core
SINGLE_THREADED = {"SN9CLOUD_THREADS": "1", "OMP_NUM_THREADS": "1",
                   "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


class ClusterError(Sn9Error):
    """The Ray cluster is unreachable or lacks what a job asks for."""


def runtime_env() -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items()
           if k.startswith(FORWARDED_PREFIXES) or k in FORWARDED_SETTINGS}
    env.update(SINGLE_THREADED)
    return {"env_vars": env}


def _check_reachable(address: str, timeout: float = 3.0) -> None:
    """Fail in seconds, not after Ray's own long retry loop."""
    if address in ("auto", "local"):
        return
    u = urlparse(address if "://" in address else f"tcp://{address}")
    host, port = u.hostname, u.port or (10001 if u.scheme == "ray" else 6379)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as e:
        raise ClusterError(f"Ray cluster {address}: not reachable ({e.strerror or e})") from e


def connect(address: str | None = None, num_cpus: int | None = None) -> dict[str, float]:
    """Join the cluster at ``address`` (``auto``: the one this process runs in, as under
    ``ray job submit``; the caller passes the RAY_ADDRESS setting where no flag names one),
    or start a local one with this machine's cores. Idempotent.

    Returns the cluster's resources.
    """
    import ray

    if not ray.is_initialized():
        if address:
            _check_reachable(address)
        try:
            if address:
                ray.init(address=address, runtime_env=runtime_env(), log_to_driver=False)
            else:
                # "local": a new cluster of this process, never one left running here
                ray.init(address="local", num_cpus=num_cpus or os.cpu_count(),
                         include_dashboard=False, runtime_env=runtime_env(),
                         log_to_driver=False)
        except Exception as e:
            raise ClusterError(f"Ray cluster {address or '(local)'}: cannot connect "
                               f"({str(e).splitlines()[0] if str(e) else type(e).__name__})"
                               ) from e
    return dict(ray.cluster_resources())


def gpu_count() -> float:
    import ray

    return float(ray.cluster_resources().get("GPU", 0.0))


def actor_resources(want_gpu: bool = True) -> dict[str, float]:
    """Ray options for a model actor: one GPU where the cluster has GPUs, one CPU otherwise."""
    if want_gpu and gpu_count() >= 1:
        return {"num_gpus": 1, "num_cpus": 1}
    return {"num_cpus": 1}


def require(resources: dict[str, float]) -> None:
    """Raise now if no node could ever run a task asking for ``resources`` (Ray would
    leave it pending forever)."""
    import ray

    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        have = node.get("Resources", {})
        if all(have.get(k, 0.0) >= v for k, v in resources.items() if v):
            return
    asked = ", ".join(f"{k}={v:g}" for k, v in resources.items() if v)
    total = ", ".join(f"{k}={v:g}" for k, v in sorted(ray.cluster_resources().items())
                      if k in ("CPU", "GPU", "memory"))
    raise ClusterError(f"no node of the Ray cluster has {asked} (the cluster has {total})")
