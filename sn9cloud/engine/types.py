"""Small typed values passed between the engine's stages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from affine import Affine
from rasterio.crs import CRS

#: the engine's arrays: shapes and dtypes are in each function's docstring
Array = npt.NDArray[Any]


def setting(default: Any, *, lo: float | None = None, hi: float | None = None,
            doc: str = "", identity: bool = True) -> Any:
    """A configuration field with its default, its valid range and what it means, declared
    once beside the stage that reads it; the configuration loader validates against it.

    ``identity=False`` marks a setting that changes how the work is split, never its
    result: it is recorded but left out of the result's identity hash."""
    return field(default=default, metadata={"lo": lo, "hi": hi, "doc": doc,
                                            "identity": identity})


@dataclass(frozen=True)
class Grid:
    """A raster grid: size, geotransform (pixel-corner convention) and CRS (None: a bare
    pixel grid shared with the other image)."""

    width: int
    height: int
    transform: Affine
    crs: CRS | None = None

    @property
    def pixel_size(self) -> tuple[float, float]:
        """Pixel width and height in map units (both positive)."""
        t = self.transform
        return float(np.hypot(t.a, t.d)), float(np.hypot(t.b, t.e))

    def scaled(self, factor: float) -> Grid:
        """The same footprint with pixels ``factor`` times larger."""
        return Grid(
            width=max(1, int(np.ceil(self.width / factor))),
            height=max(1, int(np.ceil(self.height / factor))),
            transform=self.transform * Affine.scale(factor),
            crs=self.crs,
        )


@dataclass(frozen=True)
class GeoImage:
    """Pixels and where they are. ``array`` is (bands, H, W) or (H, W); ``valid`` is an
    optional (H, W) mask of pixels that hold data."""

    array: Array
    transform: Affine = field(default_factory=Affine.identity)
    crs: CRS | None = None
    valid: Array | None = None
    nodata: float | None = None

    @property
    def height(self) -> int:
        return int(self.array.shape[-2])

    @property
    def width(self) -> int:
        return int(self.array.shape[-1])

    @property
    def bands(self) -> Array:
        """Always (bands, H, W)."""
        return self.array if self.array.ndim == 3 else self.array[None]

    @property
    def grid(self) -> Grid:
        return Grid(self.width, self.height, self.transform, self.crs)

    def valid_mask(self) -> Array:
        """Pixels with data: the explicit mask, else finite and not nodata in every band."""
        if self.valid is not None:
            return self.valid.astype(bool)
        b = self.bands
        ok = np.all(np.isfinite(b), axis=0) if b.dtype.kind == "f" else np.ones(b.shape[1:], bool)
        if self.nodata is not None and np.isfinite(self.nodata):
            ok &= ~np.all(b == self.nodata, axis=0)
        return ok
