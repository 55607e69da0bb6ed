"""STAC Browser over sn9cloud's results.

The browser is a static web app built once by ``deploy/stac-browser/stac-browser.sh``
with its configuration read at run time from ``config.js``. Serving it and a local catalog
from one origin means the browser needs no CORS settings and nothing beyond this machine;
a STAC API or a remote catalog is fetched by the browser itself from its own URL.
"""

from __future__ import annotations

import json
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

from sn9cloud.errors import InputError

#: where a catalog given as a local folder is served, below the browser
CATALOG_PREFIX = "/catalog/"


def check_browser_dir(path: Path | None) -> Path:
    """``path`` (the SN9CLOUD_STAC_BROWSER setting, or a checkout's build) if it holds a
    built browser."""
    if path is None or not (path / "index.html").is_file():
        raise InputError(
            f"STAC Browser is not built{f' at {path}' if path else ''}: run "
            "deploy/stac-browser/stac-browser.sh build in a checkout (needs npm), or set "
            "SN9CLOUD_STAC_BROWSER to a built copy")
    return path


def local_catalog_root(catalog: str) -> Path | None:
    """The folder of a local catalog (given as its folder or its catalog.json), or None
    for an http(s) URL; anything else is an input error."""
    if urlsplit(catalog).scheme in ("http", "https"):
        return None
    if urlsplit(catalog).scheme not in ("", "file"):
        raise InputError(f"{catalog}: the browser reads a local catalog or an http(s) URL "
                         "(a STAC API, or a catalog.json behind https)")
    p = Path(unquote(urlsplit(catalog).path) if catalog.startswith("file:") else catalog)
    if not p.exists():
        raise InputError(f"{catalog}: no such catalog folder or file")
    root = p if p.is_dir() else p.parent
    if not (root / "catalog.json").is_file():
        raise InputError(f"{catalog}: no catalog.json there (is it a published sn9cloud "
                         "catalog?)")
    try:
        doc = json.loads((root / "catalog.json").read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{root / 'catalog.json'}: not readable STAC JSON ({e})") from e
    kind = doc.get("type") if isinstance(doc, dict) else None
    if kind not in ("Catalog", "Collection"):
        raise InputError(f"{root / 'catalog.json'}: not a STAC catalog (type {kind!r})")
    return root


def config_js(catalog_url: str, title: str) -> bytes:
    """STAC Browser's run-time configuration: hash routing (a plain static server), and
    only the one catalog or API to browse."""
    cfg = {"catalogUrl": catalog_url, "catalogTitle": title, "historyMode": "hash",
           "allowExternalAccess": False}
    return f"window.STAC_BROWSER_CONFIG = {json.dumps(cfg)};\n".encode()


class _Handler(SimpleHTTPRequestHandler):
    def __init__(self, *args: Any, browser: Path, catalog: Path | None, remote: str | None,
                 title: str, **kwargs: Any) -> None:
        self._catalog, self._remote, self._title = catalog, remote, title
        super().__init__(*args, directory=str(browser), **kwargs)

    def translate_path(self, path: str) -> str:
        clean = urlsplit(path).path
        if self._catalog is not None and clean.startswith(CATALOG_PREFIX):
            root = self._catalog.resolve()
            target = (root / unquote(clean[len(CATALOG_PREFIX):])).resolve()
            # nothing outside the catalog's folder is served
            return str(target if target == root or root in target.parents
                       else root / "__outside__")
        return super().translate_path(path)

    def do_GET(self) -> None:
        if urlsplit(self.path).path == "/config.js":
            # the catalog's URL as this client reaches the server (any host name works)
            url = self._remote or (
                f"http://{self.headers.get('Host', '127.0.0.1')}{CATALOG_PREFIX}catalog.json")
            body = config_js(url, self._title)
            self.send_response(200)
            self.send_header("Content-Type", "application/javascript")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


class BrowserServer:
    """The browser (and a local catalog) on http://host:port/, in a background thread.

    ``catalog``: a local catalog folder or catalog.json, or the http(s) URL of a catalog or
    a STAC API. Use as a context manager; ``url`` is the browser's address and
    ``item_url(path)`` the page of an item JSON of a local catalog."""

    def __init__(self, catalog: str, browser_dir: Path | None,
                 host: str = "127.0.0.1", port: int = 0, title: str = "sn9cloud results"):
        self.browser_dir = check_browser_dir(browser_dir)
        self.catalog_root = local_catalog_root(catalog)
        self._host, self._port, self._title, self._catalog = host, port, title, catalog
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> BrowserServer:
        handler = partial(_Handler, browser=self.browser_dir, catalog=self.catalog_root,
                          remote=None if self.catalog_root is not None else self._catalog,
                          title=self._title)
        try:
            self._server = ThreadingHTTPServer((self._host, self._port), handler)
        except OSError as e:
            raise InputError(f"cannot serve the browser on {self._host}:{self._port}: {e}") \
                from e
        host, port = self._server.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else str(host)
        self.url = f"http://{host}:{port}/"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def item_url(self, item_json: Path) -> str:
        """The browser's page of an item JSON file of the local catalog."""
        if self.catalog_root is None:
            raise InputError("item pages by path need a local catalog")
        rel = Path(item_json).resolve().relative_to(self.catalog_root.resolve())
        return f"{self.url}#/{rel.as_posix()}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> BrowserServer:
        return self.start()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
