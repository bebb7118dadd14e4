"""What to do after a failure: one :class:`Action` per outcome, decided by one table.

Every caller asks here, never looks at a status code itself: the Graph client for a single call and for each
step of a ``$batch``, the runner for "will another delivery of the queue message help?", the task lease's
renewer for "is this renewal failure transient?".

- 429 (any method): always retried, after ``Retry-After`` (seconds or an HTTP date) or, without it,
  exponential backoff with full jitter. Never abandoned merely because the wait is long: only the run's
  deadline stops it (docs/graph-behaviour.md section 5).
- 503/504: retried for idempotent methods (GET, PUT, PATCH, DELETE), honouring ``Retry-After``.
  A POST whose outcome is unknown is not re-sent: the action is LOOKUP (look the object up instead).
- 500/502: retried a few times for GET only.
- Connection failures before the request was sent (connect errors): retried for every method; failures
  after it may have been processed (read errors, timeouts): idempotent methods only (azure-core's retry
  policy draws the same line: ``azure/core/pipeline/policies/_retry.py``).
- A server certificate that is not trusted: FIX (repeating cannot help).
- Storage and identity-platform errors from the Azure SDKs (after their own retries): unreachable, or 408,
  429, 500, 502, 503, 504: RETRY; anything else: FIX.
"""

from __future__ import annotations

import random
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum

import httpx
from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError


class Action(StrEnum):
    """What the caller does next."""

    FIX = "fix"  # the request or the configuration is wrong: repeating cannot help
    RETRY = "retry"  # transient: the same call may succeed later
    RESYNC = "resync"  # a delta link Graph no longer honours: read everything again
    LOOKUP = "lookup"  # the outcome of a write is unknown: look the object up before repeating it
    NONE = "none"  # a definite answer (not found, already exists): nothing to repeat


IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class Rule:
    """Retried for ``methods`` (None: every method) up to ``limit`` attempts (None: until the deadline);
    for other methods the outcome is unknown (LOOKUP for writes)."""

    methods: frozenset[str] | None
    limit: int | None


STATUS_RULES: dict[int, Rule] = {
    429: Rule(None, None),
    503: Rule(IDEMPOTENT, 12),
    504: Rule(IDEMPOTENT, 12),
    500: Rule(frozenset({"GET"}), 4),
    502: Rule(frozenset({"GET"}), 4),
}
EXCEPTION_RULES: tuple[tuple[type[Exception], Rule], ...] = (
    (httpx.ConnectError, Rule(None, 8)),
    (httpx.ConnectTimeout, Rule(None, 8)),
    (httpx.PoolTimeout, Rule(None, 8)),
    (httpx.ReadTimeout, Rule(IDEMPOTENT, 6)),
    (httpx.WriteError, Rule(IDEMPOTENT, 6)),
    (httpx.ReadError, Rule(IDEMPOTENT, 6)),
    (httpx.RemoteProtocolError, Rule(IDEMPOTENT, 6)),
)
STORAGE_TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Decision:
    action: Action
    wait_s: float | None = None  # with RETRY: how long to wait first


FINAL = Decision(Action.FIX)


def _certificate_refused(error: BaseException) -> bool:
    seen: BaseException | None = error
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: a number (possibly fractional) or an HTTP date.

    None when absent or unreadable; a negative, infinite or NaN number is unreadable too (the caller then
    backs off), not "retry now" nor "never". A date already past means "now" (0).
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            moment = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())
    return seconds if 0.0 <= seconds < float("inf") else None


@dataclass(frozen=True)
class RetryPolicy:
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 60.0
    min_wait_s: float = 0.0  # floor for every wait (a Retry-After of 0 still means "not yet")

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Full-jitter exponential backoff for the ``attempt``-th retry (1-based)."""
        ceiling = min(self.backoff_cap_s, self.backoff_base_s * (2 ** (attempt - 1)))
        return (rng or random).uniform(ceiling / 2, ceiling)

    def _apply(self, rule: Rule | None, method: str, attempt: int, retry_after: float | None) -> Decision:
        if rule is None:
            return FINAL
        if rule.methods is not None and method.upper() not in rule.methods:
            # The server may have acted: a write is not repeated blindly.
            return Decision(Action.LOOKUP if method.upper() not in IDEMPOTENT else Action.FIX)
        if rule.limit is not None and attempt > rule.limit:
            return Decision(Action.RETRY)  # still transient, but not by this call: the caller decides
        wait = retry_after if retry_after is not None else self.backoff(attempt)
        return Decision(Action.RETRY, max(wait, self.min_wait_s))

    def decide_status(self, method: str, status: int, attempt: int, retry_after: float | None) -> Decision:
        """After an HTTP answer of ``status`` to the ``attempt``-th try (1-based)."""
        return self._apply(STATUS_RULES.get(status), method, attempt, retry_after)

    def decide_exception(self, method: str, error: BaseException, attempt: int) -> Decision:
        """After a transport failure (no HTTP answer)."""
        if _certificate_refused(error):
            return FINAL  # the server's certificate is not trusted: repeating cannot help
        rule = next((rule for cls, rule in EXCEPTION_RULES if isinstance(error, cls)), None)
        return self._apply(rule, method, attempt, None)

    def after_status(self, method: str, status: int, attempt: int, retry_after: float | None) -> float | None:
        """Seconds to wait before retrying, or None if this answer is final for this call."""
        return self.decide_status(method, status, attempt, retry_after).wait_s

    def after_exception(self, method: str, error: BaseException, attempt: int) -> float | None:
        return self.decide_exception(method, error, attempt).wait_s


def classify(error: BaseException) -> Action:
    """The action for a failure that reached a caller: a Graph error carries its own; Azure SDK (storage,
    identity platform) errors are transient when unreachable or answered 408/429/5xx."""
    action = getattr(error, "action", None)
    if isinstance(action, Action):
        return action
    if isinstance(error, ServiceRequestError | ServiceResponseError):
        return Action.RETRY  # storage or identity platform unreachable, after the SDK's own retries
    if isinstance(error, HttpResponseError):
        return Action.RETRY if (error.status_code or 0) in STORAGE_TRANSIENT_STATUSES else Action.FIX
    if isinstance(error, httpx.TransportError):
        return RetryPolicy().decide_exception("GET", error, 1).action
    return Action.FIX


def transient(error: BaseException) -> bool:
    """Worth trying again later (another delivery of the queue message, another lease renewal)."""
    return classify(error) is Action.RETRY
