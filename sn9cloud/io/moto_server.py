"""moto's real S3 server in a process of its own, for tests and benchmarks.

A subprocess rather than moto's `ThreadedMotoServer` where the server must not share the
caller's GIL (a benchmark timing the pipeline in the same process) or needs environment of
its own (``INITIAL_NO_AUTH_ACTION_COUNT=0`` to enforce authentication). moto is a dev
dependency: nothing in the product imports this module.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator


@contextlib.contextmanager
def moto_server(env: dict[str, str] | None = None,
                timeout_s: float = 10.0) -> Iterator[str]:
    """Start ``python -m moto.server`` on a free local port; yield its URL once it accepts
    connections; stop it on exit."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(port)], env={**os.environ, **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto server on port {port} did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
