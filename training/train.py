"""Train a keypoint detector (the SpaceNet 9 baseline's U-Net) from scenes and tie-points.

    python training/train.py --manifest DATA/manifest.json --detector sar --out runs/sar
        [--epochs 100] [--lr 1e-4] [--lr-drop-epoch 30] [--batch 8] [--max-minutes M]
        [--resume runs/sar/checkpoint.pt]

The baseline's recipe by default: Adam at 1e-4, the rate cut by 100x after 30 epochs, 100
epochs, pixel-weighted MSE. A progress line per batch on a terminal, a JSON line per epoch
in ``OUT/log.jsonl`` (train loss, validation loss, validation localisation error), a
checkpoint per epoch (``OUT/checkpoint.pt``, loaded with ``weights_only=True``) from which
``--resume`` goes on, and the best model by validation median error exported as
safetensors with its checksum (``OUT/<detector>-detector.safetensors``). CUDA where
present, CPU otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sn9cloud.models.unet import (
    KeypointUNet,
    UNetConfig,
    device,
    heatmap_peak,
    weighted_mse,
)
from sn9cloud.models.weights import save_model
from training.dataset import TileDataset, load_manifest


def evaluate(model: KeypointUNet, loader: DataLoader, dev: torch.device) -> dict:
    model.eval()
    losses, errs = [], []
    with torch.no_grad():
        for a, b, h, p in loader:
            out = model(a.to(dev), b.to(dev))
            losses.append(float(weighted_mse(out, h.to(dev))))
            cx, cy, _ = heatmap_peak(out)
            errs.extend(torch.hypot(cx.cpu() - p[:, 0], cy.cpu() - p[:, 1]).tolist())
    e = np.array(errs)
    return {"val_loss": float(np.mean(losses)), "val_median_px": float(np.median(e)),
            "val_p90_px": float(np.percentile(e, 90)), "val_n": len(e)}


def _templates(text: str, tile: int) -> tuple[int, ...]:
    if text == "none":
        return ()
    if text == "auto":
        return tuple(tile * k // 16 * 2 for k in (3, 5, 7))
    return tuple(int(m) for m in text.split(","))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", type=Path, required=True)
    ap.add_argument("--detector", choices=["sar", "optical"], default="sar")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--lr-drop-epoch", type=int, default=30)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--sigma", type=float, default=13.0)
    ap.add_argument("--widths", default="16,32,64,128")
    ap.add_argument("--no-correlation", action="store_true",
                    help="the plain baseline decoder input: concatenated encoder outputs only")
    ap.add_argument("--templates", default="auto",
                    help="template sizes of the CFOG similarity maps given to the U-Net "
                         "(px, comma-separated); 'auto': 3/8, 5/8 and 7/8 of the tile "
                         "(96,160,224 at 256); 'none' for the plain baseline")
    ap.add_argument("--max-minutes", type=float, default=None,
                    help="stop after the epoch that crosses this budget (resumable)")
    ap.add_argument("--resume", type=Path, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    torch.manual_seed(args.seed)
    dev = device()
    args.out.mkdir(parents=True, exist_ok=True)
    scenes = load_manifest(args.manifest)
    train = TileDataset(scenes["train"], args.detector, args.tile, args.sigma, augment=True,
                        seed=args.seed)
    val = TileDataset(scenes["val"], args.detector, args.tile, args.sigma)
    if not len(train) or not len(val):
        raise SystemExit(f"{args.manifest}: needs tie-points in both splits "
                         f"(train {len(train)}, val {len(val)})")
    tl = DataLoader(train, batch_size=args.batch, shuffle=True, num_workers=0, drop_last=True)
    vl = DataLoader(val, batch_size=16)
    config = UNetConfig(widths=tuple(int(w) for w in args.widths.split(",")), tile=args.tile,
                        correlation=not args.no_correlation,
                        templates=_templates(args.templates, args.tile))
    model = KeypointUNet(config).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[args.lr_drop_epoch],
                                                 gamma=0.01)
    start, best = 0, math.inf
    if args.resume:
        ck = torch.load(args.resume, map_location=dev, weights_only=True)
        if ck.get("config") != config.to_dict():
            raise SystemExit(f"{args.resume}: checkpoint of another architecture "
                             f"({ck.get('config')})")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        start, best = ck["epoch"] + 1, ck["best"]
    print(f"{args.detector} detector on {dev}: {len(train)} training tiles, {len(val)} "
          f"validation tiles, {sum(p.numel() for p in model.parameters())} parameters")
    t0 = time.perf_counter()
    log = (args.out / "log.jsonl").open("a")
    for epoch in range(start, args.epochs):
        model.train()
        losses = []
        for i, (a, b, h, _) in enumerate(tl):
            out = model(a.to(dev), b.to(dev))
            loss = weighted_mse(out, h.to(dev))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            if sys.stderr.isatty():
                print(f"\repoch {epoch + 1}/{args.epochs} [{i + 1}/{len(tl)}] "
                      f"loss {np.mean(losses):.4f}", end="", file=sys.stderr)
        sched.step()
        row = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)),
               "lr": opt.param_groups[0]["lr"], "minutes": (time.perf_counter() - t0) / 60,
               **evaluate(model, vl, dev)}
        log.write(json.dumps(row) + "\n")
        log.flush()
        print(f"\repoch {row['epoch']}: train {row['train_loss']:.4f}, val "
              f"{row['val_loss']:.4f}, localisation median {row['val_median_px']:.2f} px, "
              f"p90 {row['val_p90_px']:.2f} px ({row['minutes']:.1f} min)")
        if row["val_median_px"] < best:
            best = row["val_median_px"]
            save_model(model, args.out / f"{args.detector}-detector.safetensors",
                       {"detector": args.detector, "epoch": row["epoch"], **row,
                        "sigma": args.sigma, "lr": args.lr, "lr_drop_epoch": args.lr_drop_epoch,
                        "batch": args.batch, "epochs": args.epochs})
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(), "epoch": epoch, "best": best,
                    "config": config.to_dict()},
                   args.out / "checkpoint.pt")
        if args.max_minutes and (time.perf_counter() - t0) / 60 > args.max_minutes:
            print(f"time budget reached after epoch {epoch + 1}; resume with "
                  f"--resume {args.out / 'checkpoint.pt'}")
            break
    print(f"best validation median {best:.2f} px: "
          f"{args.out / (args.detector + '-detector.safetensors')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
