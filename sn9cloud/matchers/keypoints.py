"""The engine refined by the learned SAR keypoint detector: the detector's confident
matches near the engine's field join the fit, kept only on a cross-validated gain."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sn9cloud.engine.executor import Executor
from sn9cloud.engine.keypoints import RefineOptions, refine_with_detector
from sn9cloud.engine.registration import RegistrationResult, register
from sn9cloud.engine.types import GeoImage
from sn9cloud.matchers.base import Matcher, Resources
from sn9cloud.matchers.engine import field_description

if TYPE_CHECKING:
    from sn9cloud.config import RegistrationConfig


class KeypointsMatcher(Matcher):
    name = "keypoints"
    summary = "the engine, refined by the learned SAR keypoint detector"
    options_type = RefineOptions
    detector = "sar"

    def register(self, optical: GeoImage, sar: GeoImage, config: RegistrationConfig,
                 resources: Resources, executor: Executor) -> RegistrationResult:
        result = register(optical, sar, config.engine, executor=executor)
        options = config.matcher_options(self.name)
        assert isinstance(options, RefineOptions)
        return refine_with_detector(result, optical, sar, resources.get_detector(), options,
                                    max_working_size=config.engine.max_working_size,
                                    executor=executor)

    def field_model(self, config: RegistrationConfig) -> str:
        return config.engine.model

    def lineage(self, config: RegistrationConfig) -> str:
        o = config.matcher_options(self.name)
        assert isinstance(o, RefineOptions)
        return ("structure-feature (CFOG) coarse alignment, dense template matching coarse "
                "to fine, then the learned SAR keypoint detector on tiles centred by that "
                f"field (its matches kept only on a {o.min_gain:.0%} cross-validated gain), "
                f"{field_description(config.engine.model)}")
