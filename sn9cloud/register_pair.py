"""One pair of files registered: read, register with the run's matcher, write the offset
COG and the report.

The thin layer between the engine (arrays) and the CLI (arguments); the STAC pipeline
builds on it.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from sn9cloud.engine.executor import SERIAL, Executor
from sn9cloud.engine.offsets import Window, offset_window
from sn9cloud.engine.registration import RegistrationResult
from sn9cloud.engine.types import Array, Grid
from sn9cloud.errors import InputError, OutputError
from sn9cloud.io.cog import check_writable, is_offset_cog, write_offsets_cog
from sn9cloud.io.policy import ReadPolicy, strip_credentials
from sn9cloud.io.raster import open_grid, read_image
from sn9cloud.io.s3 import is_s3
from sn9cloud.prepared import PreparedRun


@dataclass
class RegisteredPair:
    result: RegistrationResult
    optical_grid: Grid  # full-resolution grids of the inputs
    sar_grid: Grid
    report: dict[str, Any]  # the engine's report plus read time, inputs and provenance

    def offsets(self, window: Window) -> Array:
        return offset_window(self.result.field, self.optical_grid, self.sar_grid, window)


def check_inputs(optical: str, sar: str, run: PreparedRun, scratch: str,
                 policy: ReadPolicy | None = None) -> Grid:
    """Both inputs' declared sizes within the limits and room in ``scratch`` for the
    offset map, before any pixel is read; the optical grid."""
    grid = open_grid(optical, "optical", policy, run.limits)
    sar_grid = open_grid(sar, "SAR", policy, run.limits)
    _projected(optical, "optical", grid)
    if sar_grid.crs is None:
        raise InputError(f"SAR {strip_credentials(sar)}: no coordinate reference system")
    run.limits.check_scratch(scratch, grid.width, grid.height)
    return grid


def _projected(href: str, role: str, grid: Grid) -> None:
    """The engine works on the optical grid and measures in metres: an optical image
    without a projected CRS would make its settings and its error estimate degrees (the
    SAR may be in any CRS: it is resampled onto the optical grid)."""
    if grid.crs is None:
        raise InputError(f"{role} {strip_credentials(href)}: no coordinate reference system")
    if not grid.crs.is_projected:
        raise InputError(f"{role} {strip_credentials(href)}: in a geographic CRS "
                         f"({grid.crs.to_string()}); reproject it to a projected one (its UTM "
                         "zone) first")


def register_hrefs(optical: str, sar: str, run: PreparedRun,
                   executor: Executor | None = None,
                   policy: ReadPolicy | None = None) -> RegisteredPair:
    """Read both rasters (decimated on read: overviews of a COG, never the whole scene)
    and register them with the run's matcher; under a ``policy`` (the hrefs came from a
    catalog) redirects are followed only within it."""
    ex = executor or SERIAL
    t0 = time.perf_counter()
    read = 2 * run.config.engine.max_working_size
    o_img, opt_grid = read_image(optical, "optical", max_size=read, policy=policy,
                                 limits=run.limits)
    s_img, sar_grid = read_image(sar, "SAR", max_size=read, policy=policy, limits=run.limits)
    _projected(optical, "optical", opt_grid)
    t_read = time.perf_counter() - t0
    result = run.matcher.register(o_img, s_img, run.config, run.resources, ex)
    report = result.report.to_dict()
    report["timings_s"]["read"] = round(t_read, 4)
    report.update({"optical": optical, "sar": sar, **run.provenance(),
                   "field": result.field.to_dict()})
    return RegisteredPair(result, opt_grid, sar_grid, report)


def register_files(optical: str, sar: str, output: str, run: PreparedRun,
                   report_path: str | None = None,
                   executor: Executor | None = None) -> dict[str, Any]:
    """Register ``sar`` to ``optical`` and write the offset map to ``output``."""
    ex = executor or SERIAL
    t0 = time.perf_counter()
    inputs = (optical, sar)
    check_writable(output, inputs=inputs, ours=is_offset_cog)
    if report_path:
        if _same_path(report_path, output):
            raise OutputError(f"report {report_path}: is the same file as -o {output}")
        check_writable(report_path, "report", inputs=(*inputs, output), ours=_is_report)
    check_inputs(optical, sar, run, output if is_s3(output) else
                 os.path.dirname(os.path.abspath(output)))
    pair = register_hrefs(optical, sar, run, ex)
    t1 = time.perf_counter()
    write_offsets_cog(output, pair.optical_grid, pair.offsets, tags=run.cog_tags(),
                      threads=ex.threads, inputs=inputs)
    report = pair.report
    report["timings_s"]["write"] = round(time.perf_counter() - t1, 4)
    report["timings_s"]["total_with_io"] = round(time.perf_counter() - t0, 4)
    report["output"] = output
    if report_path:
        _write_report(report_path, report)
    return report


def _same_path(a: str, b: str) -> bool:
    if "://" in a or "://" in b:
        return a == b
    return os.path.realpath(a) == os.path.realpath(b)


def _is_report(path: str) -> bool:
    """Whether ``path`` is a registration report sn9cloud wrote."""
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read(1 << 24))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and "algorithm_version" in doc and "config_hash" in doc


def _write_report(path: str, report: dict[str, Any]) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".sn9cloud-report-", suffix=".json", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(report, f, indent=1)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
