"""Ship a trained detector: copy its weights into ``sn9cloud/models/shipped/`` (the
package's own, installed with it) and write its STAC
item (Machine Learning Model extension) with checksum, training data, hyperparameters and
validation figures.

    python training/publish_model.py runs/sar/sar-detector.safetensors --name sar \\
        --training-data "3MOS city tiles, training/make_tiepoints.py --per-pair 3" \\
        --command "training/train.py ..."
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sn9cloud.models import SHIPPED
from sn9cloud.models.detector import model_item


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("weights", type=Path)
    ap.add_argument("--name", choices=["sar", "optical"], required=True)
    ap.add_argument("--training-data", required=True)
    ap.add_argument("--command", required=True, help="the training command, for the record")
    ap.add_argument("--hardware", default="2-core CPU, no GPU")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    out = args.out or SHIPPED
    out.mkdir(parents=True, exist_ok=True)
    dst = out / f"{args.name}-detector.safetensors"
    shutil.copyfile(args.weights, dst)
    training = {"datetime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "data": args.training_data, "command": args.command,
                "hardware": args.hardware}
    item = model_item(dst, args.name, training)
    (out / f"{args.name}-detector.json").write_text(json.dumps(item, indent=1) + "\n")
    print(f"{dst} ({dst.stat().st_size} bytes), item {out / (args.name + '-detector.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
