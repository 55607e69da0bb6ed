"""The read policy: what a catalog may make sn9cloud read.

A catalog is untrusted input. Every href it names (child and item links, the raster
assets) is resolved against the document that names it and then checked here before
anything opens it: the scheme must be one we read (a local path, ``file://``, ``s3://``,
``http(s)://``), the resolved location must lie under one of the allowed prefixes (by
default the catalog's own folder, bucket prefix or URL folder; ``--allow`` and
``SN9CLOUD_ALLOW`` add more), and GDAL's own syntax (``/vsicurl/``, ``/vsizip/``, inline
VRT XML, ``DRIVER:`` connection strings) is refused outright. Local paths are compared
after symlinks are resolved, URLs after ``..`` and percent-escapes are, so neither a link
nor ``%2e%2e/`` leaves the allowed set. Each refusal is a `PolicyError` naming the href
and the rule it broke.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote, unquote, urljoin, urlsplit, urlunsplit

from sn9cloud.errors import InputError

SCHEMES = ("s3", "http", "https")
#: GDAL's virtual file systems and connection strings, anywhere in an href
_GDAL_SYNTAX = re.compile(r"(^|/)vsi[a-z0-9_]*(/|$)|^\s*<|^[A-Za-z0-9_]{2,}:[^/]",
                          re.IGNORECASE)
_DEFAULT_PORTS = {"http": 80, "https": 443}
_PATH_SAFE = "/:@!$&'()*+,;=-._~"


class PolicyError(InputError):
    """An href the read policy refuses: outside the allowed set, or not a plain location."""


def _refuse(href: str, rule: str) -> PolicyError:
    return PolicyError(f"refused href {_show(href)}: {rule}")


def _show(href: str) -> str:
    """An href fit for a message or a published document: no password, no query string
    (signed URLs carry their credentials there), no control characters."""
    clean = "".join(c if c.isprintable() else "?" for c in href)[:300]
    return strip_credentials(clean)


def strip_credentials(href: str) -> str:
    """The href without user:password@ and without its query string or fragment."""
    if not is_url(href):
        return href
    u = urlsplit(href)
    if u.scheme not in SCHEMES:
        return href
    host = u.hostname or ""
    if u.port is not None:
        host = f"{host}:{u.port}"
    return urlunsplit((u.scheme, host, u.path, "", ""))


_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(href: str) -> bool:
    return bool(_URL.match(href))


def _normal_url(href: str) -> str:
    """scheme://host[:port]/path with the path's escapes and dot segments resolved."""
    u = urlsplit(href)
    scheme = u.scheme.lower()
    try:
        port = u.port
    except ValueError as e:
        raise _refuse(href, "the port is not a number") from e
    host = (u.hostname or "").lower()
    if not host:
        raise _refuse(href, "no host or bucket")
    if scheme in _DEFAULT_PORTS and port == _DEFAULT_PORTS[scheme]:
        port = None
    path = unquote(u.path)
    if "\x00" in path:
        raise _refuse(href, "holds a NUL character")
    trailing = path.endswith("/")
    path = posixpath.normpath("/" + path.lstrip("/")) if path else "/"
    if trailing and not path.endswith("/"):
        path += "/"
    netloc = host if port is None else f"{host}:{port}"
    query = f"?{u.query}" if u.query and scheme != "s3" else ""
    return f"{scheme}://{netloc}{quote(path, safe=_PATH_SAFE)}{query}"


def _normal_path(path: str) -> str:
    if "\x00" in path:
        raise _refuse(path, "holds a NUL character")
    return os.path.realpath(path)


