"""The registration configuration: one typed object from the edge (CLI flags, a TOML file,
a task's parameters) down to the engine, with every default written once, beside the
stage that reads it (`RegistrationOptions`, and each matcher's ``options_type``).

What a result records and hashes is the matcher's *effective* configuration: the settings
it read, and which detector weights (`Matcher.effective_config`). Its canonical hash is
part of every result's identity (`sn9cloud.identity`).

A config file is TOML with the matcher at the top level, the engine's settings under
``[engine]`` and each matcher's own under ``[<matcher>]``; ``sn9cloud config`` prints the
whole configuration with every default and what it means.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from sn9cloud.engine.registration import RegistrationOptions
from sn9cloud.errors import ConfigError
from sn9cloud.matchers import MATCHERS, Matcher, Resources
from sn9cloud.matchers.base import settings_dict

ENGINE = "engine"


def _default_options() -> dict[str, Any]:
    return {m.name: m.options_type() for m in MATCHERS if m.options_type is not None}


@dataclass(frozen=True)
class RegistrationConfig:
    matcher: str = MATCHERS.names()[0]
    engine: RegistrationOptions = field(default_factory=RegistrationOptions)
    #: matcher name -> that matcher's settings (its ``options_type``)
    options: dict[str, Any] = field(default_factory=_default_options)

    def __post_init__(self) -> None:
        MATCHERS.get(self.matcher)  # an unknown matcher is a ConfigError now, not later

    @property
    def matcher_impl(self) -> Matcher:
        return MATCHERS.get(self.matcher)

    def matcher_options(self, name: str) -> Any:
        """The settings of matcher ``name`` (its defaults where none were given)."""
        if name in self.options:
            return self.options[name]
        t = MATCHERS.get(name).options_type
        return t() if t is not None else None

    def to_dict(self) -> dict[str, Any]:
        """Every setting, each matcher's section included."""
        out: dict[str, Any] = {"matcher": self.matcher, ENGINE: settings_dict(self.engine)}
        for m in MATCHERS:
            if m.options_type is not None:
                out[m.name] = settings_dict(self.matcher_options(m.name))
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "configuration") -> RegistrationConfig:
        """Validated: an unknown key or a bad value is a `ConfigError` naming ``source``
        and the key."""
        sections = {ENGINE: RegistrationOptions, **{
            m.name: m.options_type for m in MATCHERS if m.options_type is not None}}
        for key in d:
            if key != "matcher" and key not in sections:
                raise ConfigError(f"{source}: unknown key {key!r} (known: matcher, "
                                  f"{', '.join(sections)})")
        matcher = d.get("matcher", cls.matcher)
        if not isinstance(matcher, str) or matcher not in MATCHERS.names():
            raise ConfigError(f"{source}: matcher = {matcher!r}: choose one of "
                              f"{', '.join(MATCHERS.names())}")
        parsed: dict[str, Any] = {}
        for name, t in sections.items():
            values = d.get(name, {})
            if not isinstance(values, Mapping):
                raise ConfigError(f"{source}: {name} must be a table of settings, got "
                                  f"{values!r}")
            parsed[name] = parse_section(t, values, name, source)
        engine = parsed.pop(ENGINE)
        return cls(matcher=matcher, engine=engine, options=parsed)

    def with_values(self, values: Mapping[str, Any], source: str) -> RegistrationConfig:
        """This configuration with some settings replaced (dotted keys: ``matcher``,
        ``engine.model``...), validated like a file; ``None`` values are left out."""
        d = self.to_dict()
        for key, v in values.items():
            if v is None:
                continue
            section, _, name = key.rpartition(".")
            if section:
                d[section][name] = v
            else:
                d[name] = v
        return RegistrationConfig.from_dict(d, source)

    def effective(self, resources: Resources) -> dict[str, Any]:
        """What the result of a run with this configuration records and hashes."""
        return self.matcher_impl.effective_config(self, resources)

    def to_toml(self) -> str:
        """Every setting as a config file, each with what it means."""
        lines = ["# sn9cloud registration configuration (sn9cloud config)",
                 f"# matcher: one of {', '.join(MATCHERS.names())}",
                 f"matcher = {_toml(self.matcher)}"]
        for section, obj in [(ENGINE, self.engine), *(
                (m.name, self.matcher_options(m.name)) for m in MATCHERS
                if m.options_type is not None)]:
            lines += ["", f"[{section}]"]
            for f in dataclasses.fields(obj):
                doc = f.metadata.get("doc", "")
                rng = _range_text(f)
                if doc or rng:
                    lines.append(f"# {doc}{' ' + rng if rng else ''}".rstrip())
                lines.append(f"{f.name} = {_toml(getattr(obj, f.name))}")
        return "\n".join(lines) + "\n"


