"""The package works outside the checkout: a wheel built from the source, installed into a
fresh virtual environment, registers a sample pair with the shipped detector from a
folder that knows nothing of the checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAIR = ROOT / "catalogs" / "sample-pair"


def test_wheel_installs_and_registers_with_the_shipped_detector(tmp_path: Path) -> None:
    # build from a copy, so that nothing (build/, *.egg-info) is written into the checkout
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "sn9cloud", src / "sn9cloud",
                    ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                          "--no-build-isolation", "-q", "-w", str(wheels), str(src)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    (wheel,) = wheels.glob("sn9cloud-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"sn9cloud/py.typed", "sn9cloud/models/shipped/sar-detector.json",
            "sn9cloud/models/shipped/sar-detector.safetensors"} <= names

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    py = venv / "bin" / "python"
    res = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q",
                          "--no-deps", "--no-index", str(wheel)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    # the dependencies (not sn9cloud: a .pth line does not run the editable install's
    # own .pth hook) come from the project's environment, as an index would give them
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print("
                              "sysconfig.get_paths()['purelib'])"], capture_output=True,
                             text=True, check=True).stdout.strip()
    Path(purelib, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SN9CLOUD_", "PYTHON", "VIRTUAL_ENV"))}
    where = subprocess.run([str(py), "-c", "import sn9cloud; print(sn9cloud.__file__)"],
                           cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert where.returncode == 0, where.stderr[-2000:]
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout
    res = subprocess.run([str(venv / "bin" / "sn9cloud"), "register", str(PAIR / "optical.tif"),
                          str(PAIR / "sar.tif"), "-o", "offsets.tif", "--matcher", "keypoints",
                          "--report", "report.json"],
                         cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert "keypoints matcher" in res.stdout
    assert (work / "offsets.tif").stat().st_size > 0
    import json

    report = json.loads((work / "report.json").read_text())
    assert report["config"]["detector"]["name"] == "sar"
    assert any("detector_refinement" in lv for lv in report["levels"])
