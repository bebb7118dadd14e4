"""A notification endpoint the local Graph can reach: any ASGI app served over HTTPS on 127.0.0.1 in a
background thread, with the local Graph's server certificate (valid for 127.0.0.1 and localhost, issued by
the CA the local Graph trusts for outgoing calls). Tests and the benchmark put the connector's notification
handler, or a recording stub, behind it; Graph requires https notification URLs, so no relaxation is needed.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn

from localgraph.tls import TlsMaterial


class EndpointServer:
    """``with EndpointServer(app, graph.tls) as server: server.url("/notifications/graph")``."""

    def __init__(self, app: Any, tls: TlsMaterial) -> None:
        self._app = app
        self._tls = tls
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.origin = ""

    def url(self, path: str) -> str:
        return f"{self.origin}{path}"

    def start(self) -> EndpointServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.origin = f"https://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(
            self._app,
            ssl_certfile=str(self._tls.server_cert_file),
            ssl_keyfile=str(self._tls.server_key_file),
            log_level="critical",  # a stop with idle keep-alive connections is not an error here
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="notification-endpoint", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the notification endpoint did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=0.5)
            if self._thread.is_alive() and self._server is not None:
                self._server.force_exit = True
            self._thread.join(timeout=10)

    def __enter__(self) -> EndpointServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
