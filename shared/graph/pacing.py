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
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from urllib.parse import urlsplit

INTUNE_REQUESTS = 2000
INTUNE_WINDOW_S = 20.0
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


@dataclass
class Pacer:
    """The budgets a Graph client paces by (Intune's by default)."""

    budgets: list[ServiceBudget] = field(default_factory=lambda: [ServiceBudget("/deviceManagement")])

    def budget_for(self, path: str) -> ServiceBudget | None:
        for budget in self.budgets:
            if budget.covers(path):
                return budget
        return None

    async def before(self, paths: list[str]) -> tuple[int, float]:
        """Take what a request (or the steps of a ``$batch``) costs from the budgets it draws on.
        Returns (requests counted, seconds waited)."""
        counts: dict[int, int] = {}
        for path in paths:
            budget = self.budget_for(path)
            if budget is not None:
                counts[id(budget)] = counts.get(id(budget), 0) + 1
        waited = 0.0
        for budget in self.budgets:
            if id(budget) in counts:
                waited += await budget.take(counts[id(budget)])
        return sum(counts.values()), waited


def version_path(url: str, base_url: str) -> str:
    """The path of a request URL relative to the version root (``/deviceManagement/managedDevices``)."""
    if url.startswith(base_url):
        return url[len(base_url) :] or "/"
    path = urlsplit(url).path
    base_path = urlsplit(base_url).path
    return path[len(base_path) :] if path.startswith(base_path) else path
