"""One configuration, one result identity: config files and flags, what a result records
and hashes, the matcher registry, settings read once, and errors as one line."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import rasterio
from click.testing import CliRunner
from runs import default_run

from sn9cloud.cli import main
from sn9cloud.config import RegistrationConfig, canonical_json, config_hash, load_config
from sn9cloud.errors import (
    ConfigError,
    InputError,
    OutputError,
    SettingsError,
    TransientError,
    UnreliableRegistrationError,
    outcome,
    reason,
)
from sn9cloud.matchers import MATCHERS, Matcher, Resources
from sn9cloud.settings import Settings
from sn9cloud.stac.validate import validate

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "catalogs" / "sample"
PAIR = ROOT / "catalogs" / "sample-pair"
COLLECTION = "sn9cloud-offsets"


def _run(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, list(args))
    return res.exit_code, res.output


def _items(out: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text())
            for p in sorted((out / COLLECTION).glob("*/sn9-offsets-*.json"))]


# ---- the configuration --------------------------------------------------------------

def test_defaults_round_trip_through_a_config_file(tmp_path: Path) -> None:
    default = RegistrationConfig()
    path = tmp_path / "c.toml"
    path.write_text(default.to_toml())
    assert load_config(path) == default
    assert RegistrationConfig.from_dict(default.to_dict()) == default
    text = default.to_toml()
    assert "max_working_size = 1024" in text and "[keypoints]" in text
    assert "# longest side of the working grid, px [64, 32768]" in text


def test_equal_settings_hash_equal_whatever_their_spelling(tmp_path: Path) -> None:
    a = tmp_path / "a.toml"
    a.write_text('[engine]\nmin_ncc = 0.1\nmax_shift_fraction = 0.25\n')
    b = tmp_path / "b.toml"
    b.write_text('matcher = "engine"\n[engine]\nmax_shift_fraction = 2.5e-1\n[baseline]\n')
    r = Resources()
    assert config_hash(load_config(a).effective(r)) == config_hash(load_config(b).effective(r))
    c = tmp_path / "c.toml"
    c.write_text('[engine]\nmin_ncc = 0\n')  # an int where a float is declared: a float
    assert load_config(c).engine.min_ncc == 0.0
    assert isinstance(load_config(c).engine.min_ncc, float)


def test_each_setting_changes_the_identity() -> None:
    base = default_run()
    seen = {base.config_hash}
    for key, value in (("engine.model", "affine"), ("engine.half", 20),
                       ("engine.max_working_size", 2048), ("engine.scales", [1.0]),
                       ("matcher", "keypoints"), ("matcher", "baseline")):
        h = default_run(**{key: value}).config_hash
        assert h not in seen, key
        seen.add(h)
    # the baseline reads neither the engine's templates nor the refinement's settings
    b = default_run(matcher="baseline")
    assert default_run(matcher="baseline", **{"engine.half": 30}).config_hash == b.config_hash
    assert default_run(matcher="baseline",
                       **{"keypoints.min_gain": 0.5}).config_hash == b.config_hash
    assert default_run(matcher="baseline",
                       **{"baseline.spacing_m": 50.0}).config_hash != b.config_hash
    # the detector's weights are part of a detector matcher's identity
    k = default_run(matcher="keypoints")
    assert k.effective["detector"]["name"] == "sar"
    assert len(k.effective["detector"]["sha256"]) == 64
    assert k.config_hash == config_hash(json.loads(canonical_json(k.effective)))


@pytest.mark.parametrize(("text", "message"), [
    ("matcher = \n", "not TOML"),
    ("[engine]\nhalf = 'x'\n", "engine.half = 'x': want a whole number"),
    ("[engine]\nhalf = 2\n", "engine.half = 2: must be at least 4"),
    ("[engine]\nhalf = true\n", "engine.half = True: want a whole number"),
    ("[engine]\nmin_ncc = nan\n", "engine.min_ncc = nan: want a finite number"),
    ("[engine]\nmodel = 'spline'\n", "engine.model = 'spline': choose one of nonrigid, affine"),
    ("[engine]\nscales = []\n", "engine.scales = []: want a non-empty list"),
    ("[engine]\nscales = [1.0, 9.0]\n", "engine.scales[1] = 9.0: must be at most 2"),
    ("[engine]\nhalfsize = 3\n", "unknown key engine.'halfsize'"),
    ("[engines]\nhalf = 3\n", "unknown key 'engines'"),
    ("engine = 3\n", "engine must be a table of settings"),
    ("matcher = 'sift'\n", "matcher = 'sift': choose one of engine, keypoints, baseline"),
    ("[keypoints]\nmin_gain = 1.5\n", "keypoints.min_gain = 1.5: must be at most 1"),
])
def test_bad_config_file_is_one_line_and_nothing_written(tmp_path: Path, text: str,
                                                         message: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    out = tmp_path / "o.tif"
    code, output = _run("register", str(PAIR / "optical.tif"), str(PAIR / "sar.tif"),
                        "-o", str(out), "--config", str(cfg))
    assert code == 2
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sn9cloud: error: config "), output
    assert str(cfg) in lines[0] and message in lines[0], output
    assert not out.exists()
    code, output = _run("run", str(SAMPLE / "catalog.json"), "--out", str(tmp_path / "r"),
                        "--config", str(cfg))
    assert code == 2 and message in output
    assert not (tmp_path / "r").exists()


def test_config_file_that_cannot_be_read(tmp_path: Path) -> None:
    latin = tmp_path / "latin.toml"
    latin.write_bytes("# caf\xe9\n".encode("latin-1"))
    for path, message in ((tmp_path / "none.toml", "no such file"),
                          (tmp_path, "is a folder"),
                          (latin, "not TOML (not UTF-8 text)")):
        with pytest.raises(ConfigError, match=re.escape(message)):
            load_config(path)


def test_flags_override_the_file_and_are_checked_alike(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('matcher = "keypoints"\n[engine]\nmodel = "affine"\nhalf = 20\n')
    code, text = _run("config", "--config", str(cfg), "--model", "nonrigid")
    assert code == 0, text
    shown = load_config_text(text)
    assert (shown.matcher, shown.engine.model, shown.engine.half) == (
        "keypoints", "nonrigid", 20)
    run = default_run(matcher="keypoints", **{"engine.half": 20})
    assert f"# effective configuration hash: {run.config_hash}" in text
    code, text = _run("register", str(PAIR / "optical.tif"), str(PAIR / "sar.tif"), "-o",
                      str(tmp_path / "o.tif"), "--max-working-size", "0")
    assert code == 2
    assert text.strip() == ("sn9cloud: error: --max-working-size: engine.max_working_size = "
                            "0: must be at least 64")
    code, text = _run("register", "a", "b", "-o", "c", "--matcher", "sift")
    assert code == 2 and len(text.strip().splitlines()) == 1
    assert "'sift' is not one of 'engine', 'keypoints', 'baseline'" in text


def load_config_text(text: str) -> RegistrationConfig:
    import tomllib

    return RegistrationConfig.from_dict(tomllib.loads(text))


# ---- result identity: what was computed is what the item says -------------------------

def test_each_configuration_publishes_beside_the_others(tmp_path: Path,
                                                        schemas: Path) -> None:
    """The issue's own check: default, --model affine, --matcher baseline into one output
    (3, 3 and 3 published), then the first again (0 published, 3 skipped); 9 valid items,
    each saying what ran."""
    out = tmp_path / "out"
    cat = str(SAMPLE / "catalog.json")
    runs = [((), {}), (("--model", "affine"), {"engine.model": "affine"}),
            (("--matcher", "baseline"), {"matcher": "baseline"})]
    for flags, _ in runs:
        code, text = _run("run", cat, "--out", str(out), *flags)
        assert code == 0, text
        assert "3 published, 0 skipped" in text, text
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    code, text = _run("run", cat, "--out", str(out))
    assert code == 0 and "0 published, 3 skipped" in text, text
    assert all(p.stat().st_mtime_ns == t for p, t in before.items()
               if p.name != ".sn9cloud.lock")

    items = _items(out)
    assert len(items) == 9 == len({it["id"] for it in items})
    coll = json.loads((out / COLLECTION / "collection.json").read_text())
    assert sum(ln["rel"] == "item" for ln in coll["links"]) == 9
    by_hash = {}
    for _, values in runs:
        run = default_run(**values)
        by_hash[run.config_hash] = run
    for it in items:
        validate(it, schemas)
        p = it["properties"]
        run = by_hash[p["sn9cloud:config_hash"]]
        assert it["id"] == run.result_id(p["sn9cloud:optical_id"], p["sn9cloud:sar_id"])
        assert p["sn9cloud:config"] == run.effective
        assert p["sn9cloud:matcher"] == run.config.matcher
        assert p["sn9cloud:model"] == run.field_model
        assert run.label() in p["title"]
        assert run.matcher.lineage(run.config) in p["processing:lineage"]
        report = json.loads((out / COLLECTION / it["id"] / it["assets"]["report"]["href"])
                            .read_text())
        assert report["config_hash"] == run.config_hash
        assert report["matcher"] == run.config.matcher
        with rasterio.open(out / COLLECTION / it["id"] / it["assets"]["offsets"]["href"]) as ds:
            tags = ds.tags()
        assert (tags["matcher"], tags["model"], tags["config_hash"]) == (
            run.config.matcher, run.field_model, run.config_hash)
    lineages = {it["properties"]["sn9cloud:matcher"]: it["properties"]["processing:lineage"]
                for it in items}
    assert "SpaceNet 9 baseline workflow" in lineages["baseline"]
    assert "thin-plate" not in lineages["baseline"]
    # --force republishes the same ids, leaving the other configurations' items alone
    code, text = _run("run", cat, "--out", str(out), "--force", "--model", "affine")
    assert code == 0 and "3 published" in text
    assert len(_items(out)) == 9


def test_the_detector_is_loaded_once_per_run(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from sn9cloud.matchers import base
    from sn9cloud.models import detector

    calls: list[str] = []
    real = detector.load_detector

    def counted(*a: Any, **k: Any) -> Any:
        calls.append("load")
        return real(*a, **k)

    monkeypatch.setattr(detector, "load_detector", counted)
    base._load_detector.cache_clear()
    code, text = _run("run", str(SAMPLE / "catalog.json"), "--out", str(tmp_path / "o"),
                      "--matcher", "baseline")
    assert code == 0, text
    assert "3 published" in text
    assert calls == ["load"]  # three pairs, one load


def test_a_bad_model_folder_fails_before_any_pair(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SN9CLOUD_MODELS", str(tmp_path))
    code, text = _run("run", str(SAMPLE / "catalog.json"), "--out", str(tmp_path / "o"),
                      "--matcher", "keypoints")
    assert code == 2
    assert "sar-detector.json: no such file" in text and "SN9CLOUD_MODELS" in text
    assert not (tmp_path / "o").exists()
    # the engine matcher needs no model: the same setting does not stop it
    code, text = _run("config", "--matcher", "engine")
    assert code == 0


# ---- the matcher registry ------------------------------------------------------------

def test_registry_lists_looks_up_and_extends() -> None:
    assert MATCHERS.names() == ("engine", "keypoints", "baseline")
    with pytest.raises(ConfigError, match="unknown matcher 'sift': choose one of engine"):
        MATCHERS.get("sift")

    class Shifted(Matcher):
        name = "shifted"
        summary = "a test matcher"

        def register(self, *a: Any) -> Any:  # type: ignore[override]
            raise NotImplementedError

        def field_model(self, config: Any) -> str:
            return "affine"

        def lineage(self, config: Any) -> str:
            return "a test"

    more = MATCHERS.register(Shifted())
    assert more.names() == ("engine", "keypoints", "baseline", "shifted")
    assert MATCHERS.names() == ("engine", "keypoints", "baseline")  # unchanged
    with pytest.raises(ValueError, match="registered twice"):
        more.register(Shifted())


def test_cli_choices_come_from_the_registries() -> None:
    code, text = _run("register", "--help")
    assert code == 0
    for m in MATCHERS:
        assert m.name in text
    assert "nonrigid|affine" in text


# ---- settings, read once at the edge -------------------------------------------------

@pytest.mark.parametrize(("env", "message"), [
    ({"SN9CLOUD_THREADS": "0"}, "SN9CLOUD_THREADS='0': want a whole number of threads"),
    ({"SN9CLOUD_THREADS": "two"}, "SN9CLOUD_THREADS='two'"),
    ({"SN9CLOUD_MODELS": "/nonexistent/models"}, "SN9CLOUD_MODELS='/nonexistent/models': "
                                                 "not a folder"),
    ({"SN9CLOUD_STAC_BROWSER": "/nonexistent"}, "SN9CLOUD_STAC_BROWSER='/nonexistent': not "
                                                "a built STAC Browser"),
    ({"SN9CLOUD_STAC_API_TOKEN": "abc\ndef"}, "SN9CLOUD_STAC_API_TOKEN: holds whitespace"),
    ({"PGSTAC_DSN": "mysql://x"}, "PGSTAC_DSN: a URL DSN must start with postgresql://"),
    ({"PGSTAC_DSN": "just-a-word"}, "PGSTAC_DSN: neither a postgresql:// URL"),
    ({"RAY_ADDRESS": "not an address"}, "RAY_ADDRESS='not an address': want auto"),
])
def test_bad_settings_name_the_variable(env: dict[str, str], message: str,
                                        monkeypatch: pytest.MonkeyPatch,
                                        tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as e:
        Settings.from_env(env)
    assert message in str(e.value)
    if "TOKEN" in message or "DSN" in message:
        assert "abc" not in str(e.value) and "mysql" not in str(e.value)  # never shown
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    code, text = _run("register", str(PAIR / "optical.tif"), str(PAIR / "sar.tif"), "-o",
                      str(tmp_path / "o.tif"))
    assert code == 2 and message in text and len(text.strip().splitlines()) == 1
    assert not (tmp_path / "o.tif").exists()


def test_good_settings_are_read_and_passed_down(tmp_path: Path) -> None:
    s = Settings.from_env({"SN9CLOUD_THREADS": " 3 ", "SN9CLOUD_MODELS": str(tmp_path),
                           "PGHOST": "db", "PGUSER": "u", "RAY_ADDRESS": "ray://head:10001",
                           "SN9CLOUD_STAC_API_TOKEN": "s3cr3t"})
    assert (s.threads, s.models_dir, s.pgstac_dsn, s.ray_address) == (
        3, tmp_path, "", "ray://head:10001")
    assert s.executor().threads == 3
    assert "s3cr3t" not in repr(s)  # secrets stay out of logs
    d = Settings.from_env({})
    assert d.threads >= 1 and (d.models_dir / "sar-detector.json").is_file()
    assert d.pgstac_dsn is None and d.ray_address is None and d.stac_api_token is None


def test_the_engine_reads_no_environment() -> None:
    for p in (ROOT / "sn9cloud" / "engine").glob("*.py"):
        text = p.read_text()
        assert "os.environ" not in text and "getenv" not in text, p.name
    outside = [p.relative_to(ROOT).as_posix() for p in (ROOT / "sn9cloud").rglob("*.py")
               if "os.environ" in p.read_text()]
    # settings.py reads the environment once; the rest are the AWS environment boto3 and
    # GDAL read themselves, and what Ray workers and moto's test server are handed
    assert sorted(outside) == ["sn9cloud/distributed/cluster.py", "sn9cloud/io/moto_server.py",
                               "sn9cloud/io/s3.py", "sn9cloud/settings.py"]


# ---- errors: one line, and one table from exception to outcome ------------------------

def test_reason_is_one_line_and_never_fails() -> None:
    assert reason(ValueError("")) == "ValueError"
    assert reason(ValueError("\n\n  first line \nsecond")) == "first line"
    assert reason(KeyError()) == "KeyError"


def test_outcomes_table() -> None:
    cases = [(InputError("bad"), "input", False), (ConfigError("c"), "config", False),
             (SettingsError("s"), "config", False),
             (UnreliableRegistrationError("u"), "unreliable", False),
             (OutputError("o"), "output", False), (TransientError("t"), "transient", True),
             (TimeoutError("slow"), "transient", True),
             (ZeroDivisionError(), "internal", False)]
    for e, kind, retry in cases:
        o = outcome(e)
        assert (o.kind, o.retry) == (kind, retry), e
        assert "\n" not in o.message
    assert outcome(ZeroDivisionError()).message == "unexpected ZeroDivisionError"
    assert outcome(TimeoutError("slow\nmore")).message == "TimeoutError: slow"


def test_an_item_without_a_datetime_is_an_input_error() -> None:
    from datetime import UTC, datetime

    import pystac

    from sn9cloud.stac.items import item_datetime

    item = pystac.Item("sar-x", None, None, datetime(2023, 2, 7, tzinfo=UTC), {})
    item.datetime = None  # as an item can arrive from an API, with no time at all
    with pytest.raises(InputError) as e:
        item_datetime(item)
    o = outcome(e.value)
    assert (o.kind, o.message) == ("input", "item sar-x: no datetime (neither datetime nor "
                                            "start_datetime)")
