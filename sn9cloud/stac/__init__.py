"""STAC in and out: reading catalogs and APIs, pairing items, building and publishing
result items."""
