"""Graph errors, translated in ONE place and classified by what the caller must do next (:class:`Action`).

Graph answers ``{"error": {"code", "message", "innerError": {"request-id", ...}, "details"?}}``. Clients branch
on ``code`` and the status, never on ``message`` (Graph's documented contract, docs/graph-behaviour.md
section 6); the one exception is cited where it is made. :func:`translate` is the only place that looks at a
failed response's status; everything else catches these classes or asks for their ``action``.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

import httpx

from shared.retry import Action


class GraphError(Exception):
    """A failed Graph call. ``status`` 0 means no HTTP answer (connection failure, deadline)."""

    #: what the caller should do next (a class default; the retry table may say otherwise for one error)
    action: Action = Action.FIX

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        code: str = "",
        request_id: str | None = None,
        details: list[dict[str, Any]] | None = None,
        method: str = "",
        url: str = "",
        action: Action | None = None,
    ) -> None:
        super().__init__(message)
        if action is not None:
            self.action = action
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        self.details = details or []
        self.method = method
        self.url = url

    def __str__(self) -> str:
        return self._text(self.message)

    def _text(self, message: str) -> str:
        where = f" ({self.method} {self.url})" if self.method else ""
        ident = f" [request-id {self.request_id}]" if self.request_id else ""
        status = f"{self.status} " if self.status else ""
        code = f"{self.code}: " if self.code else ""
        return f"{status}{code}{message}{where}{ident}"

    def redacted(self) -> str:
        """The text to log: as ``str()``, with UPN-like tokens in Graph's message replaced
        (:func:`redact_text`; the URL is redacted already). ``str()`` keeps Graph's message whole: it is what
        the run history and the failure record show administrators, who need to know which object failed
        (they can read the objects anyway); logs travel further (Application Insights) and keep nothing
        personal."""
        return self._text(redact_text(self.message))

    def detail_codes(self) -> set[str]:
        return {str(d.get("code")) for d in self.details if isinstance(d, dict)}


class BadRequest(GraphError):
    """400 and other client errors that will not succeed if repeated: fix the request or the config."""


class NotFound(GraphError):
    """404: the object (or the member, the manager, the photo) does not exist."""

    action = Action.NONE


class Conflict(BadRequest):
    """A uniqueness conflict (``details[].code == ObjectConflict``) or an already existing reference."""

    action = Action.NONE


class AuthenticationFailed(GraphError):
    """401 from Graph, or the identity platform refused the credential."""


class Forbidden(GraphError):
    """403: the app lacks a permission (application role) or a directory role."""


class Throttled(GraphError):
    """429 that outlasted the run's deadline."""

    action = Action.RETRY


class ServiceUnavailable(GraphError):
    """5xx, connection failures, timeouts: transient, or the outcome of a write is unknown."""

    action = Action.RETRY


class DeltaTokenExpired(GraphError):
    """A delta link Graph no longer honours (``syncStateNotFound``, ``resyncRequired``, 410 Gone):
    the caller must start a full resync."""

    action = Action.RESYNC


class PagingError(GraphError):
    """The page loop met a link it has already followed (the service looped)."""


_BY_STATUS: dict[int, type[GraphError]] = {
    401: AuthenticationFailed,
    403: Forbidden,
    404: NotFound,
    410: DeltaTokenExpired,
    429: Throttled,
}
_DELTA_CODES = {"syncstatenotfound", "resyncrequired", "syncstateinvalid"}
# Adding a member that is already in the group answers 400 ``Request_BadRequest``, a code shared with every
# other bad request; Graph documents the case ("returns 400 Bad Request ... when the object is already a
# member of the group", https://learn.microsoft.com/graph/api/group-post-members) but gives it no code of its
# own, so this one case is told by its documented message (docs/graph-behaviour.md section 6).
_MEMBER_ALREADY_PRESENT = "one or more added object references already exist"


