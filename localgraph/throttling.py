"""Graph's cost model and throttling, plus injectable faults.

Costs follow Graph's identity-and-access service limits [docs/graph-behaviour.md section 5]: resource units (RU) per
request (list users 2, group members 3, transitive members 5, memberOf 2, applications 2, getByIds 5,
any other GET 1, writes 1; ``$select`` -1, ``$expand`` +1, ``$top`` < 20 -1, never below 1) drawn from a
token bucket per app+tenant of 3,500 / 5,000 / 8,000 RU per 10 s (tenants under 50 / 50-500 / over 500
users); writes also draw on 3,000 per 150 s. Intune (``deviceManagement``) has budgets of its own, counted
in requests, not resource units: 2,000 requests per 20 s per app and tenant (200 for writes) and 4,000 per
20 s per tenant across apps (400 for writes) [docs/graph-behaviour.md section 11; Learn:
graph/throttling-limits, "Intune devices service limits"]; its 429 may come without ``Retry-After``, as
reported for Intune (``intune_retry_after``). A request that does not fit gets 429 ``TooManyRequests`` with ``Retry-After`` in whole
seconds (time until the bucket holds enough), and the bucket stays closed until then: a client that
retries before Retry-After has elapsed is throttled again, one that waits gets through (Dev Proxy's
RetryAfterPlugin behaves the same way) [docs/graph-behaviour.md section 5].

Faults (for tests): rules that answer matching requests with 429 (with or without ``Retry-After``) or a
5xx burst, by count, by period or at random from a seed.
"""

from __future__ import annotations

import math
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any

from localgraph.errors import GraphError

READ_COSTS = {
    "/users": 2,
    "/groups/{id}/members": 3,
    "/groups/{id}/members/{cast}": 3,
    "/groups/{id}/transitiveMembers": 5,
    "/groups/{id}/transitiveMembers/{cast}": 5,
    "/users/{id}/memberOf": 2,
    "/users/{id}/memberOf/{cast}": 2,
    # transitiveMemberOf is not in Graph's cost table, so it is "any other GET": 1 RU.
    "/applications": 2,
}
POST_COSTS = {"/directoryObjects/getByIds": 5}
WRITE_METHODS = {"POST", "PATCH", "PUT", "DELETE"}


def request_cost(method: str, template: str, query: dict[str, str]) -> tuple[int, bool]:
    """(resource units, is a write) for a request matched to a route template."""
    if template == "/$batch":
        return 0, False
    write = method in WRITE_METHODS and template not in POST_COSTS
    base = (
        POST_COSTS.get(template, 1)
        if method == "POST"
        else (READ_COSTS.get(template, 1) if method == "GET" else 1)
    )
    cost = base
    if "$select" in query:
        cost -= 1
    if "$expand" in query:
        cost += 1
    top = query.get("$top")
    if top is not None and top.isdigit() and int(top) < 20:
        cost -= 1
    return max(1, cost), write


@dataclass
class Bucket:
    """A token bucket: ``capacity`` units, refilled evenly over ``window_s``."""

    capacity: float
    window_s: float
    level: float = -1.0
    updated: float = 0.0

    def __post_init__(self) -> None:
        if self.level < 0:
            self.level = self.capacity
        self.updated = time.monotonic()

    def _refill(self, now: float) -> None:
        rate = self.capacity / self.window_s
        self.level = min(self.capacity, self.level + (now - self.updated) * rate)
        self.updated = now

    def wait_for(self, cost: float) -> float:
        """Seconds until ``cost`` fits (0 if it fits now). Does not take."""
        now = time.monotonic()
        self._refill(now)
        if self.level >= cost:
            return 0.0
        return (cost - self.level) * self.window_s / self.capacity

    def take(self, cost: float) -> None:
        self.level -= cost

    def used_fraction(self) -> float:
        return 1.0 - self.level / self.capacity


def budget_for(users: int) -> int:
    """RU per 10 s for the app+tenant pair, by tenant size (S/M/L)."""
    if users < 50:
        return 3500
    if users <= 500:
        return 5000
    return 8000


