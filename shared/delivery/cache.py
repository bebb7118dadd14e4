"""When the task cache is cleared: each day at the task's UTC hours, and on demand; never by a restart.

Clearing sets ``resend_all`` in the task's delivery state: the next delivery sends every record once, then
the cache holds what it sent. It keeps the delivered view's ids (so objects that vanish meanwhile are still
marked), keeps the objects marked before as marked (they are not marked again; one that comes back later is
delivered as restored, with the marking's restored value), and never touches delta links (they are in the
extract's own state row). The daily clear is evaluated by the next run after the hour (the state row
remembers when the cache was last cleared), so a restart neither clears nor skips.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.storage.delivery import DeliveryState, DeliveryStateStore


def last_clear_moment(hours: list[int], now: datetime) -> datetime | None:
    """The latest moment at one of ``hours`` (UTC, on the hour) not after ``now``."""
    if not hours:
        return None
    now = now.astimezone(UTC)
    today = now.replace(minute=0, second=0, microsecond=0)
    for days_back in (0, 1):
        day = today - timedelta(days=days_back)
        candidates = [day.replace(hour=h) for h in hours if day.replace(hour=h) <= now]
        if candidates:
            return max(candidates)
    return None


def daily_clear_due(state: DeliveryState, hours: list[int], now: datetime) -> bool:
    """A configured clear hour has passed since the cache was last cleared (or built)."""
    if state.delivered is None:
        return False  # nothing cached: the next delivery sends everything anyway
    moment = last_clear_moment(hours, now)
    since = state.cleared_at or state.delivered.delivered_at
    return moment is not None and moment > since


def cleared(state: DeliveryState, now: datetime) -> DeliveryState:
    return state.model_copy(update={"cleared_at": now, "resend_all": state.delivered is not None})


async def clear(store: DeliveryStateStore, task: str, now: datetime | None = None) -> DeliveryState:
    """Clear a task's cache on demand (``python -m shared.cli clear-cache TASK``)."""
    state = cleared(await store.get(task), now or datetime.now(UTC))
    await store.put(task, state)
    return state
