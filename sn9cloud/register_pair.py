"""One pair of files registered: read, register, write the offset COG and the report.

The thin layer between the engine (arrays) and the CLI (arguments); the STAC pipeline
builds on it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

import numpy as np

from sn9cloud import ALGORITHM_VERSION, __version__
from sn9cloud.engine import RegistrationOptions, RegistrationResult, register
from sn9cloud.engine.executor import Executor
from sn9cloud.engine.offsets import offset_window
from sn9cloud.engine.types import GeoImage, Grid
from sn9cloud.errors import InputError, OutputError
from sn9cloud.io.cog import check_writable, write_offsets_cog
from sn9cloud.io.raster import read_image


def register_images(
    optical: GeoImage, sar: GeoImage, model: str = "nonrigid", max_working_size: int = 1024,
    executor: Executor | None = None,
) -> RegistrationResult:
    return register(optical, sar, RegistrationOptions(model=model,
                                                      max_working_size=max_working_size),
                    executor=executor)


@dataclass
class RegisteredPair:
    result: RegistrationResult
    optical_grid: Grid  # full-resolution grids of the inputs
    sar_grid: Grid
    report: dict  # the engine's report plus read time and inputs

    def offsets(self, window: tuple[int, int, int, int]) -> np.ndarray:
        return offset_window(self.result.field, self.optical_grid, self.sar_grid, window)


MATCHERS = ("engine", "keypoints", "baseline")


def register_hrefs(
    optical: str, sar: str, model: str = "nonrigid", max_working_size: int = 1024,
    executor: Executor | None = None, matcher: str = "engine", detector: object = None,
) -> RegisteredPair:
    """Read both rasters (decimated on read: overviews of a COG, never the whole scene)
    and register them.

    ``matcher``: "engine" (structure features, dense matching), "keypoints" (the engine,
    then the learned detectors as a refining matcher), "baseline" (the SpaceNet 9
    baseline's own workflow: grid keypoints, SAR detector, RANSAC affine)."""
    if matcher not in MATCHERS:
        raise InputError(f"unknown matcher {matcher!r}: choose one of {', '.join(MATCHERS)}")
    t0 = time.perf_counter()
    read = 2 * max_working_size
    o_img, opt_grid = read_image(optical, "optical", max_size=read)
    s_img, sar_grid = read_image(sar, "SAR", max_size=read)
    t_read = time.perf_counter() - t0
    if matcher == "engine":
        result = register_images(o_img, s_img, model, max_working_size, executor)
    else:
        from sn9cloud.engine.keypoints import baseline_register, refine_with_detector
        from sn9cloud.models.detector import load_detector

        detector = detector or load_detector("sar")  # an actor pool on a Ray cluster
        if matcher == "baseline":
            result = baseline_register(o_img, s_img, detector,
                                       max_working_size=max_working_size, executor=executor)
        else:
            result = register_images(o_img, s_img, model, max_working_size, executor)
            result = refine_with_detector(result, o_img, s_img, detector,
                                          max_working_size=max_working_size,
                                          executor=executor)
    report = result.report.to_dict()
    report["timings_s"]["read"] = round(t_read, 4)
    report.update({"optical": optical, "sar": sar, "algorithm_version": ALGORITHM_VERSION,
                   "matcher": matcher,
                   "field": result.field.to_dict()})
    return RegisteredPair(result, opt_grid, sar_grid, report)


def cog_tags(model: str) -> dict[str, str]:
    return {"sn9cloud_version": __version__, "algorithm": ALGORITHM_VERSION, "model": model,
            "convention": "SpaceNet 9: band 1 dx, band 2 dy, optical px"}


def register_files(
    optical: str,
    sar: str,
    output: str,
    model: str = "nonrigid",
    report_path: str | None = None,
    max_working_size: int = 1024,
    matcher: str = "engine",
) -> dict:
    """Register ``sar`` to ``optical`` and write the offset map to ``output``."""
    t0 = time.perf_counter()
    check_writable(output)
    if report_path:
        _check_report_path(report_path)
    pair = register_hrefs(optical, sar, model, max_working_size, matcher=matcher)
    t1 = time.perf_counter()
    write_offsets_cog(output, pair.optical_grid, pair.offsets, tags=cog_tags(model))
    report = pair.report
    report["timings_s"]["write"] = round(time.perf_counter() - t1, 4)
    report["timings_s"]["total_with_io"] = round(time.perf_counter() - t0, 4)
    report["output"] = output
    if report_path:
        tmp = f"{report_path}.tmp-{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump(report, f, indent=1)
        os.replace(tmp, report_path)
    return report


def _check_report_path(path: str) -> None:
    d = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(d) or not os.access(d, os.W_OK):
        raise OutputError(f"report {path}: directory {d} is not writable")
