"""Finding a detector through its STAC model item, without torch: which weights file, and
the sha256 it must have. A result's identity needs the checksum before any pair runs;
loading the weights (`sn9cloud.models.detector`) verifies it."""

from __future__ import annotations

import json
from pathlib import Path

from sn9cloud.errors import InputError
from sn9cloud.models import SHIPPED


class ModelError(InputError):
    """A model file that cannot be used: missing, tampered, or another architecture."""


def item_path(name: str, directory: Path | None = None) -> Path:
    return (directory or SHIPPED) / f"{name}-detector.json"


def weights_checksum(name: str, directory: Path | None = None) -> tuple[Path, str]:
    """The weights file of detector ``name`` and the sha256 its item records."""
    ip = item_path(name, directory)
    if not ip.exists():
        raise ModelError(f"model item {ip}: no such file (train one with training/train.py, "
                         "or set SN9CLOUD_MODELS to a folder holding one)")
    try:
        item = json.loads(ip.read_text())
        asset = item["assets"]["weights"]
        checksum = str(asset["file:checksum"])
        href = str(asset["href"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ModelError(f"model item {ip}: not a model item with a weights asset") from e
    if not checksum.startswith("1220") or len(checksum) != 68:
        raise ModelError(f"model item {ip}: file:checksum is not a sha2-256 multihash")
    weights = (ip.parent / href).resolve()
    if ip.parent.resolve() not in weights.parents:
        raise ModelError(f"model item {ip}: weights href {href!r} leaves the model folder")
    return weights, checksum[4:]