def parse_error_body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def translate(
    status: int, error: dict[str, Any], *, request_id: str | None, method: str = "", url: str = ""
) -> GraphError:
    """Turn a failed answer (status + Graph's error object) into a typed error."""
    code = str(error.get("code") or "")
    message = str(error.get("message") or f"HTTP {status}")
    inner = error.get("innerError") or error.get("innererror") or {}
    request_id = request_id or (inner.get("request-id") if isinstance(inner, dict) else None)
    details = error.get("details") if isinstance(error.get("details"), list) else None
    cls: type[GraphError]
    if code.lower() in _DELTA_CODES:
        cls = DeltaTokenExpired
    elif status in _BY_STATUS:
        cls = _BY_STATUS[status]
    elif status >= 500:
        cls = ServiceUnavailable
    elif status == 400 and (
        any(isinstance(d, dict) and d.get("code") == "ObjectConflict" for d in details or ())
        or (code == "Request_BadRequest" and message.lower().startswith(_MEMBER_ALREADY_PRESENT))
    ):
        cls = Conflict
    elif status == 409:
        cls = Conflict
    else:
        cls = BadRequest
    return cls(
        message, status=status, code=code, request_id=request_id, details=details, method=method, url=url
    )


def from_response(response: httpx.Response, decided: Action | None = None) -> GraphError:
    """The typed error for a failed answer. ``decided``: what the retry table said for this call; it wins
    when it knows more than the class (a 503 to a POST: LOOKUP; retries exhausted: still RETRY)."""
    error = translate(
        response.status_code,
        parse_error_body(response),
        request_id=response.headers.get("request-id"),
        method=response.request.method,
        url=redact_url(str(response.request.url)),
    )
    if decided in (Action.RETRY, Action.LOOKUP):
        error.action = decided
    return error


_TOKEN_PARAMETERS = frozenset({"$skiptoken", "$deltatoken"})
_PERSONAL_PARAMETERS = frozenset({"$filter", "$search"})
REDACTED = "…"


def redact_url(url: str) -> str:
    """A URL safe to log: no personal data, no resumable tokens.

    - ``$filter`` and ``$search`` values are replaced (they hold names, UPNs, mail addresses);
    - path segments that hold a UPN or mail address (``/users/jo@contoso.com``, ``users('jo@…')``) are
      replaced;
    - skip and delta tokens are cut short (they can be long and are credentials of a sort: they resume
      someone's query). Object ids (GUIDs) stay: they identify, they reveal nothing by themselves.
    """
    base, _, query = url.partition("?")
    scheme, sep, rest = base.partition("://")
    if sep:
        host, _, path = rest.partition("/")
        segments = path.split("/")
        base = (
            f"{scheme}://{host}/" + "/".join(_redact_segment(segment) for segment in segments)
            if path
            else base
        )
    else:
        base = "/".join(_redact_segment(segment) for segment in base.split("/"))
    if not query:
        return base
    parts = []
    for part in query.split("&"):
        key, eq, value = part.partition("=")
        name = unquote(key).lower()
        if not name.startswith("$"):
            name = f"${name}"
        if eq and name in _PERSONAL_PARAMETERS:
            value = REDACTED
        elif eq and name in _TOKEN_PARAMETERS and len(value) > 8:
            value = value[:6] + REDACTED
        parts.append(f"{key}{eq}{value}")
    return f"{base}?{'&'.join(parts)}"


def _redact_segment(segment: str) -> str:
    return REDACTED if "@" in unquote(segment) else segment


# A UPN or mail address in free text: a token with an "@" (or "%40") inside, the rule redact_url applies to a
# path segment. Quotes, brackets, commas and whitespace end a token ("Resource 'jo@contoso.com' does not exist").
_UPN_LIKE = re.compile(r"[^\s'\"()<>\[\]{},;]+(?:@|%40)[^\s'\"()<>\[\]{},;]+", re.IGNORECASE)


def redact_text(text: str) -> str:
    """``text`` safe to log: UPN-like tokens (anything with an ``@`` inside) replaced, as in URLs."""
    return _UPN_LIKE.sub(REDACTED, text)
