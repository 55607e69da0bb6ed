"""Detector actors: each loads the model once (checksum verified), on a GPU where the
cluster has GPUs and on a CPU otherwise, and serves batches of tiles. `ActorPoolDetector`
is a detector for `sn9cloud.engine.keypoints` that spreads its batches over the pool."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import ray
from ray.util import ActorPool

from sn9cloud.distributed.cluster import actor_resources
from sn9cloud.engine.types import Array
from sn9cloud.matchers import DetectorRef


class _DetectorActor:
    def __init__(self, ref: DetectorRef) -> None:
        from sn9cloud.models.detector import TorchDetector
        from sn9cloud.settings import Settings

        # the actor's own models folder; the weights must have the run's checksum
        settings = Settings.from_env().apply()
        d = replace(ref, models_dir=str(settings.models_dir)).load()
        assert isinstance(d, TorchDetector)
        self.detector = d

    def device(self) -> str:
        return str(self.detector.device)

    def tile(self) -> int:
        return self.detector.tile

    def locate(self, source: Array, target: Array) -> tuple[Array, Array]:
        return self.detector.locate(source, target)


class ActorPoolDetector:
    """A detector for the engine whose batches go to actors that each hold the model."""

    def __init__(self, ref: DetectorRef, actors: int = 2, batch: int = 32) -> None:
        opts = actor_resources(want_gpu=True)
        remote: Any = ray.remote  # its overloads cannot see resource options passed as **kw
        cls: Any = remote(max_restarts=2, max_task_retries=2, **opts)(_DetectorActor)
        self.actors: list[Any] = [cls.remote(ref) for _ in range(actors)]
        self.pool = ActorPool(self.actors)
        self.devices = ray.get([a.device.remote() for a in self.actors])
        self._tile = int(ray.get(self.actors[0].tile.remote()))
        self.batch = batch

    @property
    def tile(self) -> int:
        return self._tile

    def locate(self, source: Array, target: Array) -> tuple[Array, Array]:
        jobs = [(source[i:i + self.batch], target[i:i + self.batch])
                for i in range(0, len(source), self.batch)]
        out = list(self.pool.map(lambda a, j: a.locate.remote(*j), jobs))
        if not out:
            return np.zeros((0, 2)), np.zeros(0)
        return np.concatenate([o[0] for o in out]), np.concatenate([o[1] for o in out])

    def close(self) -> None:
        for a in self.actors:
            ray.kill(a)

