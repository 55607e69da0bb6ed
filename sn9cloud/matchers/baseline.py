"""The SpaceNet 9 baseline's own workflow: optical keypoints on a uniform grid, the learned
SAR detector on tiles around them, RANSAC affine (here to compare with the paper)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sn9cloud.engine.executor import Executor
from sn9cloud.engine.keypoints import BaselineOptions, baseline_register
from sn9cloud.engine.registration import RegistrationResult
from sn9cloud.engine.types import GeoImage
from sn9cloud.matchers.base import Matcher, Resources, settings_dict

if TYPE_CHECKING:
    from sn9cloud.config import RegistrationConfig


class BaselineMatcher(Matcher):
    name = "baseline"
    summary = "the SpaceNet 9 baseline: grid keypoints, SAR detector, RANSAC affine"
    options_type = BaselineOptions
    detector = "sar"

    def register(self, optical: GeoImage, sar: GeoImage, config: RegistrationConfig,
                 resources: Resources, executor: Executor) -> RegistrationResult:
        options = config.matcher_options(self.name)
        assert isinstance(options, BaselineOptions)
        return baseline_register(optical, sar, resources.get_detector(), options,
                                 max_working_size=config.engine.max_working_size,
                                 executor=executor)

    def field_model(self, config: RegistrationConfig) -> str:
        return "affine"

    def lineage(self, config: RegistrationConfig) -> str:
        o = config.matcher_options(self.name)
        assert isinstance(o, BaselineOptions)
        return (f"the SpaceNet 9 baseline workflow: optical keypoints every {o.spacing_m:g} m, "
                "the learned SAR keypoint detector on tiles around each, MAGSAC++ affine "
                "field")

    def settings_used(self, config: RegistrationConfig) -> dict[str, Any]:
        # of the engine's settings the baseline reads only the working size
        return {"matcher": self.name,
                "engine": {"max_working_size": config.engine.max_working_size},
                self.name: settings_dict(config.matcher_options(self.name))}
