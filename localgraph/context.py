"""Server-wide state shared by the handlers: the tenant, settings, the request log, opaque tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from localgraph.errors import GraphError
from localgraph.tenant import Tenant


@dataclass
class GraphSettings:
    """Behaviour knobs, all changeable at run time through the control API (``PATCH /_control/settings``)."""

    latency_ms: float = 0.0  # added to every Graph HTTP response (a $batch pays it once)
    latency_jitter_ms: float = 0.0
    token_lifetime_s: int = 3599  # access tokens' expires_in
    default_page_size: int = 100
    max_page_size: int = 999
    sign_in_activity_max_page_size: int = 500
    delta_page_size: int = 200  # objects per delta page ("about 200"; not guaranteed by Graph)
    delta_member_slice: int = 500  # members@delta entries per group per page; bigger groups span pages
    delta_token_max_age_s: int = 7 * 24 * 3600  # directory delta tokens live 7 days
    delta_replays: bool = False  # repeat each page's last object at the start of the next (Graph may)
    delta_token_failure: str = "syncStateNotFound"  # or "reset" (410 Gone + Location)
    intune_page_size: int = 1000
    # A managedDevices $filter clause Intune does not support: "ignore" (as observed) or "reject" (400).
    intune_unsupported_filter: str = "ignore"
    # Intune devices service limits [docs/graph-behaviour.md section 11; Learn: graph/throttling-limits]:
    # requests per window per app and tenant (any / writes), and per tenant across all apps.
    intune_app_requests: int = 2000
    intune_app_writes: int = 200
    intune_tenant_requests: int = 4000
    intune_tenant_writes: int = 400
    intune_window_s: float = 20.0
    intune_retry_after: bool = True  # False: Intune's 429s come without Retry-After, as reported
    enforce_budgets: bool = True  # resource-unit and write budgets per app+tenant
    # Resource units per window for the app+tenant pair; 0: Graph's budget for the tenant's size
    # (3,500 / 5,000 / 8,000 RU per 10 s for under 50 / 50-500 / over 500 users) [docs/graph-behaviour.md section 5].
    resource_unit_budget: int = 0
    resource_unit_window_s: float = 10.0
    throttle_retry_after: bool = True  # False: 429s come without a Retry-After header
    shuffle_batch_responses: bool = True  # Graph may answer batch steps in any order
    premium_licence: bool = True  # signInActivity needs Entra ID P1/P2
    page_token_max_age_s: int = 3600
    # Objects examined per page of a filtered list: a selective filter gives short or empty pages that
    # still carry a nextLink, as Graph's do [docs/graph-behaviour.md section 1].
    filter_scan_per_page: int = 20_000
    # The replication window: for this long after an object is created through Graph, a GET of it by id
    # answers 404 and adding members to it (or it as a member) answers 400, as from a replica the create has
    # not reached yet (localgraph.admission) [docs/graph-behaviour.md rule 8; docs/graph-behaviour.md section 11].
    # 0: reads and links see writes at once.
    replication_delay_ms: float = 0.0

    def update(self, changes: dict[str, Any]) -> None:
        """Apply ``changes`` all or nothing; ValueError names the first bad one."""
        known = asdict(self)
        unknown = sorted(set(changes) - set(known))
        if unknown:
            raise ValueError(f"unknown settings: {', '.join(unknown)}")
        checked: dict[str, Any] = {}
        for name, value in changes.items():
            expected = type(known[name])
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, expected) or (expected is not bool and isinstance(value, bool)):
                raise ValueError(f"setting {name} must be {expected.__name__}")
            if expected in (int, float) and value < self._MINIMUM.get(name, 0):
                raise ValueError(f"setting {name} must be at least {self._MINIMUM.get(name, 0)}")
            if name == "delta_token_failure" and value not in ("syncStateNotFound", "reset"):
                raise ValueError("setting delta_token_failure must be syncStateNotFound or reset")
            if name == "intune_unsupported_filter" and value not in ("ignore", "reject"):
                raise ValueError("setting intune_unsupported_filter must be ignore or reject")
            checked[name] = value
        for name, value in checked.items():
            setattr(self, name, value)

    # Lower bounds of numeric settings (others: 0).
    _MINIMUM: ClassVar[dict[str, float]] = {
        "token_lifetime_s": 1, "default_page_size": 1, "max_page_size": 1,
        "sign_in_activity_max_page_size": 1, "delta_page_size": 1, "delta_member_slice": 1,
        "intune_page_size": 1, "resource_unit_window_s": 0.001,
        "filter_scan_per_page": 1, "intune_app_requests": 1, "intune_app_writes": 1,
        "intune_tenant_requests": 1, "intune_tenant_writes": 1, "intune_window_s": 0.001,
    }  # fmt: skip


@dataclass
class LogEntry:
    at: float
    method: str
    path: str
    template: str
    status: int
    resource_units: int
    in_batch: bool
    throttled: bool
    service_s: float = 0.0  # the server's own time on an HTTP request (handler and rendering, no latency)


@dataclass
class RequestLog:
    """What clients asked for: read by tests and the benchmark through ``/_control/requests``."""

    entries: list[LogEntry] = field(default_factory=list)
    token_requests: int = 0
    token_failures: int = 0
    http_calls: int = 0  # Graph HTTP requests, a $batch counting once

    def add(self, entry: LogEntry) -> None:
        self.entries.append(entry)
        if not entry.in_batch:
            self.http_calls += 1

    def summary(self) -> dict[str, Any]:
        by_template: Counter[str] = Counter()
        batched: Counter[str] = Counter()
        statuses: Counter[int] = Counter()
        service: Counter[str] = Counter()
        units = 0
        throttled = 0
        for entry in self.entries:
            key = f"{entry.method} {entry.template}"
            (batched if entry.in_batch else by_template)[key] += 1
            if not entry.in_batch:
                service[key] += entry.service_s
            statuses[entry.status] += 1
            throttled += entry.throttled
            if not entry.throttled:
                units += entry.resource_units
        return {
            "http_calls": self.http_calls,
            "batch_steps": sum(batched.values()),
            "resource_units": units,
            "throttled": throttled,
            "token_requests": self.token_requests,
            "token_failures": self.token_failures,
            "by_path": dict(sorted(by_template.items())),
            "batched_by_path": dict(sorted(batched.items())),
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            # The server's own time per HTTP request (it shares the machine with its clients), by path.
            "service_s": sum(service.values()),
            "service_s_by_path": {k: round(v, 6) for k, v in sorted(service.items())},
            "process_cpu_s": time.process_time(),
        }

    def clear(self) -> None:
        self.entries.clear()
        self.token_requests = self.token_failures = self.http_calls = 0


class TokenCodec:
    """Opaque, tamper-evident tokens (skip tokens, delta tokens): base64url(JSON) plus an HMAC."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or os.urandom(32)

    def encode(self, payload: dict[str, Any]) -> str:
        raw = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        mac = hmac.new(self._key, raw, hashlib.sha256).digest()[:12]
        return base64.urlsafe_b64encode(mac + raw).decode().rstrip("=")

    def decode(self, token: str) -> dict[str, Any] | None:
        try:
            blob = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (ValueError, TypeError):
            return None
        mac, raw = blob[:12], blob[12:]
        if not hmac.compare_digest(mac, hmac.new(self._key, raw, hashlib.sha256).digest()[:12]):
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return None


