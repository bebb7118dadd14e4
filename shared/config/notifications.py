"""Change notifications on a scheduled task: opt in, and how often a burst of changes may start a run.

When ``enabled``, the connector keeps Graph subscriptions for what the task reads (users, groups) and a
notification from Graph queues the task's run, at most one per ``min_interval_seconds``; the task's schedule
keeps running as the safety net (Graph never announces dropped notifications for directory resources:
docs/graph-behaviour.md section 12).
"""

from __future__ import annotations

from pydantic import Field

from shared.config.fields import ConfigModel

DEFAULT_MIN_INTERVAL_S = 30


class ChangeNotifications(ConfigModel):
    """Start the task's (incremental) run within seconds of a change in Entra ID."""

    enabled: bool = Field(
        default=False,
        description="Keep Graph subscriptions for what the task reads; run on their notifications.",
    )
    min_interval_seconds: int = Field(
        default=DEFAULT_MIN_INTERVAL_S,
        ge=5,
        le=86_400,
        description="At most one notification-started run per this many seconds; a burst collapses into one run.",
    )
