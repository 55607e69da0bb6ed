"""One pair of files registered: read, register with the run's matcher, write the offset
COG and the report.

The thin layer between the engine (arrays) and the CLI (arguments); the STAC pipeline
builds on it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any

from sn9cloud.engine.executor import SERIAL, Executor
from sn9cloud.engine.offsets import Window, offset_window
from sn9cloud.engine.registration import RegistrationResult
from sn9cloud.engine.types import Array, Grid
from sn9cloud.errors import OutputError
from sn9cloud.io.cog import check_writable, write_offsets_cog
from sn9cloud.io.raster import read_image
from sn9cloud.prepared import PreparedRun


@dataclass
class RegisteredPair:
    result: RegistrationResult
    optical_grid: Grid  # full-resolution grids of the inputs
    sar_grid: Grid
    report: dict[str, Any]  # the engine's report plus read time, inputs and provenance

    def offsets(self, window: Window) -> Array:
        return offset_window(self.result.field, self.optical_grid, self.sar_grid, window)


def register_hrefs(optical: str, sar: str, run: PreparedRun,
                   executor: Executor | None = None) -> RegisteredPair:
    """Read both rasters (decimated on read: overviews of a COG, never the whole scene)
    and register them with the run's matcher."""
    ex = executor or SERIAL
    t0 = time.perf_counter()
    read = 2 * run.config.engine.max_working_size
    o_img, opt_grid = read_image(optical, "optical", max_size=read)
    s_img, sar_grid = read_image(sar, "SAR", max_size=read)
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
    check_writable(output)
    if report_path:
        _check_report_path(report_path)
    pair = register_hrefs(optical, sar, run, ex)
    t1 = time.perf_counter()
    write_offsets_cog(output, pair.optical_grid, pair.offsets, tags=run.cog_tags(),
                      threads=ex.threads)
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
