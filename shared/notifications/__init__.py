"""Graph change notifications: a change in Entra ID starts the watching tasks' runs within seconds.

A scheduled task opts in (``change_notifications: {"enabled": true, "min_interval_seconds": 30}``). The
connector then keeps Graph subscriptions for what the task reads and lets a notification only say "look
now": delta stays the source of truth, and the task's schedule stays the safety net (Graph never announces
notifications it dropped for users and groups). Facts and sources: docs/graph-behaviour.md section 12.

- :mod:`~shared.notifications.address`: the public notification URL (host name and function key).
- :mod:`~shared.notifications.store`: one row per subscription in the state table.
- :mod:`~shared.notifications.upkeep`: the timer's work: create, renew, reauthorize, re-create, delete.
- :mod:`~shared.notifications.endpoint`: the HTTP endpoint's work: the validation handshake, ``clientState``,
  lifecycle events, and queueing runs.
- :mod:`~shared.notifications.debounce`: at most one run per task per interval, agreed across instances.

One subscription per connector and resource (``users``, ``groups``) serves every task of that connector that
watches it: Graph refuses a second subscription with the same ``changeType`` and ``resource`` for an app (409).
"""
