"""At most one notification-started run per task per interval, agreed by every instance of the app.

A row per task (keyed by its stable id when the caller gives it) in the state table (PartitionKey
``_notifications``) holds the *slot*: when the last run this
module queued is planned to start. A notification at ``now``:

- if the slot is not behind ``now`` (a queued run starts no earlier than it), that run will see the change:
  nothing to do;
- otherwise the next slot is ``max(now, slot + interval)``: claimed by an ETag-conditional write (or an insert
  that fails if another instance inserted first), then a run is queued, invisible until its slot.

So the first change of a quiet period runs at once, a burst becomes one more run an interval later, every
change is followed by a run that starts after it, and concurrent instances never queue two runs for one slot
(the loser of the write re-reads and finds the slot ahead). Runs never overlap: the task lease sees to that.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.storage import threads
from shared.storage.queues import RunQueue, RunRequest, new_run_id

log = logging.getLogger(__name__)
PARTITION = "_notifications"
ATTEMPTS = 8


def _read(table: TableClient, task: str) -> dict[str, Any] | None:
    """The task's row with its ETag, or None."""
    try:
        entity = table.get_entity(PARTITION, task)
    except ResourceNotFoundError:
        return None
    return {**entity, "etag": entity.metadata["etag"]}


def _claim(table: TableClient, task: str, found: dict[str, Any] | None, slot: datetime, run_id: str) -> bool:
    entity = {"PartitionKey": PARTITION, "RowKey": task, "slot": slot, "run_id": run_id}
    try:
        if found is None:
            table.create_entity(entity)
        else:
            table.update_entity(
                entity,
                mode=UpdateMode.REPLACE,
                etag=found["etag"],
                match_condition=MatchConditions.IfNotModified,
            )
    except (ResourceExistsError, ResourceModifiedError):
        return False
    return True


async def request_run(
    table: TableClient,
    queue: RunQueue,
    task: str,
    interval_s: int,
    now: datetime | None = None,
    *,
    task_key: str | None = None,
) -> RunRequest | None:
    """Queue the task's run unless a queued one starts after ``now``; returns what was queued.

    ``task_key``: the task's stable id (``ScheduledTask.storage_key``), when the caller knows it: the request
    carries it, so the queued history row lands where the run's own rows go, and the slot row is keyed by it,
    so a rename keeps the slot."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    slot_key = task_key or task
    for _ in range(ATTEMPTS):
        found = await threads.call(_read, table, slot_key)
        slot = found["slot"].astimezone(UTC) if found and isinstance(found.get("slot"), datetime) else None
        if slot is not None and slot >= now:
            return None  # a queued run starts after this change (a run starts no earlier than planned)
        planned = now if slot is None else max(now, slot + timedelta(seconds=interval_s))
        run_id = new_run_id(planned)
        if not await threads.call(_claim, table, slot_key, found, planned, run_id):
            continue  # another instance moved the slot: look again
        request = RunRequest(
            task=task, task_key=task_key, run_id=run_id, trigger="notification", planned_at=planned
        )
        delay = max(0, round((planned - now).total_seconds()))
        await queue.enqueue(request, delay_s=delay)
        log.info("queued run %s of %s for a change notification (in %d s)", run_id, task, delay)
        return request
    log.warning("could not agree on the next notification run of %s; the schedule will catch up", task)
    return None
