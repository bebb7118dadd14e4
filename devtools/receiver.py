"""A local stand-in for the platform's web API: an HTTPS receiver of delivery batches (tests, benchmark).

It accepts ``POST /batches`` with a delivery batch (schema/delivery-batch.schema.json), checks the
credential (an API key, or an Entra bearer token the local Graph's identity platform issued for the
expected audience), honours ``Idempotency-Key`` as the IETF draft and Stripe describe (the same key and
body: the first answer again, nothing applied twice; the same key with another body: 422), records what it
applied, and fails on request (:meth:`PlatformReceiver.fail`). It serves TLS with a certificate of the
local Graph's test CA, so a connector configured with ``CONNECTOR_CA_BUNDLE`` trusts it.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from shared.delivery.batches import DeliveryBatch


@dataclass
class Applied:
    batch_id: str
    records: list[dict[str, Any]]
    streams: dict[str, Any]
    headers: dict[str, str]


@dataclass
class _Failure:
    status: int
    times: int
    after: int  # applied batches before the failures start
    apply_first: bool  # apply the batch, then answer the failure (the sender cannot know it landed)
    retry_after: str | None
    echo_key: bool = False  # a careless receiver: the answer repeats the credential it got


@dataclass
class PlatformReceiver:
    cert_file: str
    key_file: str
    api_key: str | None = None  # expected in X-Api-Key
    token_check: Callable[[str], bool] | None = None  # validates a bearer token
    keep_records: bool = True  # False: count only (the benchmark)
    validate: bool = True  # check each batch against the documented format (shared.delivery.batches)
    on_apply: Callable[[Applied], None] | None = None  # called (in the server's thread) after each apply
    applied: list[Applied] = field(default_factory=list)
    attempts: list[tuple[str, int]] = field(default_factory=list)  # (Idempotency-Key, status answered)
    records_applied: int = 0
    bytes_received: int = 0
    _keys: dict[str, str] = field(default_factory=dict)  # key -> sha256 of the body first applied
    _failures: list[_Failure] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    # ------------------------------------------------------------------------------------------ control
    def fail(
        self,
        status: int = 503,
        *,
        times: int = 1,
        after: int = 0,
        apply_first: bool = False,
        retry_after: str | None = "0",
        echo_key: bool = False,
    ) -> None:
        """Answer ``status`` to the next ``times`` requests once ``after`` batches have been applied."""
        with self._lock:
            self._failures.append(_Failure(status, times, after, apply_first, retry_after, echo_key))

    def heal(self) -> None:
        with self._lock:
            self._failures.clear()

    def records(self) -> list[dict[str, Any]]:
        return [r for batch in self.applied for r in batch.records]

    # -------------------------------------------------------------------------------------------- app
    def _authorized(self, request: Request) -> bool:
        if self.api_key is not None:
            return request.headers.get("x-api-key") == self.api_key
        if self.token_check is not None:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            return scheme.lower() == "bearer" and self.token_check(token)
        return True

    def _apply(self, key: str, digest: str, document: dict[str, Any], headers: dict[str, str]) -> None:
        self._keys[key] = digest
        records = document.get("records") or []
        self.records_applied += len(records)
        applied = Applied(key, records if self.keep_records else [], document.get("streams") or {}, headers)
        self.applied.append(applied)
        if self.on_apply is not None:
            self.on_apply(applied)

    async def _receive(self, request: Request) -> Response:
        body = await request.body()
        key = request.headers.get("idempotency-key", "")
        with self._lock:
            self.bytes_received += len(body)
            status = self._decide(request, key, body)
            self.attempts.append((key, status.status_code))
        return status

    def _decide(self, request: Request, key: str, body: bytes) -> Response:
        if not self._authorized(request):
            return JSONResponse({"title": "unauthorized"}, status_code=401)
        if not key:
            return JSONResponse({"title": "Idempotency-Key is required"}, status_code=400)
        digest = hashlib.sha256(body).hexdigest()
        failure = next((f for f in self._failures if f.times > 0 and len(self.applied) >= f.after), None)
        if key in self._keys:
            if self._keys[key] != digest:
                return JSONResponse({"title": "Idempotency-Key reused with another body"}, status_code=422)
            if failure is None:
                return JSONResponse({"status": "duplicate", "batch_id": key})
        try:
            document = json.loads(body)
            if self.validate:
                DeliveryBatch.model_validate_json(body)
        except ValidationError as exc:
            errors = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()[:5]]
            return JSONResponse({"title": "not a delivery batch", "errors": errors}, status_code=400)
        except ValueError:
            return JSONResponse({"title": "not JSON"}, status_code=400)
        if document.get("batch_id") != key:
            return JSONResponse({"title": "batch_id differs from Idempotency-Key"}, status_code=400)
        if failure is not None:
            failure.times -= 1
            if failure.apply_first and key not in self._keys:
                self._apply(key, digest, document, dict(request.headers))
            headers = {"Retry-After": failure.retry_after} if failure.retry_after is not None else {}
            answer: dict[str, Any] = {"title": "failing on request"}
            if failure.echo_key:
                credential = request.headers.get("x-api-key") or request.headers.get("authorization", "")
                answer["detail"] = f"refused credential {credential}"
            return JSONResponse(answer, status_code=failure.status, headers=headers)
        self._apply(key, digest, document, dict(request.headers))
        return JSONResponse({"status": "accepted", "batch_id": key, "records": len(document["records"])})

    async def _stats(self, request: Request) -> Response:
        with self._lock:
            return JSONResponse(
                {
                    "batches_applied": len(self.applied),
                    "records_applied": self.records_applied,
                    "requests": len(self.attempts),
                    "bytes_received": self.bytes_received,
                }
            )

    # -------------------------------------------------------------------------------------- lifecycle
    def start(self) -> PlatformReceiver:
        app = Starlette(
            routes=[
                Route("/batches", self._receive, methods=["POST"]),
                Route("/stats", self._stats, methods=["GET"]),
            ]
        )
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.url = f"https://127.0.0.1:{sock.getsockname()[1]}/batches"
        config = uvicorn.Config(
            app,
            ssl_certfile=self.cert_file,
            ssl_keyfile=self.key_file,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="receiver", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the receiver did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=0.3)
        if self._thread.is_alive():
            self._server.force_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> PlatformReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    """``python -m devtools.receiver --cert PEM --key PEM [--api-key KEY]``: serve until stopped; prints the
    URL as a JSON line once it listens (the benchmark runs it in its own process)."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(prog="python -m devtools.receiver")
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--api-key")
    parser.add_argument("--no-validate", action="store_true")
    args = parser.parse_args()
    receiver = PlatformReceiver(
        args.cert, args.key, api_key=args.api_key, keep_records=False, validate=not args.no_validate
    ).start()
    print(json.dumps({"url": receiver.url}), flush=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    receiver.stop()


if __name__ == "__main__":
    main()
