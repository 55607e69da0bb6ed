"""The SpaceNet 9 baseline's keypoint detector: a U-Net with one encoder per modality.

Input: a 256 x 256 tile of each modality on a common grid, the *source* tile centred on a
keypoint. Output: a heatmap (sigmoid) over the *target* tile, peaked where that keypoint
is in the target modality. The two encoders' intermediate outputs are concatenated at
every scale and feed one decoder (the skip connections). The SAR detector has the optical
tile as source and the SAR tile as target; the optical detector the reverse.

Beyond the baseline: the target encoder and every decoder scale also read fixed CFOG
similarity maps of the source's centre over the target (`sn9cloud.models.similarity`,
`UNetConfig.templates`; empty for the plain baseline). The network then learns to turn
evidence into a heatmap rather than cross-modal matching from scratch, which is what lets
a few CPU minutes of training localise to a few pixels.

Small on purpose (a stride-2 stem; the shipped widths 8-64 make about 220 k parameters,
0.9 MB) so that it trains in minutes on a CPU; the output is brought back to the tile's
resolution.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from sn9cloud.models.similarity import centre_similarity


@dataclass(frozen=True)
class UNetConfig:
    widths: tuple[int, ...] = (16, 32, 64, 128)
    tile: int = 256
    # add, at every scale, the cosine similarity of the source's centre feature (the
    # keypoint's descriptor) with every target position: the decoder then refines a
    # similarity map instead of having to learn matching from concatenation alone
    correlation: bool = True
    # template sizes of the fixed CFOG similarity maps (`sn9cloud.models.similarity`) fed
    # to the target encoder and to every decoder scale; () for the plain baseline
    templates: tuple[int, ...] = (96, 160, 224)

    def __post_init__(self) -> None:
        if any(not 8 <= m <= self.tile for m in self.templates):
            raise ValueError(f"similarity templates {self.templates} must lie within the "
                             f"{self.tile} px tile")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (tuples as lists), as stored in weights headers and checkpoints."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> UNetConfig:
        """The inverse of `to_dict`. Headers written before a field existed describe models
        without that part: no correlation channel, no similarity maps."""
        return cls(widths=tuple(int(w) for w in cfg["widths"]), tile=int(cfg["tile"]),
                   correlation=bool(cfg.get("correlation", False)),
                   templates=tuple(int(m) for m in cfg.get("templates", ())))


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True),
    )


class Encoder(nn.Module):
    def __init__(self, widths: tuple[int, ...], channels: int = 1) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(channels, widths[0], 3, stride=2, padding=1),
                                  nn.ReLU(True))
        chans = [widths[0], *widths]
        self.stages = nn.ModuleList(_block(chans[i], chans[i + 1]) for i in range(len(widths)))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        feats = []
        for i, stage in enumerate(self.stages):
            if i:
                x = F.max_pool2d(x, 2)
            x = stage(x)
            feats.append(x)
        return feats


class KeypointUNet(nn.Module):
    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        self.config = config or UNetConfig()
        w = self.config.widths
        k = len(self.config.templates)
        self.source_encoder = Encoder(w)
        self.target_encoder = Encoder(w, 1 + k)
        # decoder: from the deepest concatenated features up, with concatenated skips
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        extra = (1 if self.config.correlation else 0) + k
        cin = 2 * w[-1] + extra
        for i in range(len(w) - 2, -1, -1):
            self.up.append(nn.ConvTranspose2d(cin, w[i], 2, stride=2))
            self.dec.append(_block(w[i] + 2 * w[i] + extra, w[i]))
            cin = w[i]
        self.head = nn.Conv2d(w[0], 1, 1)

    def _similarity(self, a: torch.Tensor, b: torch.Tensor) -> list[torch.Tensor]:
        return [_centre_similarity(a, b)] if self.config.correlation else []

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(B, 1, T, T) source and target tiles -> (B, 1, T, T) heatmap in [0, 1]."""
        sim = (centre_similarity(source, target, self.config.templates)
               if self.config.templates else None)
        fs = self.source_encoder(source)
        ft = self.target_encoder(target if sim is None else torch.cat(
            [target, F.interpolate(sim, size=target.shape[-2:], mode="bilinear",
                                   align_corners=False)], dim=1))
        skips = []
        for a, b in zip(fs, ft, strict=True):
            extra = self._similarity(a, b)
            if sim is not None:
                extra.append(F.adaptive_avg_pool2d(sim, a.shape[-2:]))
            skips.append(torch.cat([a, b, *extra], dim=1))
        x = skips[-1]
        for up, dec, skip in zip(self.up, self.dec, reversed(skips[:-1]), strict=True):
            x = dec(torch.cat([up(x), skip], dim=1))
        logits = F.interpolate(self.head(x), size=source.shape[-2:], mode="bilinear",
                               align_corners=False)
        return torch.sigmoid(logits)


def _centre_similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    h, w = a.shape[-2:]
    t = F.normalize(a[:, :, h // 2, w // 2], dim=1)[:, :, None, None]
    return (F.normalize(b, dim=1) * t).sum(dim=1, keepdim=True)


def weighted_mse(pred: torch.Tensor, target: torch.Tensor, threshold: float = 0.1) -> torch.Tensor:
    """Pixel-weighted MSE: keypoint pixels (target above ``threshold``) and background
    weigh the same in total, so a model cannot win by predicting all background."""
    fg = (target > threshold).float()
    n_fg = fg.sum(dim=(1, 2, 3), keepdim=True).clamp(min=1.0)
    n_bg = (1 - fg).sum(dim=(1, 2, 3), keepdim=True).clamp(min=1.0)
    w = fg / n_fg + (1 - fg) / n_bg
    return ((pred - target) ** 2 * w).sum(dim=(1, 2, 3)).mean() / 2.0


def gaussian_heatmap(tile: int, x: float, y: float, sigma: float = 13.0) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(tile, dtype=torch.float32),
                            torch.arange(tile, dtype=torch.float32), indexing="ij")
    return torch.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma * sigma))


def heatmap_peak(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sub-pixel peak (x, y) of (B, 1, T, T) heatmaps by a centroid around the argmax, and
    the peak value (the detector's confidence)."""
    b, _, t, _ = h.shape
    flat = h.view(b, -1)
    val, idx = flat.max(dim=1)
    iy, ix = idx // t, idx % t
    r = 4
    ys = torch.arange(-r, r + 1, device=h.device)
    oy = (iy[:, None] + ys[None]).clamp(0, t - 1)
    ox = (ix[:, None] + ys[None]).clamp(0, t - 1)
    win = h[torch.arange(b)[:, None, None], 0, oy[:, :, None], ox[:, None, :]]
    win = (win - win.amin(dim=(1, 2), keepdim=True)).clamp(min=0)
    s = win.sum(dim=(1, 2)).clamp(min=1e-9)
    cy = (win.sum(dim=2) * oy).sum(dim=1) / s
    cx = (win.sum(dim=1) * ox).sum(dim=1) / s
    return cx, cy, val


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
