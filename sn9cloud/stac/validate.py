"""Offline validation of STAC documents against local copies of the JSON schemas.

pystac's validator fetches extension schemas over HTTPS; a disaster-response cluster (and
CI) may have no internet. Here every schema comes from a folder that mirrors the published
URLs (``stac-extensions/`` for https://stac-extensions.github.io/, ``stac/`` for
https://schemas.stacspec.org/, ``geojson/``, ``proj/``).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator, ValidationError
from jsonschema.exceptions import best_match
from referencing import Registry, Resource

PREFIXES = {
    "stac-extensions": "https://stac-extensions.github.io/",
    "stac": "https://schemas.stacspec.org/",
    "geojson": "https://geojson.org/",
    "proj": "https://proj.org/",
}
CORE = {
    "Feature": "item-spec/json-schema/item.json",
    "Collection": "collection-spec/json-schema/collection.json",
    "Catalog": "catalog-spec/json-schema/catalog.json",
}


class ValidationFailed(ValueError):
    pass


@cache
def _registry(schema_dir: str) -> Registry:
    resources = []
    root = Path(schema_dir)
    for folder, url in PREFIXES.items():
        for f in (root / folder).rglob("*.json"):
            doc = json.loads(f.read_text())
            uri = url + f.relative_to(root / folder).as_posix()
            res = Resource.from_contents(doc, default_specification=_draft7())
            resources.append((uri, res))
            if "$id" in doc:
                resources.append((doc["$id"].rstrip("#"), res))
    return Registry().with_resources(resources)


def _draft7() -> Any:
    from referencing.jsonschema import DRAFT7

    return DRAFT7


def _deepest(err: ValidationError) -> ValidationError:
    """oneOf/anyOf errors carry the instance whole; their best sub-error says what is wrong."""
    while err.context:
        # skip branches that failed only because they are for another document type
        ctx = [e for e in err.context if e.validator != "const"] or err.context
        err = best_match(ctx, key=lambda e: len(e.absolute_path))
    return err


def schema_urls(doc: dict[str, Any]) -> list[str]:
    """The core schema of the document's type and version, then its extensions'."""
    version = doc.get("stac_version", "1.1.0")
    core = f"https://schemas.stacspec.org/v{version}/{CORE[doc['type']]}"
    return [core, *doc.get("stac_extensions", [])]


def validate(doc: dict[str, Any], schema_dir: str | Path) -> list[str]:
    """Raise `ValidationFailed` naming each schema and error; return the schemas checked."""
    reg = _registry(str(schema_dir))
    errors = []
    urls = schema_urls(doc)
    for url in urls:
        try:
            schema = reg.contents(url.rstrip("#"))
        except Exception as e:
            raise ValidationFailed(f"{doc.get('id')}: no local copy of schema {url}") from e
        v = Draft7Validator(schema, registry=reg)
        for err in sorted(v.iter_errors(doc), key=lambda e: list(e.path)):
            err = _deepest(err)
            path = "/".join(str(p) for p in err.absolute_path)
            errors.append(f"{url}: {path or '(root)'}: {err.message[:200]}")
    if errors:
        raise ValidationFailed(f"{doc.get('id')}: " + "; ".join(errors[:10]))
    return urls
