"""The shipped detectors: found through their STAC item (Machine Learning Model extension),
verified by checksum, run by torch on CUDA when present and on the CPU otherwise.

The item ``<name>-detector.json`` (in the package's ``models/shipped/``, or the folder of
the ``SN9CLOUD_MODELS`` setting) records the weights' checksum, training data,
hyperparameters and validation figures; `load_detector` reads the checksum from it and
refuses weights that do not match.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from sn9cloud.models.model_items import weights_checksum
from sn9cloud.models.unet import KeypointUNet, device, heatmap_peak
from sn9cloud.models.weights import load_model, model_metadata, sha256

MLM = "https://stac-extensions.github.io/mlm/v1.4.0/schema.json"
FILE = "https://stac-extensions.github.io/file/v2.1.0/schema.json"




class TorchDetector:
    """A detector for `sn9cloud.engine.keypoints`: batches of tiles in, peaks out."""

    def __init__(self, model: KeypointUNet, dev: torch.device | None = None,
                 batch: int = 32) -> None:
        self.device = dev or device()
        self.model = model.to(self.device).eval()
        self.tile = model.config.tile
        self.batch = batch

    def locate(self, source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xy, conf = [], []
        with torch.inference_mode():
            for i in range(0, len(source), self.batch):
                a = torch.from_numpy(np.ascontiguousarray(source[i:i + self.batch]))[:, None]
                b = torch.from_numpy(np.ascontiguousarray(target[i:i + self.batch]))[:, None]
                h = self.model(a.to(self.device), b.to(self.device))
                cx, cy, v = heatmap_peak(h)
                xy.append(torch.stack([cx, cy], 1).float().cpu().numpy())
                conf.append(v.float().cpu().numpy())
        if not xy:
            return np.zeros((0, 2)), np.zeros(0)
        return np.concatenate(xy).astype(np.float64), np.concatenate(conf).astype(np.float64)


def load_detector(name: str = "sar", directory: Path | None = None,
                  dev: torch.device | None = None) -> TorchDetector:
    """The shipped detector ``name`` (sar or optical), checksum verified from its item."""
    weights, sha = weights_checksum(name, directory)
    return TorchDetector(load_model(weights, sha, map_location=dev or device()), dev)


def model_item(weights: Path, name: str, training: dict[str, Any]) -> dict[str, Any]:
    """The STAC item (MLM extension) describing trained weights."""
    meta = model_metadata(weights)
    model = load_model(weights, None)
    tile = model.config.tile
    templates = model.config.templates
    params = sum(p.numel() for p in model.parameters())
    src = "optical" if name == "sar" else "SAR"
    tgt = "SAR" if name == "sar" else "optical"
    return {
        "type": "Feature", "stac_version": "1.1.0", "stac_extensions": [MLM, FILE],
        "id": f"sn9cloud-{name}-detector", "geometry": None,
        "properties": {
            "datetime": training["datetime"],
            "title": f"SpaceNet 9 baseline {tgt} keypoint detector (sn9cloud)",
            "description": f"U-Net with one encoder per modality: a {src} tile centred on a "
                           f"keypoint and a {tgt} tile of the same window in, a heatmap of "
                           f"that keypoint's position in the {tgt} tile out." + (
                               " The target encoder and every decoder scale also read fixed "
                               "(untrained) CFOG similarity maps of the source's centre "
                               f"over the target, templates {list(templates)} px."
                               if templates else ""),
            "mlm:name": f"sn9cloud-{name}-detector",
            "mlm:architecture": "U-Net (dual encoder, concatenated skips)" + (
                " + CFOG similarity maps" if templates else ""),
            "mlm:tasks": ["detection"],
            "mlm:framework": "pytorch",
            "mlm:framework_version": torch.__version__.split("+")[0],
            "mlm:total_parameters": params,
            "mlm:pretrained": False,
            "mlm:accelerator": "cuda",
            "mlm:accelerator_constrained": False,
            "mlm:batch_size_suggestion": 32,
            "mlm:input": [
                {"name": f"{src} tile", "bands": [], "description": f"{src} intensity in "
                 "[0, 1], centred on the keypoint",
                 "input": {"shape": [-1, 1, tile, tile], "dim_order": ["batch", "channel",
                                                                       "height", "width"],
                           "data_type": "float32"}},
                {"name": f"{tgt} tile", "bands": [], "description": f"{tgt} intensity in "
                 "[0, 1], the same window on the common grid",
                 "input": {"shape": [-1, 1, tile, tile], "dim_order": ["batch", "channel",
                                                                       "height", "width"],
                           "data_type": "float32"}},
            ],
            "mlm:output": [{"name": "heatmap", "tasks": ["detection"],
                            "description": f"keypoint heatmap over the {tgt} tile (sigmoid)",
                            "result": {"shape": [-1, 1, tile, tile],
                                       "dim_order": ["batch", "channel", "height", "width"],
                                       "data_type": "float32"}}],
            "mlm:hyperparameters": {**{k: meta[k] for k in ("lr", "lr_drop_epoch", "batch",
                                                            "epochs", "sigma") if k in meta},
                                    "widths": list(model.config.widths),
                                    "similarity_templates_px": list(templates)},
            "sn9cloud:training": training,
            "sn9cloud:validation": {k: meta[k] for k in ("epoch", "val_loss", "val_median_px",
                                                         "val_p90_px", "val_n") if k in meta},
        },
        "assets": {"weights": {
            "href": f"./{weights.name}", "type": "application/octet-stream; "
            "application=safetensors", "title": "weights (safetensors)",
            "roles": ["mlm:model", "mlm:weights"], "mlm:artifact_type": "safetensors",
            "file:size": weights.stat().st_size, "file:checksum": "1220" + sha256(weights)}},
        "links": [],
    }