def query_fingerprint(path: str, query: dict[str, str], exclude: tuple[str, ...] = ("$skiptoken",)) -> str:
    """A short digest of a request's path and query options, so a token is only valid for its query."""
    items = sorted((k, v) for k, v in query.items() if k not in exclude)
    return hashlib.sha256(json.dumps([path.lower(), items]).encode()).hexdigest()[:16]


@dataclass
class ReplicationWindow:
    """Objects created through Graph and when (monotonic seconds), by id (and a user's UPN, lower-cased),
    kept while ``settings.replication_delay_ms`` is set (the pipeline records them, localgraph.admission)."""

    created: dict[str, float] = field(default_factory=dict)

    def note(self, keys: list[str], delay_ms: float) -> None:
        now = time.monotonic()
        # Entries older than the window can no longer matter: drop them so the map stays small.
        self.created = {k: at for k, at in self.created.items() if (now - at) * 1000 < delay_ms}
        for key in keys:
            self.created[key.lower()] = now

    def fresh(self, key: str, delay_ms: float) -> bool:
        """Whether ``key`` names an object created less than ``delay_ms`` ago."""
        created = self.created.get(key.lower())
        return created is not None and (time.monotonic() - created) * 1000 < delay_ms


@dataclass
class ServerContext:
    tenant: Tenant
    settings: GraphSettings
    origin: str = ""  # https://127.0.0.1:PORT
    graph_origins: set[str] = field(default_factory=set)  # accepted token audiences
    identity_header: str = ""  # the managed identity endpoint's X-IDENTITY-HEADER secret
    managed_identity_client_id: str = ""  # the app that stands for the Function App's managed identity
    vault_secrets: dict[str, dict[str, Any]] = field(default_factory=dict)  # Key Vault: name -> secret
    tokens: TokenCodec = field(default_factory=TokenCodec)
    log: RequestLog = field(default_factory=RequestLog)
    started_at: float = field(default_factory=time.time)
    delta_generation: int = 0  # bumped to invalidate every delta token issued before
    delta_invalid_before: float = 0.0  # tokens issued before this moment are rejected
    replication: ReplicationWindow = field(default_factory=ReplicationWindow)
    # Filled in by the server: identity (token service), throttling, faults.
    identity: Any = None
    throttle: Any = None
    faults: Any = None

    def page_token(self, path: str, query: dict[str, str], cursor: Any) -> str:
        return self.tokens.encode(
            {"k": "page", "q": query_fingerprint(path, query), "c": cursor, "t": int(time.time())}
        )

    def read_page_token(self, path: str, query: dict[str, str]) -> Any:
        """The cursor of ``$skiptoken``, or None on the first page. A token from another query, a
        tampered one or an expired one is rejected as Graph rejects expired page tokens."""
        token = query.get("$skiptoken")
        if token is None:
            return None
        payload = self.tokens.decode(token)
        if (
            payload is None
            or payload.get("k") != "page"
            or payload.get("q") != query_fingerprint(path, query)
            or time.time() - payload.get("t", 0) > self.settings.page_token_max_age_s
        ):
            raise expired_page_token()
        return payload["c"]


def expired_page_token() -> GraphError:
    """Graph's answer to a page token it cannot use (expired, tampered, from another query) [docs/graph-behaviour.md section 1]."""
    return GraphError(
        400,
        "Directory_ExpiredPageToken",
        "The specified page token value has expired and can no longer be included in your request.",
    )