def load_config(path: str | Path) -> RegistrationConfig:
    """A configuration from a TOML file; every problem is one `ConfigError` line naming
    the file (and the key)."""
    p = Path(path)
    source = f"config {p}"
    try:
        text = p.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{source}: is a folder, not a TOML file") from None
    except OSError as e:
        raise ConfigError(f"{source}: cannot be read ({e.strerror})") from e
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: not TOML (not UTF-8 text)") from None
    try:
        d = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: not TOML ({e})") from e
    return RegistrationConfig.from_dict(d, source)


def config_hash(effective: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of an effective configuration (sorted keys, no spaces,
    floats as Python writes them): equal settings always give equal hashes."""
    return hashlib.sha256(canonical_json(effective).encode()).hexdigest()


def canonical_json(d: Mapping[str, Any]) -> str:
    return json.dumps(d, sort_keys=True, separators=(",", ":"), allow_nan=False)


# ---- validation of one section, from its dataclass -------------------------------------

def parse_section(cls: type, values: Mapping[str, Any], section: str, source: str) -> Any:
    """An instance of dataclass ``cls`` from ``values``, checked against each field's type
    and the range its `setting` declares."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(f"{source}: unknown key {section}.{key!r} (known: "
                              f"{', '.join(fields)})")
        kwargs[key] = _value(hints[key], fields[key], value, f"{section}.{key}", source)
    return cls(**kwargs)


def _value(t: Any, f: dataclasses.Field[Any], v: Any, key: str, source: str) -> Any:
    where = f"{source}: {key} = {v!r}"
    lo, hi = f.metadata.get("lo"), f.metadata.get("hi")
    if get_origin(t) is Literal:
        choices = get_args(t)
        if v not in choices:
            raise ConfigError(f"{where}: choose one of {', '.join(map(str, choices))}")
        return v
    if t is bool:
        if not isinstance(v, bool):
            raise ConfigError(f"{where}: want true or false")
        return v
    if t is int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(f"{where}: want a whole number")
        return _in_range(v, lo, hi, where)
    if t is float:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise ConfigError(f"{where}: want a finite number")
        return _in_range(float(v), lo, hi, where)
    if t is str:
        if not isinstance(v, str):
            raise ConfigError(f"{where}: want a string")
        return v
    if get_origin(t) is tuple:
        (inner, _) = get_args(t)
        if not isinstance(v, list | tuple) or not v:
            raise ConfigError(f"{where}: want a non-empty list")
        return tuple(_value(inner, f, x, f"{key}[{i}]", source) for i, x in enumerate(v))
    raise TypeError(f"setting {key}: unsupported type {t!r}")  # a bug in a declaration


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _in_range(v: float, lo: float | None, hi: float | None, where: str) -> Any:
    if lo is not None and v < lo:
        raise ConfigError(f"{where}: must be at least {_num(lo)}")
    if hi is not None and v > hi:
        raise ConfigError(f"{where}: must be at most {_num(hi)}")
    return v


def _range_text(f: dataclasses.Field[Any]) -> str:
    lo, hi = f.metadata.get("lo"), f.metadata.get("hi")
    if lo is None and hi is None:
        return ""
    return f"[{'' if lo is None else _num(lo)}, {'' if hi is None else _num(hi)}]"


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")
