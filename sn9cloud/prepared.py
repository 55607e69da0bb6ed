"""A run's configuration prepared once, before any pair: the matcher, what it needs (the
detector located and its checksum read), the effective configuration every result of
the run records, and its hash, which is part of every result's identity."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

from sn9cloud import ALGORITHM_VERSION, __version__
from sn9cloud.config import RegistrationConfig, config_hash
from sn9cloud.engine.keypoints import Detector
from sn9cloud.io.limits import Limits
from sn9cloud.matchers import Matcher, Resources, prepare
from sn9cloud.settings import Settings

RESULT_PREFIX = "sn9-offsets-"


def result_id(optical_id: str, sar_id: str, config_hash: str,
              algorithm: str = ALGORITHM_VERSION) -> str:
    """Deterministic: the same inputs, algorithm version and effective configuration always
    give the same id (every trigger is idempotent); another configuration, another id."""
    h = hashlib.sha256(f"{optical_id}\n{sar_id}\n{algorithm}\n{config_hash}".encode())
    return f"{RESULT_PREFIX}{h.hexdigest()[:16]}"


@dataclass(frozen=True)
class PreparedRun:
    config: RegistrationConfig
    resources: Resources
    effective: dict[str, Any]
    config_hash: str
    #: the limits on inputs (settings: they bound the work, never change a result)
    limits: Limits = field(default_factory=Limits)

    @classmethod
    def of(cls, config: RegistrationConfig, settings: Settings) -> PreparedRun:
        resources = prepare(config.matcher_impl, str(settings.models_dir))
        effective = config.effective(resources)
        return cls(config, resources, effective, config_hash(effective), settings.limits)

    @property
    def matcher(self) -> Matcher:
        return self.config.matcher_impl

    @property
    def field_model(self) -> str:
        return self.matcher.field_model(self.config)

    def result_id(self, optical_id: str, sar_id: str) -> str:
        return result_id(optical_id, sar_id, self.config_hash)

    def label(self) -> str:
        """Short words telling this run's results from another configuration's."""
        return f"{self.config.matcher} matcher, {self.field_model}, config {self.config_hash[:8]}"

    def on_worker(self, settings: Settings) -> PreparedRun:
        """This run where ``settings`` apply (a Ray worker): the detector found in that
        process's models folder, and refused there unless its checksum is this run's."""
        ref = self.resources.detector
        if ref is None:
            return self
        moved = replace(ref, models_dir=str(settings.models_dir))
        return replace(self, resources=replace(self.resources, detector=moved))

    def with_detector(self, detector: Detector) -> PreparedRun:
        """The same run with its detector served by ``detector`` (Ray detector actors)."""
        return replace(self, resources=replace(self.resources, detector_impl=detector))

    def provenance(self) -> dict[str, Any]:
        """What a report and a result item say about how it was computed."""
        return {"algorithm_version": ALGORITHM_VERSION, "matcher": self.config.matcher,
                "model": self.field_model, "config": self.effective,
                "config_hash": self.config_hash}

    def cog_tags(self) -> dict[str, str]:
        return {"sn9cloud_version": __version__, "algorithm": ALGORITHM_VERSION,
                "matcher": self.config.matcher, "model": self.field_model,
                "config_hash": self.config_hash,
                "convention": "SpaceNet 9: band 1 dx, band 2 dy, optical px"}
