"""The notification endpoint's work, host-agnostic (the HTTP trigger in functions/notifications.py adapts it).

- **Validation handshake:** a POST with ``validationToken`` in the query is answered at once: 200,
  ``text/plain``, the token as received (URL-decoded by the host), within Graph's 10 s.
- **Notifications:** every item's ``clientState`` is compared, in constant time, with the secret stored for its
  ``subscriptionId``. An item that does not match (or names no subscription of ours) is ignored: it starts
  nothing, and the answer is the same 202, so a forger learns nothing (Graph's guidance). Valid items only
  queue work (:mod:`~shared.notifications.debounce`): the answer comes well within Graph's 3 s.
- **Lifecycle events** (``reauthorizationRequired``, the only one Graph sends for users and groups; ``missed``
  and ``subscriptionRemoved`` handled too): marked on the subscription's row for the upkeep timer, and a
  reauthorization is attempted at once within a short budget.

docs/graph-behaviour.md section 12.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.notifications import debounce
from shared.notifications.store import SubscriptionRecord, SubscriptionStore
from shared.services import Services

log = logging.getLogger(__name__)
REAUTHORIZE_BUDGET_S = 2.0  # of Graph's 3 s; the upkeep timer finishes what does not fit


@dataclass(frozen=True)
class Answer:
    status: int
    body: str = ""
    content_type: str = "text/plain"


ACCEPTED = Answer(202)


def _state_matches(item: Mapping[str, Any], record: SubscriptionRecord | None) -> bool:
    given = item.get("clientState")
    if record is None or not isinstance(given, str):
        return False
    return hmac.compare_digest(given.encode(), record.client_state.encode())


async def receive(services: Services, query: Mapping[str, str], body: bytes) -> Answer:
    """Answer one POST from Graph (``query``: the decoded query parameters)."""
    token = query.get("validationToken")
    if token is not None:
        return Answer(200, token, "text/plain")
    try:
        items = json.loads(body)["value"]
        if not isinstance(items, list):
            raise TypeError("value is not a list")
    except (ValueError, KeyError, TypeError):
        log.warning("a notification POST without a {'value': [...]} body was ignored")
        return ACCEPTED
    store = SubscriptionStore(services.state.table)
    records: dict[str, SubscriptionRecord | None] = {}
    runs: dict[str, int] = {}  # task -> interval
    lifecycle: list[tuple[str, SubscriptionRecord]] = []
    ignored = 0
    for item in items:
        subscription_id = item.get("subscriptionId") if isinstance(item, dict) else None
        if not isinstance(subscription_id, str):
            ignored += 1
            continue
        if subscription_id not in records:
            records[subscription_id] = await store.by_subscription_id(subscription_id)
        record = records[subscription_id]
        if not _state_matches(item, record):
            ignored += 1
            continue
        assert record is not None
        event = item.get("lifecycleEvent")
        if event:
            lifecycle.append((str(event), record))
            if event == "missed":  # changes were lost: let delta catch up now
                runs.update(record.tasks)
        else:
            runs.update(record.tasks)
    if ignored:
        log.warning(
            "%d notification item(s) with an unknown subscription or a wrong clientState ignored", ignored
        )
    keys = await _task_keys(services, runs) if runs else {}
    for task, interval in sorted(runs.items()):
        await debounce.request_run(
            services.state.table, services.queue, task, interval, task_key=keys.get(task)
        )
    for event, record in lifecycle:
        await _lifecycle(services, store, event, record)
    return ACCEPTED


async def _task_keys(services: Services, names: Mapping[str, int]) -> dict[str, str]:
    """The stable id of each named task (what its history, state and output are keyed by), from one read of
    the stored configuration. A name it does not know (renamed since the upkeep last wrote the subscription's
    tasks) or a configuration it cannot read is left out: that run is queued by name and records why it
    cannot run, and the upkeep brings the subscription's tasks up to date."""
    try:
        config = await services.config_store.load()
    except ValueError as exc:  # ConfigError among them: the stored configuration is invalid
        log.warning("task ids for notified runs not resolved: %s", type(exc).__name__)
        return {}
    keys: dict[str, str] = {}
    for name in names:
        try:
            keys[name] = config.task(name).storage_key
        except KeyError:
            continue
    return keys


async def _lifecycle(
    services: Services, store: SubscriptionStore, event: str, record: SubscriptionRecord
) -> None:
    from shared.notifications import upkeep  # upkeep imports the Graph client; only lifecycle needs it

    log.info("lifecycle event %s for the %s subscription of %s", event, record.resource, record.connector)
    if event == "subscriptionRemoved":
        record.expires_at = datetime.now(UTC)  # the upkeep timer creates it again
        await store.put(record)
        return
    if event != "reauthorizationRequired":
        return
    record.reauthorize_requested_at = datetime.now(UTC)
    await store.put(record)
    if upkeep.within_quiet(record.renewed_at, record.reauthorize_requested_at):
        return  # renewed in the last 10 minutes: the upkeep timer reauthorizes later [section 12]
    try:
        await asyncio.wait_for(upkeep.reauthorize(services, store, record), REAUTHORIZE_BUDGET_S)
    except Exception as exc:  # the timer retries; the answer to Graph must not fail
        log.warning("reauthorization of %s deferred to the upkeep timer: %s", record.key, type(exc).__name__)
