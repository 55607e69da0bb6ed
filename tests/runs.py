"""The prepared run the CLI makes by default (or with some settings changed), for tests
that need a result's id or call the library below the CLI."""

from __future__ import annotations

from typing import Any

from sn9cloud.config import RegistrationConfig
from sn9cloud.prepared import PreparedRun
from sn9cloud.settings import Settings


def default_run(**values: Any) -> PreparedRun:
    """``values``: dotted settings, e.g. ``matcher="baseline"``, ``**{"engine.model": ...}``."""
    config = RegistrationConfig().with_values(values, "test")
    return PreparedRun.of(config, Settings.from_env())


def result_id(optical_id: str, sar_id: str, **values: Any) -> str:
    return default_run(**values).result_id(optical_id, sar_id)
