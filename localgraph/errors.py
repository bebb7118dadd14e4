"""Graph's error envelope, raised by handlers and rendered in one place."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any


class GraphError(Exception):
    """An error response as Graph sends it: status code plus ``{"error": {...}}``.

    Clients branch on ``code`` (Graph's documented contract); ``message`` is realistic text.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        inner: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}
        self.inner = inner or {}

    def body(self, request_id: str, client_request_id: str | None) -> dict[str, Any]:
        inner: dict[str, Any] = {
            "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
            "request-id": request_id,
            "client-request-id": client_request_id or request_id,
        }
        inner.update(self.inner)
        error: dict[str, Any] = {"code": self.code, "message": self.message, "innerError": inner}
        if self.details is not None:
            error["details"] = self.details
        return {"error": error}


def not_found(object_id: str) -> GraphError:
    return GraphError(
        404,
        "Request_ResourceNotFound",
        f"Resource '{object_id}' does not exist or one of its queried reference-property objects are not present.",
    )


def bad_request(message: str, code: str = "Request_BadRequest") -> GraphError:
    return GraphError(400, code, message)


def unsupported_query(message: str) -> GraphError:
    return GraphError(400, "Request_UnsupportedQuery", message)


def conflict(prop: str) -> GraphError:
    message = f"Another object with the same value for property {prop} already exists."
    return GraphError(
        400,
        "Request_BadRequest",
        message,
        details=[{"code": "ObjectConflict", "message": message, "target": prop}],
    )


def new_request_id() -> str:
    return str(uuid.uuid4())
