"""Score an offset map of the bundled sample pair against its exact known truth.

    python -m sn9cloud.demo_check catalogs/sample-pair demo-output/offsets.tif
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import rasterio

from sn9cloud.distortion import Distortion, truth_offsets


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m sn9cloud.demo_check SAMPLE_DIR OFFSETS.tif", file=sys.stderr)
        return 2
    sample, offsets = Path(args[0]), args[1]
    d = Distortion.from_dict(json.loads((sample / "truth.json").read_text())
                             ["distortion_optical_px"])
    with rasterio.open(offsets) as ds:
        off = ds.read().astype(np.float64)
    truth, inside = truth_offsets(d, off.shape[2], off.shape[1])
    err = np.hypot(*(off - truth)[:, inside])
    print(f"offset map: {offsets} ({off.shape[2]}x{off.shape[1]} px, 2 bands dx, dy)")
    print(f"accuracy against the known truth over the overlap ({inside.mean():.0%} of pixels): "
          f"mean {err.mean():.2f} px, 90th percentile {np.percentile(err, 90):.2f} px, "
          f"max {err.max():.2f} px")
    print(f"georeferencing alone would be off by {np.hypot(*truth[:, inside]).mean():.2f} px")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
