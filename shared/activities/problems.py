"""Failures of an activity as RFC 9457 problems, with honest HTTP status codes.

- 400 the request is invalid (every invalid field named in ``errors``), or Graph refused it as a bad request;
- 403 / 404 / 409 Graph's refusal (the connector's app lacks a permission; the object does not exist; it
  already exists), passed on with Graph's code and request id;
- 422 the ``Idempotency-Key`` was used before with another body;
- 502 Graph failed or could not be reached (or refused the connector's credential);
- 503 Graph throttled (with ``Retry-After``) or is unavailable.

Graph errors are classified once (:mod:`shared.graph.errors`); :func:`from_graph_error` only chooses the
HTTP status for each class.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import ValidationError

from shared.activities.contract import FieldProblem, MembershipOutcome, Problem
from shared.graph.errors import (
    AuthenticationFailed,
    BadRequest,
    Conflict,
    Forbidden,
    GraphError,
    NotFound,
    ServiceUnavailable,
    Throttled,
)

PROBLEM_BASE = "urn:entra-graph-connector:problem:"
_TITLES = {
    400: "Bad request",
    403: "Refused by Microsoft Graph",
    404: "Not found",
    409: "Conflict",
    413: "Too large",
    422: "Idempotency key reused with another request",
    502: "Microsoft Graph failed",
    503: "Microsoft Graph is throttling or unavailable",
}


@dataclass
class ActivityError(Exception):
    """An activity that did not complete; becomes a :class:`Problem`."""

    status: int
    kind: str  # the problem type's last part: invalid-request, graph-refused, throttled, ...
    detail: str
    errors: list[FieldProblem] = field(default_factory=list)
    graph: GraphError | None = None
    retry_after_s: float | None = None
    groups: list[MembershipOutcome] | None = None
    result: dict | None = None

    def __post_init__(self) -> None:
        super().__init__(self.detail)

    def problem(self, *, activity: str | None, task: str | None, instance: str | None = None) -> Problem:
        graph = self.graph
        return Problem(
            type=PROBLEM_BASE + self.kind,
            title=_TITLES.get(self.status, "Activity failed"),
            status=self.status,
            detail=self.detail,
            instance=instance,
            exception=self.detail,
            activity=activity,
            task=task,
            errors=self.errors,
            graph_status=graph.status or None if graph else None,
            graph_code=graph.code or None if graph else None,
            graph_request_id=graph.request_id if graph else None,
            groups=self.groups,
            result=self.result,
        )

    def headers(self) -> dict[str, str]:
        if self.retry_after_s is None:
            return {}
        return {"Retry-After": str(max(1, math.ceil(self.retry_after_s)))}


def invalid(errors: Sequence[tuple[str, str]], summary: str | None = None) -> ActivityError:
    """400 naming every invalid field."""
    problems = [FieldProblem(field=where, message=message) for where, message in errors]
    detail = summary or "; ".join(f"{p.field}: {p.message}" for p in problems)
    return ActivityError(400, "invalid-request", detail, errors=problems)


def from_validation_error(exc: ValidationError) -> ActivityError:
    errors = []
    for error in exc.errors(include_input=False, include_url=False):
        where = _location(error.get("loc", ()))
        message = error.get("msg", "invalid")
        if error.get("type") == "extra_forbidden":
            message = "unknown field"
        elif error.get("type") == "missing":
            message = "required"
        errors.append((where or "(body)", message))
    return invalid(errors)


def _location(loc: Sequence[str | int]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def from_graph_error(error: GraphError, *, explanation: str | None = None) -> ActivityError:
    """The HTTP status for a Graph failure: Graph's refusals stay 4xx, upstream trouble is 502/503."""
    detail = f"Microsoft Graph: {error.status or ''} {error.code + ': ' if error.code else ''}{error.message}"
    detail = " ".join(detail.split())
    if explanation:
        detail = f"{detail}. {explanation}"
    if error.request_id:
        detail = f"{detail} (request-id {error.request_id})"
    if isinstance(error, Throttled):
        return ActivityError(503, "graph-throttled", detail, graph=error, retry_after_s=_retry_after(error))
    if isinstance(error, ServiceUnavailable):
        if error.status in (503, 504):
            return ActivityError(503, "graph-unavailable", detail, graph=error, retry_after_s=5)
        return ActivityError(502, "graph-failed", detail, graph=error)
    if isinstance(error, AuthenticationFailed):
        return ActivityError(502, "graph-authentication", detail, graph=error)
    if isinstance(error, Forbidden):
        return ActivityError(403, "graph-refused", detail, graph=error)
    if isinstance(error, NotFound):
        return ActivityError(404, "graph-not-found", detail, graph=error)
    if isinstance(error, Conflict):
        return ActivityError(409, "graph-conflict", detail, graph=error)
    if isinstance(error, BadRequest) and 400 <= error.status < 500:
        return ActivityError(
            error.status if error.status in _TITLES else 400, "graph-refused", detail, graph=error
        )
    if 400 <= error.status < 500:
        return ActivityError(400, "graph-refused", detail, graph=error)
    return ActivityError(502, "graph-failed", detail, graph=error)


def _retry_after(error: GraphError) -> float:
    seconds = getattr(error, "retry_after_s", None)
    return float(seconds) if isinstance(seconds, int | float) and seconds > 0 else 10.0
