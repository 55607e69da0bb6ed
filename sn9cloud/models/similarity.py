"""Fixed (untrained) similarity maps that the keypoint detector's U-Net reads beside the
tiles.

Learning cross-modal matching from scratch takes far more data and compute than a few
minutes of CPU; the engine's modality-robust features already match. So the detector is
given, for a few template sizes, the masked normalised cross-correlation of the source
tile's centre (the keypoint's neighbourhood) with every position of the target tile, on
CFOG features (`sn9cloud.engine.features`, re-written in torch so that it runs batched on
the detector's device). The U-Net learns to turn those maps and the tiles into one
heatmap: trust the large template for the neighbourhood, the small ones for the peak.

Zero-valued regions (outside the scene, as the tiles are padded) are masked: their
features are zeroed and the correlation is normalised over the template's valid pixels
only (Padfield 2012), so the edge of the data is never what matches.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from sn9cloud.engine.features import N_ORIENTATIONS


def cfog(x: torch.Tensor, sigma: float = 1.2) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 1, H, W) intensities -> (B, 8, H, W) CFOG features and a (B, 1, H, W) validity
    mask (0 within a few pixels of zero-padded regions)."""
    # the filters as sums of shifted slices: CPU convolutions with one or few channels are
    # several times slower than that
    xp = F.pad(x, (1, 1, 1, 1), mode="replicate")
    sx = xp[..., :-2] + 2 * xp[..., 1:-1] + xp[..., 2:]  # smoothing along x
    sy = xp[..., :-2, :] + 2 * xp[..., 1:-1, :] + xp[..., 2:, :]
    gx, gy = (sy[..., 2:] - sy[..., :-2]) / 8, (sx[..., 2:, :] - sx[..., :-2, :]) / 8
    t = torch.arange(N_ORIENTATIONS, dtype=x.dtype, device=x.device) * math.pi / N_ORIENTATIONS
    f = (gx * torch.cos(t)[None, :, None, None] + gy * torch.sin(t)[None, :, None, None]).abs()
    r = int(3 * sigma + 0.5)
    g = torch.exp(-torch.arange(-r, r + 1, dtype=x.dtype, device=x.device) ** 2
                  / (2 * sigma * sigma))
    weights: list[float] = (g / g.sum()).tolist()
    h, w = x.shape[-2:]
    fp = F.pad(f, (r, r, 0, 0), mode="replicate")
    f = fp[..., 0:w] * weights[0]  # summed in order, as the detector was trained
    for i in range(1, 2 * r + 1):
        f = f + fp[..., i:i + w] * weights[i]
    fp = F.pad(f, (0, 0, r, r), mode="replicate")
    f = fp[..., 0:h, :] * weights[0]
    for i in range(1, 2 * r + 1):
        f = f + fp[..., i:i + h, :] * weights[i]
    f = 0.5 * f + 0.25 * (f.roll(1, 1) + f.roll(-1, 1))
    invalid = (F.avg_pool2d((x == 0).to(x.dtype), 5, 1, 2) > 0.8).to(x.dtype)
    valid = 1.0 - F.max_pool2d(invalid, 7, 1, 3)
    f = f * valid
    norm = (f * f).sum(dim=1, keepdim=True).sqrt()  # f.norm over channels is slow on CPU
    eps = 0.1 * norm.mean(dim=(2, 3), keepdim=True) + 1e-6
    return f / (norm + eps), valid


def centre_similarity(source: torch.Tensor, target: torch.Tensor,
                      sizes: tuple[int, ...], stride: int = 2) -> torch.Tensor:
    """(B, 1, T, T) tiles -> (B, len(sizes), T / stride, T / stride): for each size m, the
    masked NCC of the source's central m x m features with the target's m x m window
    centred at each position (a peak at (x, y) says the source's centre is at
    (x, y) * stride in the target).

    Features are averaged over stride x stride cells first: a quarter of the FFT work at
    stride 2, and the U-Net's finest decoder scale is stride 2 anyway."""
    fs, vs = cfog(source)
    ft, _ = cfog(target)
    if stride > 1:
        fs, ft = F.avg_pool2d(fs, stride), F.avg_pool2d(ft, stride)
        vs = -F.max_pool2d(-vs, stride)
    c, t = fs.shape[1], fs.shape[-1]
    p = t + max(sizes) // stride
    spectra = torch.fft.rfft2(F.pad(torch.cat([ft, ft.sum(1, keepdim=True),
                                               (ft * ft).sum(1, keepdim=True)], dim=1),
                                    (0, p - t, 0, p - t)))
    out = []
    for size in sizes:
        m = size // stride
        c0 = t // 2 - m // 2
        tpl, tv = fs[:, :, c0:c0 + m, c0:c0 + m], vs[:, :, c0:c0 + m, c0:c0 + m]
        n = tv.sum(dim=(1, 2, 3), keepdim=True).clamp(min=1.0) * c
        tpl = (tpl - (tpl * tv).sum(dim=(1, 2, 3), keepdim=True) / n) * tv
        k = torch.fft.rfft2(torch.cat([tpl, tv], dim=1), s=(p, p)).conj()
        cc = torch.fft.irfft2(torch.cat([(spectra[:, :c] * k[:, :c]).sum(1, keepdim=True),
                                         spectra[:, c:] * k[:, c:]], dim=1), s=(p, p))
        idx = (torch.arange(t, device=source.device) - m // 2) % p
        cc = cc[:, :, idx][:, :, :, idx]
        s1, s2 = cc[:, 1:2], cc[:, 2:3]
        tn2 = tpl.pow(2).sum(dim=(1, 2, 3), keepdim=True)
        # a floor on the window's variance relative to the template's: windows with little
        # structure (flat or padded) score low instead of blowing up
        var = (s2 - s1 * s1 / n).clamp(min=0.0) + 0.1 * tn2 + 1e-6
        out.append(cc[:, :1] / (tn2.sqrt() * var.sqrt()))
    return torch.cat(out, dim=1).clamp(-1.0, 1.0)
