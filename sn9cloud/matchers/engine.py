"""The engine's own matcher: structure features, coarse alignment, dense template matching
coarse to fine, robust fit (the default, and the most accurate)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sn9cloud.engine.executor import Executor
from sn9cloud.engine.registration import RegistrationResult, register
from sn9cloud.engine.types import GeoImage
from sn9cloud.matchers.base import Matcher, Resources

if TYPE_CHECKING:
    from sn9cloud.config import RegistrationConfig


def field_description(model: str) -> str:
    return ("MAGSAC++ affine and thin-plate-spline non-rigid field" if model == "nonrigid"
            else "MAGSAC++ and Tukey-IRLS affine field")


class EngineMatcher(Matcher):
    name = "engine"
    summary = "structure features, dense template matching, robust non-rigid fit"

    def register(self, optical: GeoImage, sar: GeoImage, config: RegistrationConfig,
                 resources: Resources, executor: Executor) -> RegistrationResult:
        return register(optical, sar, config.engine, executor=executor)

    def field_model(self, config: RegistrationConfig) -> str:
        return config.engine.model

    def lineage(self, config: RegistrationConfig) -> str:
        return ("structure-feature (CFOG) coarse alignment, dense template matching coarse "
                f"to fine with forward/backward checks, {field_description(config.engine.model)}")
