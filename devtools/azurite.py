"""Start and stop Azurite (the Azure Storage emulator, npm package ``azurite``) for tests, the demo and
the benchmark: in-memory, on free loopback ports, one process per use.

``Azurite(cert_file=..., key_file=..., oauth=True)`` serves HTTPS and accepts OAuth bearer tokens
(``--oauth basic``: Azurite checks a token's lifetime, issuer and audience, not its signature), which is how
identity-based connections (``AzureWebJobsStorage__blobServiceUri`` and a token credential) are tested.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "devstoreaccount1"
# Azurite's well-known development key (public, documented by Microsoft; not a secret).
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def azurite_binary() -> str:
    local = ROOT / "node_modules" / ".bin" / "azurite"
    if local.exists():
        return str(local)
    found = shutil.which("azurite")
    if found:
        return found
    raise RuntimeError("Azurite is not installed: run `npm install` in the repository root (see README)")


class Azurite:
    def __init__(
        self, *, cert_file: str | Path | None = None, key_file: str | Path | None = None, oauth: bool = False
    ) -> None:
        if oauth and cert_file is None:
            raise ValueError("Azurite accepts OAuth only over HTTPS: give cert_file and key_file")
        self.ports = {"blob": _free_port(), "queue": _free_port(), "table": _free_port()}
        self.cert_file = cert_file
        self.key_file = key_file
        self.oauth = oauth
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.cert_file else "http"

    def service_uri(self, kind: str) -> str:
        """``https://127.0.0.1:<port>/devstoreaccount1``: an ``AzureWebJobsStorage__<kind>ServiceUri``."""
        return f"{self.scheme}://127.0.0.1:{self.ports[kind]}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        endpoints = ";".join(f"{kind.capitalize()}Endpoint={self.service_uri(kind)}" for kind in self.ports)
        return f"DefaultEndpointsProtocol={self.scheme};AccountName={ACCOUNT};AccountKey={KEY};{endpoints};"

    def start(self) -> Azurite:
        command = [
            azurite_binary(),
            "--silent",
            "--inMemoryPersistence",
            "--disableTelemetry",
            "--skipApiVersionCheck",
            "--loose",
            "--blobHost", "127.0.0.1", "--blobPort", str(self.ports["blob"]),
            "--queueHost", "127.0.0.1", "--queuePort", str(self.ports["queue"]),
            "--tableHost", "127.0.0.1", "--tablePort", str(self.ports["table"]),
        ]  # fmt: skip
        if self.cert_file is not None:
            command += ["--cert", str(self.cert_file), "--key", str(self.key_file)]
        if self.oauth:
            command += ["--oauth", "basic"]
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        for port in self.ports.values():
            while True:
                if self._process.poll() is not None:
                    output = self._process.stderr.read() if self._process.stderr else b""
                    raise RuntimeError(f"Azurite exited: {output.decode(errors='replace')}")
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError("Azurite did not start within 30 s") from None
                    time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
            self._process = None

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
