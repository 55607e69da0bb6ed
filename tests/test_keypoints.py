"""The learned keypoint detectors: the U-Net and its loss, safe weights (checksum,
architecture, never code from a file), the training command end to end with resume, and
clear errors on bad tie-points."""

from __future__ import annotations

import json
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sn9cloud.errors import InputError  # noqa: E402
from sn9cloud.models.unet import (  # noqa: E402
    KeypointUNet,
    UNetConfig,
    gaussian_heatmap,
    heatmap_peak,
    weighted_mse,
)
from sn9cloud.models.weights import ModelError, load_model, save_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = UNetConfig(widths=(4, 8), tile=64, templates=(24, 40))


def _texture(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.avg_pool2d(torch.rand(1, 1, n + 8, n + 8, generator=g), 5, 1)
    return (x - x.min()) / (x.max() - x.min())


def test_similarity_maps_find_a_known_shift_and_ignore_padding() -> None:
    from sn9cloud.models.similarity import centre_similarity

    x = _texture(128)[..., :128, :128] * 0.9 + 0.05  # no exact zeros inside the data
    src = x.clone()
    src[..., :, 100:] = 0.0  # the scene ends right of the keypoint: zero padding
    tgt = torch.roll(x, shifts=(-6, 10), dims=(2, 3))  # the centre content moves by (+10, -6)
    for stride in (1, 2):
        s = centre_similarity(src, tgt, (48, 80), stride)
        assert s.shape == (1, 2, 128 // stride, 128 // stride)
        for k in range(2):
            i = int(s[0, k].argmax())
            w = s.shape[-1]
            assert ((i % w) * stride, (i // w) * stride) == (64 + 10, 64 - 6)
            assert float(s[0, k].max()) > 0.85
    # a flat target (nothing to match) scores near zero everywhere, never a spurious peak
    s = centre_similarity(src, torch.full_like(x, 0.5), (48,))
    assert float(s.abs().max()) < 0.05


def test_templates_must_fit_the_tile() -> None:
    with pytest.raises(ValueError, match="within the 64 px tile"):
        UNetConfig(widths=(4, 8), tile=64, templates=(96,))


def test_unet_heatmap_shape_and_peak() -> None:
    m = KeypointUNet(TINY).eval()
    x = torch.rand(3, 1, 64, 64)
    with torch.no_grad():
        h = m(x, x)
    assert h.shape == (3, 1, 64, 64) and float(h.min()) >= 0 and float(h.max()) <= 1
    g = gaussian_heatmap(64, 20.3, 41.7, sigma=3.0)[None, None]
    cx, cy, v = heatmap_peak(g)
    assert abs(float(cx[0]) - 20.3) < 0.3 and abs(float(cy[0]) - 41.7) < 0.3
    assert float(v[0]) > 0.9


def test_weighted_mse_balances_keypoint_and_background() -> None:
    t = gaussian_heatmap(64, 32, 32, sigma=4.0)[None, None]
    zeros = torch.zeros_like(t)
    assert float(weighted_mse(t, t)) == 0.0
    # predicting all background is penalised like missing half the weight, not ~0
    assert float(weighted_mse(zeros, t)) > 0.05
    assert float(weighted_mse(zeros, t)) > float(weighted_mse(t * 0.8, t))


def test_weights_roundtrip_with_checksum(tmp_path: Path) -> None:
    m = KeypointUNet(TINY)
    digest = save_model(m, tmp_path / "w.safetensors", {"note": "x"})
    back = load_model(tmp_path / "w.safetensors", digest)
    for k, v in m.state_dict().items():
        assert torch.equal(v, back.state_dict()[k])


def test_tampered_weights_are_refused(tmp_path: Path) -> None:
    p = tmp_path / "w.safetensors"
    digest = save_model(KeypointUNet(TINY), p)
    data = bytearray(p.read_bytes())
    data[-5] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="checksum mismatch"):
        load_model(p, digest)


def test_weights_of_another_architecture_are_refused(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    p = tmp_path / "w.safetensors"
    save_file({"head.weight": torch.zeros(3, 3)}, str(p),
              metadata={"architecture": "sn9cloud.KeypointUNet",
                        "config": json.dumps(TINY.to_dict())})
    with pytest.raises(ModelError, match="another architecture"):
        load_model(p, None)



def test_a_pickle_is_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    p = tmp_path / "w.safetensors"
    p.write_bytes(pickle.dumps({"model": Payload()}))
    with pytest.raises(ModelError, match="not a safetensors file"):
        load_model(p, None)
    assert not marker.exists()


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory: pytest.TempPathFactory, data: Path) -> Path:
    out = tmp_path_factory.mktemp("tp")
    res = subprocess.run([sys.executable, str(ROOT / "training" / "make_tiepoints.py"),
                          "--out", str(out), "--limit", "5", "--per-pair", "1",
                          "--data", str(data)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return out


def test_tiepoints_are_in_the_sn9_format(small_dataset: Path) -> None:
    m = json.loads((small_dataset / "manifest.json").read_text())
    assert {s["split"] for s in m["scenes"]} == {"train", "val"}
    header = (small_dataset / m["scenes"][0]["tiepoints"]).read_text().splitlines()[0]
    assert header == "sar_row,sar_col,optical_row,optical_col"


def test_training_runs_and_resumes(small_dataset: Path, tmp_path: Path) -> None:
    train = [sys.executable, str(ROOT / "training" / "train.py"), "--manifest",
             str(small_dataset / "manifest.json"), "--out", str(tmp_path / "run"),
             "--widths", "4,8", "--tile", "128", "--sigma", "6", "--batch", "4"]
    res = subprocess.run([*train, "--epochs", "1"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    res = subprocess.run([*train, "--epochs", "2", "--resume",
                          str(tmp_path / "run" / "checkpoint.pt")],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]
    assert all(np.isfinite(r["val_median_px"]) for r in log)
    assert (tmp_path / "run" / "sar-detector.safetensors").exists()
    res = subprocess.run([*train[:-8], "--widths", "8,16", "--tile", "128", "--epochs", "3",
                          "--resume", str(tmp_path / "run" / "checkpoint.pt")],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode != 0 and "checkpoint of another architecture" in res.stderr


def test_bad_tiepoints_are_clear_errors(small_dataset: Path, tmp_path: Path) -> None:
    from training.dataset import load_scene

    m = json.loads((small_dataset / "manifest.json").read_text())
    s = m["scenes"][0]
    opt, sar = str(small_dataset / s["optical"]), str(small_dataset / s["sar"])
    good = (small_dataset / s["tiepoints"]).read_text().splitlines()
    cases = {
        "missing column(s) optical_col": "sar_row,sar_col,optical_row\n1,2,3\n",
        "NaN": good[0] + "\n1,2,nan,4\n",
        "duplicate rows": "\n".join([good[0], good[1], good[1]]) + "\n",
        "optical points outside the optical image": good[0] + "\n1,2,3,99999\n",
    }
    for msg, text in cases.items():
        p = tmp_path / "tp.csv"
        p.write_text(text)
        with pytest.raises(InputError, match=re.escape(msg)):
            load_scene(opt, sar, str(p))


SCHEMAS = ROOT.parent / "shared" / "schemas"
MODELS = ROOT / "sn9cloud" / "models" / "shipped"


def test_shipped_detector_item_validates(schemas: Path) -> None:
    from sn9cloud.stac.validate import validate

    item = json.loads((MODELS / "sar-detector.json").read_text())
    checked = validate(item, schemas)
    assert any("/mlm/" in u for u in checked)


def test_shipped_detector_item_and_checksum() -> None:
    from sn9cloud.models.detector import load_detector

    item = json.loads((MODELS / "sar-detector.json").read_text())
    assert item["properties"]["sn9cloud:validation"]["val_median_px"] > 0
    assert (MODELS / "sar-detector.safetensors").stat().st_size < 8 * 2**20  # a few MB
    det = load_detector("sar", MODELS)
    assert det.tile == 256
    # the item's checksum is enforced
    tampered = json.loads(json.dumps(item))
    tampered["assets"]["weights"]["file:checksum"] = "1220" + "0" * 64
    import shutil
    import tempfile

    d = Path(tempfile.mkdtemp())
    try:
        (d / "sar-detector.json").write_text(json.dumps(tampered))
        shutil.copyfile(MODELS / "sar-detector.safetensors", d / "sar-detector.safetensors")
        with pytest.raises(ModelError, match="checksum mismatch"):
            load_detector("sar", d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_shipped_detector_localises_held_out_tiles(small_dataset: Path) -> None:
    """The shipped SAR detector on tiles of a tile pair held out of its training (the
    fifth city pair, GF3_city_04, is in the validation split of the full training set too).

    A regression guard, not the target: the 3 px median is measured over all 958 held-out
    tiles by benchmarks/keypoints.py. This one pair is among the hardest (the engine
    declines it even undistorted): the
    shipped model gives 4.2 px here; the previous one (no similarity maps) had 21.6 px over
    all held-out tiles."""
    from sn9cloud.models.detector import load_detector
    from training.dataset import TileDataset, load_manifest

    det = load_detector("sar", MODELS)
    val = TileDataset(load_manifest(small_dataset / "manifest.json")["val"], "sar")
    assert len(val) >= 20
    a = np.stack([val[i][0].numpy()[0] for i in range(len(val))])
    b = np.stack([val[i][1].numpy()[0] for i in range(len(val))])
    truth = np.stack([val[i][3].numpy() for i in range(len(val))])
    xy, conf = det.locate(a, b)
    err = np.hypot(*(xy - truth).T)
    assert np.median(err) <= 6.0, f"median {np.median(err):.2f} px over {len(err)} tiles"
    assert conf.shape == (len(val),) and np.all((conf >= 0) & (conf <= 1))


def test_both_detector_uses_run_on_the_sample_pair(tmp_path: Path) -> None:
    """The baseline mode end to end, and the refining use not worse than the engine."""
    from click.testing import CliRunner

    from sn9cloud.cli import main
    from sn9cloud.distortion import Distortion, truth_offsets

    sample = ROOT / "catalogs" / "sample-pair"
    d = Distortion.from_dict(json.loads((sample / "truth.json").read_text())
                             ["distortion_optical_px"])
    errs = {}
    for matcher in ("engine", "keypoints", "baseline"):
        out = tmp_path / f"{matcher}.tif"
        res = CliRunner().invoke(main, ["register", str(sample / "optical.tif"),
                                        str(sample / "sar.tif"), "-o", str(out),
                                        "--matcher", matcher, "--report",
                                        str(tmp_path / f"{matcher}.json")])
        assert res.exit_code == 0, res.output
        import rasterio

        with rasterio.open(out) as ds:
            off = ds.read()
        truth, inside = truth_offsets(d, off.shape[2], off.shape[1])
        errs[matcher] = float(np.hypot(*(off - truth)[:, inside]).mean())
    assert errs["keypoints"] <= errs["engine"] + 1e-6
    assert np.isfinite(errs["baseline"])
    rep = json.loads((tmp_path / "keypoints.json").read_text())
    assert rep["matcher"] == "keypoints"
    assert "detector_refinement" in rep["levels"][-1]
