"""Saving and loading detector weights safely.

Weights are safetensors (tensors and a JSON header, never code), verified against their
sha256 before loading; the architecture comes from the header's config and the state dict
must match it key for key and shape for shape. A tampered, truncated or foreign file is a
clear `ModelError`, never a crash deep inside torch.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from sn9cloud.models.model_items import ModelError
from sn9cloud.models.unet import KeypointUNet, UNetConfig

__all__ = ["ModelError", "load_model", "model_metadata", "read_header", "save_model", "sha256"]


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def save_model(model: KeypointUNet, path: str | Path,
               metadata: dict[str, Any] | None = None) -> str:
    """Write the weights with the config (and ``metadata``) in the header; return sha256."""
    meta = {"architecture": "sn9cloud.KeypointUNet",
            "config": json.dumps(model.config.to_dict()),
            "metadata": json.dumps(metadata or {})}
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata=meta)
    return sha256(path)


def read_header(path: str | Path) -> dict[str, Any]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelError(f"model {path}: not a safetensors file ({e})") from e


def load_model(path: str | Path, expected_sha256: str | None,
               map_location: str | torch.device = "cpu") -> KeypointUNet:
    p = Path(path)
    if not p.exists():
        raise ModelError(f"model {path}: no such file")
    if expected_sha256 is not None and sha256(p) != expected_sha256:
        raise ModelError(f"model {path}: checksum mismatch (expected sha256 "
                         f"{expected_sha256[:12]}..., the file was altered or is another "
                         "model); refusing to load it")
    header = read_header(p)
    if header.get("architecture") != "sn9cloud.KeypointUNet":
        raise ModelError(f"model {path}: not a sn9cloud keypoint detector "
                         f"(architecture {header.get('architecture')!r})")
    try:
        config = UNetConfig.from_dict(json.loads(header["config"]))
        state = load_file(str(p), device=str(map_location))
    except (KeyError, ValueError, TypeError, SafetensorError) as e:
        raise ModelError(f"model {path}: unreadable header or tensors ({e})") from e
    model = KeypointUNet(config)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or extra or wrong:
        raise ModelError(f"model {path}: weights of another architecture ({len(missing)} "
                         f"missing, {len(extra)} unexpected, {len(wrong)} mis-shaped tensors, "
                         f"e.g. {(missing + extra + wrong)[:3]})")
    model.load_state_dict(state)
    return model.to(map_location).eval()


def model_metadata(path: str | Path) -> dict[str, Any]:
    return dict(json.loads(read_header(path).get("metadata", "{}")))
