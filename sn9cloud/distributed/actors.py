"""Detector actors: each loads the model once (checksum verified), on a GPU where the
cluster has GPUs and on a CPU otherwise, and serves batches of tiles. `ActorPoolDetector`
is a detector for `sn9cloud.engine.keypoints` that spreads its batches over the pool."""

from __future__ import annotations

import numpy as np
import ray
from ray.util import ActorPool

from sn9cloud.distributed.cluster import actor_resources


class _DetectorActor:
    def __init__(self, name: str) -> None:
        from sn9cloud.models.detector import load_detector

        self.detector = load_detector(name)

    def device(self) -> str:
        return str(self.detector.device)

    def tile(self) -> int:
        return self.detector.tile

    def locate(self, source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.detector.locate(source, target)


class ActorPoolDetector:
    def __init__(self, name: str = "sar", actors: int = 2, batch: int = 32) -> None:
        opts = actor_resources(want_gpu=True)
        cls = ray.remote(max_restarts=2, max_task_retries=2, **opts)(_DetectorActor)
        self.actors = [cls.remote(name) for _ in range(actors)]
        self.pool = ActorPool(self.actors)
        self.devices = ray.get([a.device.remote() for a in self.actors])
        self.tile = ray.get(self.actors[0].tile.remote())
        self.batch = batch

    def locate(self, source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        jobs = [(source[i:i + self.batch], target[i:i + self.batch])
                for i in range(0, len(source), self.batch)]
        out = list(self.pool.map(lambda a, j: a.locate.remote(*j), jobs))
        if not out:
            return np.zeros((0, 2)), np.zeros(0)
        return np.concatenate([o[0] for o in out]), np.concatenate([o[1] for o in out])

    def close(self) -> None:
        for a in self.actors:
            ray.kill(a)

