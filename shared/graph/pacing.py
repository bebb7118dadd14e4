"""Pacing requests by a service's own budget, instead of collecting its 429s.

Intune's devices service allows each app 2,000 requests per 20 seconds in a tenant, whatever the method,
and every step of a ``$batch`` counts (docs/graph-behaviour.md section 11, "Intune throttling";
https://learn.microsoft.com/en-us/graph/throttling-limits#intune-service-limits). A
:class:`ServiceBudget` sends at most ``requests`` within any ``window_s`` (a sliding window of send times),
which also keeps a token bucket of that capacity and rate from running dry, so a whole run stays within
the budget and Intune never has to refuse. Paths are matched by their first segment under the version
root (``/deviceManagement/...``).

The budget is per Graph client, i.e. per connector per process: instances of the Function App scaled out
each pace themselves, and other apps of the tenant have budgets of their own (the per-tenant limit of all
apps together, 4,000, is not tracked).

Directory reads (users, groups, devices, applications ...) draw on Graph's identity-and-access budget, in
resource units: 8,000 RU per 10 s per app and tenant in a tenant of more than 500 users, each request
charged by a documented table (docs/graph-behaviour.md section 5). A :class:`UnitBudget` keeps the batched
fan-out (member pages, sub-queries: nearly all of a large read's units) within a share of it (90%), and
counts single requests (the chains of pages, whose every round trip is on the run's critical path) without
ever holding them back. When the fan-out ran unpaced, it emptied the bucket in bursts; Graph then closes the
bucket for whole seconds, and a users page that arrived in such a second waited a second or more: at a
million users, 1,377 throttled answers and a minute on the chain of users pages.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

INTUNE_REQUESTS = 2000
INTUNE_WINDOW_S = 20.0
DIRECTORY_UNITS = 8000  # RU per window per app and tenant, tenants over 500 users
DIRECTORY_WINDOW_S = 10.0
FANOUT_SHARE = 0.9  # of the directory budget, for batched fan-out; the rest is the page chains'
MARGIN_S = 0.25  # send times are not arrival times: a little slack for the way there


@dataclass
class ServiceBudget:
    """At most ``requests`` requests to paths under ``prefix`` within any ``window_s`` seconds."""

    prefix: str  # "/deviceManagement": the first path segment, matched without regard to case
    requests: int = INTUNE_REQUESTS
    window_s: float = INTUNE_WINDOW_S
    used: int = 0  # requests paced so far (all time)
    waited_s: float = 0.0  # time spent waiting for the budget (all time)
    _sent: deque[float] = field(default_factory=deque, init=False, repr=False)
    _lock: asyncio.Lock | None = field(default=None, init=False, repr=False)

    def covers(self, path: str) -> bool:
        """Whether a path relative to the version root (``/deviceManagement/...``) is this service's."""
        first = "/" + path.lstrip("/").split("/", 1)[0].split("?", 1)[0]
        return first.lower() == self.prefix.lower()

    async def take(self, count: int = 1) -> float:
        """Wait until ``count`` more requests fit, and count them as sent. Returns the seconds waited."""
        if count <= 0:
            return 0.0
        if self._lock is None:
            self._lock = asyncio.Lock()
        waited = 0.0
        async with self._lock:  # first come, first served
            remaining = count
            while remaining:
                # A batch's steps are sent together: they are counted at the moment they all fit.
                step = min(remaining, self.requests)
                sent = self._sent
                window = self.window_s + MARGIN_S
                while True:
                    now = time.monotonic()
                    while sent and sent[0] <= now - window:
                        sent.popleft()
                    excess = len(sent) + step - self.requests
                    if excess <= 0:
                        break
                    pause = sent[excess - 1] + window - now  # until enough of the oldest leave the window
                    await asyncio.sleep(pause)
                    waited += pause
                now = time.monotonic()
                sent.extend([now] * step)
                self.used += step
                remaining -= step
        self.waited_s += waited
        return waited

    def in_window(self) -> int:
        """Requests sent within the last window (how much of the budget is in use now)."""
        now = time.monotonic()
        return sum(1 for t in self._sent if t > now - self.window_s)


# The identity-and-access resources (first path segment, lower case) and the documented base costs
# (docs/graph-behaviour.md section 5); any other GET costs 1, any write 1.
DIRECTORY_SEGMENTS = frozenset(
    {
        "users", "groups", "devices", "applications", "serviceprincipals", "contacts", "directoryobjects",
        "directoryroles", "directoryroletemplates", "organization", "domains", "me", "subscribedskus",
        "oauth2permissiongrants", "grouplifecyclepolicies", "groupsettings", "administrativeunits",
    }
)  # fmt: skip
_LIST_COSTS = {"users": 2, "applications": 2, "subscribedskus": 3}
_RELATION_COSTS = {("groups", "members"): 3, ("groups", "transitivemembers"): 5, ("users", "memberof"): 2}


