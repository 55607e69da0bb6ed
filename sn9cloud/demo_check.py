"""Score the offset maps that `sn9cloud run` published for the sample catalog against its
exact known tie-points, with the SpaceNet 9 metric.

    python -m sn9cloud.demo_check catalogs/sample demo-output
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from sn9cloud.io.raster import open_grid
from sn9cloud.score import read_tiepoints, reference_offsets, score_offsets


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m sn9cloud.demo_check SAMPLE_CATALOG_DIR OUTPUT_DIR",
              file=sys.stderr)
        return 2
    sample, output = Path(args[0]), Path(args[1])
    truth = json.loads((sample / "truth" / "truth.json").read_text())
    items = sorted(output.glob("*/*/sn9-offsets-*.json"))
    if not items:
        print(f"no result items under {output}", file=sys.stderr)
        return 2
    print(f"\n{'result item':30s} {'SAR item':15s} {'n':>5s} {'mean px':>8s} {'mean m':>7s} "
          f"{'score':>7s} {'georef-only px':>15s}")
    means = []
    for path in items:
        item = json.loads(path.read_text())
        sar_id = item["properties"]["sn9cloud:sar_id"]
        t = truth[sar_id]
        opt = sample / "sample-optical" / t["optical_id"] / "visual.tif"
        sar = sample / "sample-sar" / sar_id / "vv.tif"
        tp_path = sample / "truth" / t["tiepoints"]
        cog = path.parent / item["assets"]["offsets"]["href"]
        s = score_offsets(str(cog), str(tp_path), str(opt), str(sar))
        ref = reference_offsets(read_tiepoints(tp_path), open_grid(str(opt), "optical"),
                                open_grid(str(sar), "SAR"))
        georef = float(np.hypot(*ref.T).mean())
        means.append(s.mean_px)
        print(f"{item['id']:30s} {sar_id:15s} {s.n:5d} {s.mean_px:8.2f} {s.mean_m:7.2f} "
              f"{s.score:7.2f} {georef:15.2f}")
    print(f"mean over {len(means)} pairs: {np.mean(means):.2f} px "
          "(SpaceNet 9 metric against the known tie-points)")
    print(f"\nbrowse the results: `sn9cloud browse {output}` (STAC Browser on "
          "http://127.0.0.1:8090/, after `deploy/stac-browser/stac-browser.sh build`), or load "
          "them into the STAC API with `sn9cloud ingest`")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
