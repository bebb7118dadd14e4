"""The one retry policy: a table keyed by what happened, not a chain of ifs spread over the code.

- 429 (any method): always retried, after ``Retry-After`` (seconds or an HTTP date) or, without it,
  exponential backoff with full jitter. Never abandoned merely because the wait is long: only the run's
  deadline stops it.
- 503/504: retried for idempotent methods (GET, PUT, PATCH, DELETE), honouring ``Retry-After``.
  A POST whose outcome is unknown is not re-sent: the caller looks the object up instead.
- 500/502: retried a few times for GET only.
- Connection failures before the request was sent (connect errors): retried for every method; failures
  after it may have been processed (read errors, timeouts): idempotent methods only.
- Anything else: not retried.
"""

from __future__ import annotations

import random
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE"})

# status -> (methods it is retried for, attempt limit or None for "until the deadline")
STATUS_RULES: dict[int, tuple[frozenset[str] | None, int | None]] = {
    429: (None, None),
    503: (IDEMPOTENT, 12),
    504: (IDEMPOTENT, 12),
    500: (frozenset({"GET"}), 4),
    502: (frozenset({"GET"}), 4),
}
# exception class -> (methods, attempt limit)
EXCEPTION_RULES: tuple[tuple[type[Exception], frozenset[str] | None, int], ...] = (
    (httpx.ConnectError, None, 8),
    (httpx.ConnectTimeout, None, 8),
    (httpx.PoolTimeout, None, 8),
    (httpx.ReadTimeout, IDEMPOTENT, 6),
    (httpx.WriteError, IDEMPOTENT, 6),
    (httpx.ReadError, IDEMPOTENT, 6),
    (httpx.RemoteProtocolError, IDEMPOTENT, 6),
)


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

    def after_status(self, method: str, status: int, attempt: int, retry_after: float | None) -> float | None:
        """Seconds to wait before retrying, or None if this answer is final."""
        rule = STATUS_RULES.get(status)
        if rule is None:
            return None
        methods, limit = rule
        if methods is not None and method.upper() not in methods:
            return None
        if limit is not None and attempt > limit:
            return None
        wait = retry_after if retry_after is not None else self.backoff(attempt)
        return max(wait, self.min_wait_s)

    def after_exception(self, method: str, error: Exception, attempt: int) -> float | None:
        if _certificate_refused(error):
            return None  # the server's certificate is not trusted: repeating cannot help
        for cls, methods, limit in EXCEPTION_RULES:
            if isinstance(error, cls):
                if (methods is not None and method.upper() not in methods) or attempt > limit:
                    return None
                return max(self.backoff(attempt), self.min_wait_s)
        return None