class Throttle:
    """The budgets of the (single) app+tenant pair. ``settings`` (a GraphSettings) may override the
    resource-unit budget and window at run time (``resource_unit_budget``, ``resource_unit_window_s``)."""

    def __init__(self, users: int, settings: Any = None) -> None:
        self.users = users
        self.settings = settings
        self.reads = Bucket(budget_for(users), 10.0)
        self.writes = Bucket(3000, 150.0)
        # Intune: per app (app id -> (requests, writes)) and per tenant across apps (requests, writes).
        self.intune_apps: dict[str, tuple[Bucket, Bucket]] = {}
        self.intune_tenant: tuple[Bucket, Bucket] | None = None
        self._intune_config: tuple[float, ...] = ()
        # bucket -> monotonic time before which it answers 429 whatever its level (see the module doc)
        self.closed_until: dict[int, float] = {}

    def resize(self, users: int) -> None:
        self.users = users
        self.reads = Bucket(budget_for(users), 10.0)

    def _configure(self) -> None:
        if self.settings is None:
            return
        capacity = self.settings.resource_unit_budget or budget_for(self.users)
        window = self.settings.resource_unit_window_s
        bucket = self.reads
        if bucket.capacity != capacity or bucket.window_s != window:
            bucket._refill(time.monotonic())
            bucket.capacity, bucket.window_s = float(capacity), float(window)
            bucket.level = min(bucket.level, bucket.capacity)
            self.closed_until.clear()  # a new budget: Retry-After promises made under the old one lapse

    def _intune_buckets(self, write: bool, tenant_id: str, app_id: str) -> list[tuple[Bucket, int, str]]:
        settings = self.settings
        config = (
            (settings.intune_app_requests, settings.intune_app_writes, settings.intune_tenant_requests,
             settings.intune_tenant_writes, settings.intune_window_s)
            if settings is not None else (2000, 200, 4000, 400, 20.0)
        )  # fmt: skip
        if config != self._intune_config or self.intune_tenant is None:
            for bucket in [
                *(b for pair in self.intune_apps.values() for b in pair),
                *(self.intune_tenant or ()),
            ]:
                self.closed_until.pop(id(bucket), None)
            self._intune_config = config
            self.intune_apps.clear()
            self.intune_tenant = (Bucket(config[2], config[4]), Bucket(config[3], config[4]))
        window = config[4]
        app = self.intune_apps.get(app_id)
        if app is None:
            app = self.intune_apps[app_id] = (Bucket(config[0], window), Bucket(config[1], window))
        # UNCONFIRMED: Intune's throttle-scope header values; these follow the identity limits' form.
        buckets = [
            (app[0], 1, f"Tenant_Application/Intune/{app_id}/{tenant_id}"),
            (self.intune_tenant[0], 1, f"Tenant/Intune/{tenant_id}"),
        ]
        if write:
            buckets += [
                (app[1], 1, f"Tenant_Application/IntuneWrite/{app_id}/{tenant_id}"),
                (self.intune_tenant[1], 1, f"Tenant/IntuneWrite/{tenant_id}"),
            ]
        return buckets

    def admit(
        self, template: str, cost: int, write: bool, *, with_retry_after: bool, tenant_id: str, app_id: str
    ):
        """Take the request's cost or raise 429 as Graph does. Returns headers for the response."""
        self._configure()
        intune = template.startswith("/deviceManagement")
        if intune:
            buckets = self._intune_buckets(write, tenant_id, app_id)
            if self.settings is not None:
                with_retry_after = self.settings.intune_retry_after
        else:
            buckets = [(self.reads, cost, f"Tenant_Application/ReadWrite/{app_id}/{tenant_id}")]
            if write:
                buckets.append((self.writes, 1, f"Tenant_Application/Write/{app_id}/{tenant_id}"))
        now = time.monotonic()
        for bucket, amount, scope in buckets:
            closed = self.closed_until.get(id(bucket), 0.0) - now
            wait = max(closed, bucket.wait_for(amount))
            if wait > 0:
                retry_after = max(1, math.ceil(wait))
                if closed <= 0:
                    self.closed_until[id(bucket)] = now + retry_after
                if intune:
                    raise intune_throttled(
                        retry_after if with_retry_after else None, {"x-ms-throttle-scope": scope}
                    )
                raise throttled(
                    retry_after if with_retry_after else None,
                    {
                        "x-ms-throttle-scope": scope,
                        "x-ms-throttle-information": "WriteLimitExceeded"
                        if bucket is self.writes
                        else "ResourceUnitLimitExceeded",
                    },
                )
        for bucket, amount, _ in buckets:
            bucket.take(amount)
        used = self.reads.used_fraction()
        return {"x-ms-throttle-limit-percentage": f"{used + 0.8:.1f}"} if used > 0.8 and not intune else {}


def format_retry_after(seconds: float) -> str:
    """Whole seconds as an integer ("2"), anything else as given ("2.128")."""
    return str(int(seconds)) if float(seconds).is_integer() else str(seconds)


