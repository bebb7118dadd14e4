"""Start and stop Azurite (the Azure Storage emulator, npm package ``azurite``) for tests, the demo and
the benchmark: in-memory, on free loopback ports, one process per use."""

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
    def __init__(self) -> None:
        self.ports = {"blob": _free_port(), "queue": _free_port(), "table": _free_port()}
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def connection_string(self) -> str:
        endpoints = ";".join(
            f"{kind.capitalize()}Endpoint=http://127.0.0.1:{port}/{ACCOUNT}"
            for kind, port in self.ports.items()
        )
        return f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};{endpoints};"

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
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        for port in self.ports.values():
            while True:
                if self._process.poll() is not None:
                    raise RuntimeError(
                        f"Azurite exited: {self._process.stderr.read().decode(errors='replace')}"
                    )
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
