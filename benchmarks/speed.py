"""Speed of `sn9cloud register` end to end (read, register, write the COG) on this machine.

    python benchmarks/speed.py

256x256: the bundled sample pair. 1024x1024: the same real pair upsampled 4x (same
content, 16x the pixels), with the same known distortion scaled along.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import rasterio
from rasterio.enums import Resampling

from sn9cloud.config import RegistrationConfig
from sn9cloud.prepared import PreparedRun
from sn9cloud.register_pair import register_files
from sn9cloud.settings import Settings

SAMPLE = Path(__file__).resolve().parents[1] / "catalogs" / "sample-pair"


def _upsample(src: Path, dst: Path, k: int) -> None:
    with rasterio.open(src) as s:
        arr = s.read(out_shape=(s.count, s.height * k, s.width * k),
                     resampling=Resampling.bilinear)
        prof = s.profile | {"width": s.width * k, "height": s.height * k,
                            "transform": s.transform * s.transform.scale(1 / k),
                            "driver": "GTiff", "tiled": True, "blockxsize": 256,
                            "blockysize": 256}
    with rasterio.open(dst, "w", **prof) as d:
        d.write(arr)


def _time(optical: Path, sar: Path, out: Path, repeat: int = 3) -> tuple[float, dict]:
    settings = Settings.from_env().apply()  # as `sn9cloud register` does
    run = PreparedRun.of(RegistrationConfig(), settings)
    runs, rep = [], {}
    for _ in range(repeat):
        t0 = time.perf_counter()
        rep = register_files(str(optical), str(sar), str(out), run,
                             executor=settings.executor())
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs), rep


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        print(f"{'pair':12s} {'seconds':>8s}  stages (last run)")
        sec, rep = _time(SAMPLE / "optical.tif", SAMPLE / "sar.tif", t / "o256.tif")
        print(f"{'256x256':12s} {sec:8.2f}  {rep['timings_s']}")
        _upsample(SAMPLE / "optical.tif", t / "opt1024.tif", 4)
        _upsample(SAMPLE / "sar.tif", t / "sar1024.tif", 4)
        sec, rep = _time(t / "opt1024.tif", t / "sar1024.tif", t / "o1024.tif")
        print(f"{'1024x1024':12s} {sec:8.2f}  {rep['timings_s']}")


if __name__ == "__main__":
    main()
