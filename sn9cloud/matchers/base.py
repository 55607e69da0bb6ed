"""What a matcher is: a name, the settings it reads, what it needs prepared once per run
(the detector), how it registers a pair, and how it says what ran (field model, lineage,
the configuration that determines its result).

A matcher is stateless; per-run resources live in `Resources`, prepared once by
`sn9cloud.matchers.prepare` and handed to every pair.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from sn9cloud.engine.executor import Executor
from sn9cloud.engine.keypoints import Detector
from sn9cloud.engine.registration import RegistrationResult
from sn9cloud.engine.types import GeoImage

if TYPE_CHECKING:
    from sn9cloud.config import RegistrationConfig


def settings_dict(options: Any) -> dict[str, Any]:
    """A settings dataclass as plain JSON-ready values (tuples as lists)."""
    d = asdict(options)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


@dataclass(frozen=True)
class DetectorRef:
    """A shipped detector by name, folder and the checksum its item records: enough for a
    result's identity; `load` reads and verifies the weights, once per process."""

    name: str
    models_dir: str
    sha256: str

    def load(self) -> Detector:
        return _load_detector(self.name, self.models_dir, self.sha256)

    def identity(self) -> dict[str, str]:
        return {"name": self.name, "sha256": self.sha256}


@functools.lru_cache(maxsize=4)
def _load_detector(name: str, models_dir: str, sha256: str) -> Detector:
    from sn9cloud.models.detector import load_detector
    from sn9cloud.models.model_items import ModelError, weights_checksum

    if weights_checksum(name, Path(models_dir))[1] != sha256:
        raise ModelError(f"model item {name}-detector.json in {models_dir} changed during "
                         "the run (another checksum); rerun")
    return load_detector(name, Path(models_dir))


@dataclass(frozen=True)
class Resources:
    """What a run prepares once for its matcher. ``detector_impl`` replaces the loaded
    detector where the run brings its own (detector actors on a Ray cluster)."""

    detector: DetectorRef | None = None
    detector_impl: Detector | None = None

    def get_detector(self) -> Detector:
        if self.detector_impl is not None:
            return self.detector_impl
        if self.detector is None:
            raise RuntimeError("this matcher was prepared without a detector")
        return self.detector.load()


class Matcher(ABC):
    """One way of registering a pair. Subclasses set the class attributes and `register`."""

    name: ClassVar[str]
    summary: ClassVar[str]  # one line for --help
    #: the dataclass of this matcher's own settings (its section of a config file), if any
    options_type: ClassVar[type | None] = None
    #: the shipped detector it needs, if any (prepared once per run)
    detector: ClassVar[str | None] = None

    @abstractmethod
    def register(self, optical: GeoImage, sar: GeoImage, config: RegistrationConfig,
                 resources: Resources, executor: Executor) -> RegistrationResult:
        """Register ``sar`` onto ``optical``; raise rather than answer unreliably."""

    @abstractmethod
    def field_model(self, config: RegistrationConfig) -> str:
        """The field model this matcher fits under ``config`` (what the result holds)."""

    @abstractmethod
    def lineage(self, config: RegistrationConfig) -> str:
        """How this matcher computes the field, for an item's ``processing:lineage``."""

    def settings_used(self, config: RegistrationConfig) -> dict[str, Any]:
        """The settings that determine this matcher's result: by default every engine
        setting and this matcher's own section."""
        out: dict[str, Any] = {"matcher": self.name, "engine": settings_dict(config.engine)}
        if self.options_type is not None:
            out[self.name] = settings_dict(config.matcher_options(self.name))
        return out

    def effective_config(self, config: RegistrationConfig,
                         resources: Resources) -> dict[str, Any]:
        """The configuration a result records and hashes: the settings used and, for a
        matcher with a detector, which weights (by checksum)."""
        out = self.settings_used(config)
        if self.detector is not None and resources.detector is not None:
            out["detector"] = resources.detector.identity()
        return out
