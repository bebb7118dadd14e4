"""Framework-free request/response types and the Graph route table.

Every Graph path is served by a plain function ``handler(ctx, req, **path_params) -> GraphResponse``.
The same dispatch serves direct HTTP calls and the steps of a ``$batch``, so a step behaves exactly like
the request it stands for (auth, costs, throttling, errors).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from localgraph.errors import GraphError


@dataclass
class Caller:
    """Who the access token says is calling."""

    client_id: str
    roles: frozenset[str]
    app_only: bool = True


_HAS_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_EMPTY_SEGMENTS = re.compile(r"/{2,}")


@dataclass
class GraphRequest:
    method: str
    path: str  # decoded, relative to the version root, starting with "/" (e.g. "/users/abc/memberOf")
    query: dict[str, str]  # decoded; system query option names lower-cased ("$filter")
    headers: dict[str, str]  # lower-cased names
    body: bytes
    base_url: str  # e.g. "https://127.0.0.1:8443/v1.0"
    raw_query: str = ""
    caller: Caller | None = None
    in_batch: bool = False
    request_id: str = ""

    @classmethod
    def from_url(
        cls, method: str, url: str, headers: dict[str, str], body: bytes, base_url: str, **extra: Any
    ) -> GraphRequest:
        """Build from a URL relative to the version root (``users?$top=5``) or an absolute one."""
        if not _HAS_SCHEME.match(url):
            url = "/" + url.lstrip("/")  # "//users" is a path with an empty segment, not a host
        parts = urlsplit(url)
        # Empty segments are dropped: Microsoft's Python SDK sends ".../v1.0//users" (its base URL keeps
        # httpx's trailing slash) and Graph serves it as "/v1.0/users".
        path = unquote(_EMPTY_SEGMENTS.sub("/", parts.path))
        if not path.startswith("/"):
            path = "/" + path
        return cls(
            method=method.upper(),
            path=path.rstrip("/") or "/",
            query=parse_query(parts.query),
            headers={k.lower(): v for k, v in headers.items()},
            body=body,
            base_url=base_url,
            raw_query=parts.query,
            **extra,
        )

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def eventual(self) -> bool:
        return (self.header("ConsistencyLevel") or "").strip().lower() == "eventual"

    def json(self) -> Any:
        import json

        if not self.body or not self.body.strip():
            raise GraphError(400, "BadRequest", "Empty Payload. JSON content expected.")
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise GraphError(400, "BadRequest", f"Unable to read JSON request payload. {exc}") from exc


def parse_query(raw: str) -> dict[str, str]:
    query: dict[str, str] = {}
    for key, value in parse_qsl(raw, keep_blank_values=True):
        name = key.strip()
        query[name.lower() if name.startswith("$") else name] = value
    return query


@dataclass
class GraphResponse:
    status: int = 200
    body: Any = None  # dict/list -> JSON; bytes -> raw; str -> text/plain; None -> empty
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None


Handler = Callable[..., GraphResponse]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: str
    regex: re.Pattern[str]
    handler: Handler
    template: str  # the pattern, for the request log and costs ("/groups/{id}/members")


_SEGMENT_PARAM = re.compile(r"^\{(\w+)\}$")

# A type-cast segment: a type name qualified by the schema's namespace or by its alias. Graph's v1.0 schema
# declares ``Namespace="microsoft.graph" Alias="graph"``, so ``microsoft.graph.user`` and ``graph.user`` name
# the same cast (the SDKs send the alias form) [OData CSDL 4.01 section 5.3; Graph v1.0 CSDL].
CAST = r"(?:microsoft\.)?graph\.[A-Za-z_]\w*"
_CAST_SEGMENT = re.compile(f"^{CAST}$", re.IGNORECASE)


def is_cast(segment: str) -> bool:
    """Whether a path segment is a type cast (``graph.user``, ``microsoft.graph.user``)."""
    return _CAST_SEGMENT.match(segment) is not None


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """``/groups/{id}/members/$ref`` -> a case-insensitive regex with named groups.

    ``{cast}`` matches only a type cast; any other parameter matches a segment that is not one, so a cast
    is never taken for an object id. ``delta`` also matches ``microsoft.graph.delta``, ``graph.delta`` and
    ``delta()``, as Graph accepts all of them.
    """
    parts = []
    for segment in pattern.strip("/").split("/"):
        match = _SEGMENT_PARAM.match(segment)
        if match and match.group(1) == "cast":
            parts.append(f"(?P<cast>{CAST})")
        elif match:
            parts.append(f"(?P<{match.group(1)}>(?!{CAST}(?:/|$))[^/]+)")
        elif segment == "delta":
            parts.append(r"(?:(?:microsoft\.)?graph\.)?delta(?:\(\))?")
        else:
            parts.append(re.escape(segment))
    return re.compile("^/" + "/".join(parts) + "$", re.IGNORECASE)


class Router:
    def __init__(self) -> None:
        self.routes: list[Route] = []

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.routes.append(Route(method, pattern, compile_pattern(pattern), handler, pattern))
            return handler

        return register

    def include(self, other: Router) -> None:
        self.routes.extend(other.routes)

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        allowed = False
        for route in self.routes:
            found = route.regex.match(path)
            if found is None:
                continue
            if route.method == method:
                return route, found.groupdict()
            allowed = True
        if allowed:
            raise GraphError(
                405, "Request_BadRequest", "Specified HTTP method is not allowed for the request target."
            )
        # Graph's URI parser names the first segment it cannot resolve (a beta-only relationship such as
        # managedDevices/{id}/detectedApps), else the path's last segment.
        from localgraph.paths import unknown_segment  # paths imports this module

        segment = unknown_segment(path) or path.strip("/").split("/")[-1] or path
        raise GraphError(400, "BadRequest", f"Resource not found for the segment '{segment}'.")