def normalize(href: str, base: str | None = None) -> str:
    """The absolute, normalized location of ``href`` as named in the document at
    ``base`` (None: relative to the working folder, as on a command line)."""
    if not href or not href.strip():
        raise _refuse(href, "an empty href")
    if any(ord(c) < 32 for c in href):
        raise _refuse(href, "holds control characters")
    if _GDAL_SYNTAX.search(href) and not is_url(href):
        raise _refuse(href, "GDAL virtual file systems and connection strings are not "
                            "read from a catalog")
    if is_url(href):
        scheme = urlsplit(href).scheme.lower()
        if scheme == "file":
            u = urlsplit(href)
            if u.netloc not in ("", "localhost"):
                raise _refuse(href, "a file:// URL on another host")
            return _normal_path(unquote(u.path))
        if scheme not in SCHEMES:
            raise _refuse(href, f"scheme {scheme!r} is not read (only local paths, file://, "
                                "s3://, http:// and https://)")
        if _GDAL_SYNTAX.search(unquote(urlsplit(href).path).lstrip("/")):
            raise _refuse(href, "GDAL virtual file systems are not read from a catalog")
        return _normal_url(href)
    if base is None or not is_url(base):
        if os.path.isabs(href):
            return _normal_path(href)
        folder = os.path.dirname(base) if base else os.getcwd()
        return _normal_path(os.path.join(folder, href))
    if href.startswith("/"):
        # an absolute path stays a local path, in a remote document too (a STAC API serving
        # local results names them so); the policy decides whether it may be read
        return _normal_path(href)
    if urlsplit(base).scheme == "s3":
        u = urlsplit(base)
        key = posixpath.join(posixpath.dirname(u.path), href)
        return _normal_url(f"s3://{u.netloc}{key}")
    return _normal_url(urljoin(base, href))


def folder_of(location: str) -> str:
    """The prefix that holds a document: its folder (local), key prefix or URL folder."""
    if is_url(location):
        n = _normal_url(location).split("?")[0]
        return n if n.endswith("/") else n.rsplit("/", 1)[0] + "/"
    p = _normal_path(location)
    return p if os.path.isdir(p) else os.path.dirname(p)


def allowed_prefix(value: str) -> str:
    """An allowed prefix as given (a folder, s3://bucket[/prefix], http(s)://host[/path]),
    normalized; a bare host or bucket allows all of it."""
    if is_url(value):
        n = normalize(value)
        return n.split("?")[0]
    return _normal_path(os.path.expanduser(value))


def _under(location: str, prefix: str) -> bool:
    if is_url(prefix):
        loc = location.split("?")[0]
        if prefix.endswith("/"):
            return loc.startswith(prefix)
        return loc == prefix or loc.startswith(prefix + "/")
    if is_url(location):
        return False
    return location == prefix or location.startswith(prefix.rstrip(os.sep) + os.sep)


@dataclass(frozen=True)
class ReadPolicy:
    """The prefixes a run may read under; everything else a catalog names is refused."""

    prefixes: tuple[str, ...] = ()

    @classmethod
    def of(cls, sources: Iterable[str] = (), allow: Iterable[str] = ()) -> ReadPolicy:
        """The folders of ``sources`` (the catalogs, APIs or items the user named) plus
        the ``allow`` prefixes."""
        try:
            prefixes = [folder_of(s) for s in sources] + [allowed_prefix(a) for a in allow if a]
        except PolicyError as e:
            raise InputError(f"--allow or source: {e}") from e
        return cls(tuple(dict.fromkeys(prefixes)))

    def extended(self, *more: str) -> ReadPolicy:
        added = (allowed_prefix(m) for m in more)
        return ReadPolicy(tuple(dict.fromkeys([*self.prefixes, *added])))

    def allows(self, location: str) -> bool:
        return any(_under(location, p) for p in self.prefixes)

    def check(self, href: str, base: str | None = None) -> str:
        """The normalized absolute location of ``href``, if the policy allows reading it."""
        location = normalize(href, base)
        if not self.allows(location):
            where = ", ".join(_show(p) for p in self.prefixes) or "nothing"
            raise _refuse(href, f"outside the allowed locations ({where}; --allow adds one)")
        return location