def throttled(retry_after: float | None, extra: dict[str, str] | None = None) -> GraphError:
    headers = dict(extra or {})
    if retry_after is not None:
        headers["Retry-After"] = format_retry_after(retry_after)
    return GraphError(
        429,
        "TooManyRequests",
        "Please retry again later.",
        headers=headers,
        inner={"code": "429", "message": "Please retry after", "status": "429"},
    )


def intune_throttled(retry_after: float | None, extra: dict[str, str] | None = None) -> GraphError:
    """Intune's 429: ``{"error": {"code": "TooManyRequests", "message": "An error has occurred.",
    "details": [], ...}}`` (a capture published by MSEndpointMgr) [docs/graph-behaviour.md section 11]."""
    headers = dict(extra or {})
    if retry_after is not None:
        headers["Retry-After"] = format_retry_after(retry_after)
    return GraphError(
        429,
        "TooManyRequests",
        "An error has occurred.",
        headers=headers,
        details=[],
    )


_FAULT_MESSAGES = {
    500: ("InternalServerError", "An internal server error occurred."),
    502: ("BadGateway", "Bad gateway."),
    503: ("ServiceUnavailable", "The service is temporarily unavailable. Please retry later."),
    504: ("GatewayTimeout", "The operation has timed out."),
}


@dataclass
class FaultRule:
    """Answer matching requests with ``status`` instead of serving them.

    Matching: ``method`` (any if None) and ``path`` (a regex searched in the Graph path; any if None),
    ``in_batch`` whether batch steps are eligible. Which matching requests fail: the next ``count``
    (then the rule is spent), or every ``every``-th, or each with ``probability`` (seeded).
    """

    status: int = 429
    retry_after: float | None = 2.0  # for 429/503: the Retry-After header; None: no header
    method: str | None = None
    path: str | None = None
    count: int | None = None
    every: int | None = None
    probability: float | None = None
    in_batch: bool = True
    seed: int = 0
    seen: int = 0
    fired: int = 0
    _rng: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.status, int) or not 400 <= self.status <= 599:
            raise ValueError("fault status must be an HTTP error status (400-599)")
        if self.path is not None:
            try:
                re.compile(self.path)  # a bad pattern is a bad rule, not an error at request time
            except re.error as exc:
                raise ValueError(f"fault path is not a regular expression: {exc}") from None
        for name in ("count", "every"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"fault {name} must be a positive integer")
        if self.probability is not None and not 0 <= self.probability <= 1:
            raise ValueError("fault probability must be between 0 and 1")

    def applies(self, method: str, path: str, in_batch: bool) -> bool:
        if self.method and self.method.upper() != method:
            return False
        if self.path and not re.search(self.path, path, re.IGNORECASE):
            return False
        if in_batch and not self.in_batch:
            return False
        if self.count is not None and self.fired >= self.count:
            return False
        self.seen += 1
        if self.every is not None:
            hit = self.seen % self.every == 0
        elif self.probability is not None:
            if self._rng is None:
                self._rng = random.Random(self.seed)
            hit = self._rng.random() < self.probability
        else:
            hit = True
        if hit:
            self.fired += 1
        return hit

    def error(self) -> GraphError:
        if self.status == 429:
            return throttled(
                self.retry_after,
                {
                    "x-ms-throttle-scope": "Tenant_Application/ReadWrite",
                    "x-ms-throttle-information": "CPULimitExceeded",
                },
            )
        code, message = _FAULT_MESSAGES.get(self.status, ("UnknownError", "An error occurred."))
        headers = (
            {"Retry-After": format_retry_after(self.retry_after)} if self.retry_after is not None else {}
        )
        return GraphError(self.status, code, message, headers=headers)


@dataclass
class Faults:
    rules: list[FaultRule] = field(default_factory=list)

    def check(self, method: str, path: str, in_batch: bool) -> None:
        for rule in self.rules:
            if rule.applies(method, path, in_batch):
                raise rule.error()

    def replace(self, specs: list[dict[str, Any]]) -> None:
        allowed = set(FaultRule.__dataclass_fields__) - {"seen", "fired", "_rng"}
        rules = []
        for spec in specs:
            unknown = set(spec) - allowed
            if unknown:
                raise ValueError(f"unknown fault fields: {', '.join(sorted(unknown))}")
            rules.append(FaultRule(**spec))
        self.rules = rules

    def describe(self) -> list[dict[str, Any]]:
        return [
            {k: getattr(r, k) for k in FaultRule.__dataclass_fields__ if not k.startswith("_")}
            for r in self.rules
        ]
