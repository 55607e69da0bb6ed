"""Property tests of the parsers a user (or a catalog) feeds: whatever the bytes, the
answer is a value or the project's own one-line error, never another exception."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sn9cloud.cli import _bbox
from sn9cloud.errors import InputError
from sn9cloud.io.policy import PolicyError, ReadPolicy
from sn9cloud.score import read_tiepoints
from sn9cloud.stac.catalog import load_items, parse_interval

FAST = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=5),
    max_leaves=20)


@FAST
@given(content=st.binary(max_size=400) | st.text(max_size=400).map(str.encode))
def test_tiepoint_csv_is_parsed_or_refused(tmp_path: Path, content: bytes) -> None:
    p = tmp_path / "tp.csv"
    p.write_bytes(b"sar_row,sar_col,optical_row,optical_col\n" + content)
    try:
        a = read_tiepoints(p, allow_duplicates=True)
    except InputError as e:
        assert str(e).startswith(f"tie-points {p}") and "\n" not in str(e)
    else:
        assert a.ndim == 2 and a.shape[1] == 4 and (a >= 0).all()


@FAST
@given(doc=st.fixed_dictionaries({"type": st.sampled_from(["Feature", "Catalog",
                                                           "FeatureCollection", "x"])},
                                 optional={"id": json_values, "geometry": json_values,
                                           "properties": json_values, "assets": json_values,
                                           "links": json_values, "features": json_values,
                                           "stac_version": json_values}))
def test_item_json_is_read_or_refused(tmp_path: Path, doc: dict[str, Any]) -> None:
    p = tmp_path / "doc.json"
    p.write_text(json.dumps(doc))
    try:
        loaded = load_items(str(p))
    except InputError as e:
        assert "\n" not in str(e)
    else:
        assert all(isinstance(w, str) and "\n" not in why for w, why in loaded.problems)


@FAST
@given(value=st.text(max_size=60) | st.lists(
    st.floats(allow_nan=True, allow_infinity=True), min_size=0, max_size=5).map(
        lambda xs: ",".join(map(str, xs))))
def test_bbox_option(value: str) -> None:
    try:
        b = _bbox(value)
    except click.BadParameter:
        return
    if b is not None:
        assert b[0] <= b[2] and b[1] <= b[3]


@FAST
@given(value=st.text(max_size=60) | st.datetimes().map(lambda t: t.isoformat()) |
       st.tuples(st.datetimes(), st.datetimes()).map(lambda p: f"{p[0].isoformat()}Z/"
                                                               f"{p[1].isoformat()}Z"))
def test_datetime_option(value: str) -> None:
    try:
        lo, hi = parse_interval(value)
    except InputError as e:
        assert "\n" not in str(e)
    else:
        assert lo is None or hi is None or lo <= hi


@FAST
@given(href=st.text(max_size=80))
def test_any_href_is_allowed_inside_or_refused(tmp_path: Path, href: str) -> None:
    base = tmp_path / "cat" / "catalog.json"
    policy = ReadPolicy.of([str(base)])
    try:
        loc = policy.check(href, str(base))
    except PolicyError as e:
        assert str(e).startswith("refused href") and "\n" not in str(e)
    else:
        assert loc.startswith(str(tmp_path / "cat"))


@pytest.mark.parametrize("href", ["s3://other/x.tif", "https://evil.example/x.tif",
                                  "%2e%2e/%2e%2e/x.tif", "..\\..\\x.tif", "/etc/passwd",
                                  "file://localhost/etc/passwd", "vsicurl/x", "NETCDF:x:y"])
def test_known_escapes_are_refused(tmp_path: Path, href: str) -> None:
    base = str(tmp_path / "cat" / "catalog.json")
    policy = ReadPolicy.of([base])
    try:
        loc = policy.check(href, base)
    except PolicyError:
        return
    assert loc.startswith(str(tmp_path / "cat"))  # a literal name inside the catalog
