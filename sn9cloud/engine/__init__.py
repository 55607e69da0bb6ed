"""The registration engine: arrays and geotransforms in, arrays out (no I/O, no Ray, no STAC)."""

from sn9cloud.engine.registration import RegistrationOptions, RegistrationResult, register
from sn9cloud.engine.types import GeoImage, Grid

__all__ = ["GeoImage", "Grid", "RegistrationOptions", "RegistrationResult", "register"]