def resource_units(method: str, path: str) -> int:
    """What Graph charges a request to the identity-and-access budget (``path`` relative to the version
    root, with its query), by the documented table: base cost, ``$select`` -1, ``$expand`` +1, ``$top``
    below 20 -1, never below 1."""
    path_part, _, query = path.partition("?")
    segments = [s.lower() for s in path_part.strip("/").split("/") if s]
    method = method.upper()
    if method == "POST" and segments == ["directoryobjects", "getbyids"]:
        return 5
    if method != "GET":
        return 1
    if len(segments) == 1:
        base = _LIST_COSTS.get(segments[0], 1)
    else:  # a relation: /{owner}/{id}/{relation}[/{cast}], or /me/{relation}[/{cast}] (priced as users')
        owner, rest = ("users", segments[1:]) if segments[0] == "me" else (segments[0], segments[2:])
        base = _RELATION_COSTS.get((owner, rest[0]), 1) if 0 < len(rest) <= 2 else 1
    names = {
        unquote(part.split("=", 1)[0]).lower(): unquote(part.partition("=")[2])
        for part in query.split("&")
        if part
    }
    cost = base
    if "$select" in names:
        cost -= 1
    if "$expand" in names:
        cost += 1
    top = names.get("$top", "")
    if top.isdigit() and int(top) < 20:
        cost -= 1
    return max(1, cost)


@dataclass
class UnitBudget:
    """Graph's identity-and-access budget as the client spends it: at most ``share`` of ``units`` within any
    ``window_s`` for what waits (batched fan-out); what does not wait (single requests) is only counted."""

    units: int = DIRECTORY_UNITS
    window_s: float = DIRECTORY_WINDOW_S
    share: float = FANOUT_SHARE
    used: int = 0  # units counted so far (all time)
    waited_s: float = 0.0
    _sent: deque[tuple[float, int]] = field(default_factory=deque, init=False, repr=False)
    _in_window: int = field(default=0, init=False, repr=False)
    _lock: asyncio.Lock | None = field(default=None, init=False, repr=False)

    @staticmethod
    def covers(path: str) -> bool:
        first = path.lstrip("/").split("/", 1)[0].split("?", 1)[0].lower()
        return first in DIRECTORY_SEGMENTS

    def _expire(self, now: float) -> None:
        sent, horizon = self._sent, now - self.window_s - MARGIN_S
        while sent and sent[0][0] <= horizon:
            self._in_window -= sent.popleft()[1]

    def count(self, units: int) -> None:
        """Units spent by a request that does not wait (a page of a chain)."""
        now = time.monotonic()
        self._expire(now)
        self._sent.append((now, units))
        self._in_window += units
        self.used += units

    async def take(self, units: int) -> float:
        """Wait until ``units`` more fit within the share, then count them. Returns the seconds waited."""
        if units <= 0:
            return 0.0
        if self._lock is None:
            self._lock = asyncio.Lock()
        limit = max(units, int(self.units * self.share))
        waited = 0.0
        async with self._lock:  # first come, first served
            while True:
                now = time.monotonic()
                self._expire(now)
                excess = self._in_window + units - limit
                if excess <= 0:
                    break
                freed, until = 0, now
                for at, spent in self._sent:  # until the oldest sends that free enough leave the window
                    freed += spent
                    until = at
                    if freed >= excess:
                        break
                pause = max(0.001, until + self.window_s + MARGIN_S - now)
                await asyncio.sleep(pause)
                waited += pause
            self.count(units)
        self.waited_s += waited
        return waited


@dataclass
class Pacer:
    """The budgets a Graph client paces by: Intune's (requests) and the directory's (resource units)."""

    budgets: list[ServiceBudget] = field(default_factory=lambda: [ServiceBudget("/deviceManagement")])
    directory: UnitBudget | None = field(default_factory=UnitBudget)

    def budget_for(self, path: str) -> ServiceBudget | None:
        for budget in self.budgets:
            if budget.covers(path):
                return budget
        return None

    async def before(self, requests: list[tuple[str, str]], *, batched: bool = False) -> tuple[int, float]:
        """Take what a request (or the steps of a ``$batch``: ``batched``) costs from the budgets it draws
        on; ``requests`` are (method, path relative to the version root). Returns (requests counted by a
        request budget, seconds waited)."""
        counts: dict[int, int] = {}
        units = 0
        for method, path in requests:
            budget = self.budget_for(path)
            if budget is not None:
                counts[id(budget)] = counts.get(id(budget), 0) + 1
            elif self.directory is not None and self.directory.covers(path):
                units += resource_units(method, path)
        waited = 0.0
        for budget in self.budgets:
            if id(budget) in counts:
                waited += await budget.take(counts[id(budget)])
        if units and self.directory is not None:
            if batched:
                waited += await self.directory.take(units)
            else:
                self.directory.count(units)
        return sum(counts.values()), waited


def version_path(url: str, base_url: str) -> str:
    """The path of a request URL relative to the version root (``/deviceManagement/managedDevices``)."""
    if url.startswith(base_url):
        return url[len(base_url) :] or "/"
    path = urlsplit(url).path
    base_path = urlsplit(base_url).path
    return path[len(base_path) :] if path.startswith(base_path) else path
