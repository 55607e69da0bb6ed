"""Build the bundled sample pair from a real co-registered 3MOS tile pair (Apache-2.0).

    python catalogs/sample-pair/make.py [--data ../shared/data]

The optical tile keeps its pixels; the SAR tile gets a known geocoding error (shift and
scale in its geotransform, a smooth non-rigid warp in its pixels). Both get an
illustrative UTM georeference (10 m pixels; not the tiles' true location, which the
dataset does not publish). truth.json records the distortion, from which
`sn9cloud.demo_check` computes the exact expected offsets.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
from affine import Affine
from rasterio.crs import CRS

from sn9cloud.distortion import distort_sar, random_distortion
from sn9cloud.io.cog import write_image_cog

HERE = Path(__file__).resolve().parent
TILE = "SEN_city_05"
CRS_ = CRS.from_epsg(32637)
TRANSFORM = Affine(10.0, 0.0, 354000.0, 0.0, -10.0, 4110000.0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=HERE.parents[2] / "shared" / "data")
    args = ap.parse_args()
    tiles = args.data / "3mos_tiles"
    opt = cv2.imread(str(tiles / f"{TILE}_optical.png"), cv2.IMREAD_COLOR)[:, :, ::-1]
    sar = cv2.imread(str(tiles / f"{TILE}_sar.png"), cv2.IMREAD_GRAYSCALE)
    h, w = sar.shape
    d = random_distortion(np.random.default_rng(2026), w, h, nonrigid=0.05)
    sar_d, valid = distort_sar(sar.astype(np.float32), d)
    sar_u8 = np.clip(np.round(sar_d), 1, 255).astype(np.uint8)
    sar_u8[~valid] = 0
    write_image_cog(HERE / "optical.tif", np.ascontiguousarray(opt.transpose(2, 0, 1)),
                    TRANSFORM, CRS_)
    write_image_cog(HERE / "sar.tif", sar_u8[None], TRANSFORM * d.sar_pixel_affine(), CRS_, 0)
    (HERE / "truth.json").write_text(json.dumps({
        "source": f"3MOS README figure tiles ({TILE}), Apache-2.0, "
                  "repository 3M-OS/3MOS; see ATTRIBUTION.md",
        "distortion_optical_px": d.to_dict(),
    }, indent=1) + "\n")


if __name__ == "__main__":
    main()
