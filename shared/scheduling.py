"""The scheduler tick: which tasks are due, and a run request on the queue for each.

Each task's schedule is an NCRONTAB expression (six fields, seconds first, as Azure Functions uses). The
tick remembers when it last ran; every schedule occurrence since then is due. Occurrences missed while the
app was stopped are coalesced into one run (its planned time is the latest occurrence), as a person would
want. The run id is derived from the task and the planned time, so a tick that fires twice for the same
occurrence queues one logical run (the runner recognises the duplicate).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import UpdateMode
from croniter import croniter

from shared.config import Config
from shared.services import Services
from shared.storage import threads
from shared.storage.queues import RunRequest, scheduled_run_id

SCHEDULER_KEY = ("_scheduler", "tick")  # no task name can start with "_"
FIRST_LOOKBACK = timedelta(minutes=1)


def latest_occurrence(expression: str, after: datetime, until: datetime) -> datetime | None:
    """The latest occurrence of ``expression`` in ``(after, until]``, or None."""
    schedule = croniter(expression, after, second_at_beginning=True)
    latest = None
    while True:
        moment = schedule.get_next(datetime)
        if moment > until:
            return latest
        latest = moment


def due_requests(config: Config, after: datetime, until: datetime) -> list[RunRequest]:
    requests = []
    for task in config.scheduled_tasks:  # event and authentication tasks have no schedule
        if not task.enabled or not task.schedule:
            continue
        planned = latest_occurrence(task.schedule, after, until)
        if planned is not None:
            requests.append(
                RunRequest(
                    task=task.name,
                    task_key=task.storage_key,
                    run_id=scheduled_run_id(task.name, planned),
                    trigger="timer",
                    planned_at=planned,
                )
            )
    return requests


async def tick(services: Services, now: datetime | None = None) -> list[RunRequest]:
    """Enqueue every due task once; returns what was enqueued."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    table = services.state.table

    def last_tick() -> datetime | None:
        try:
            entity = table.get_entity(*SCHEDULER_KEY)
        except ResourceNotFoundError:
            return None
        value = entity.get("last_tick")
        return value.astimezone(UTC) if isinstance(value, datetime) else None

    after = await threads.call(last_tick) or now - FIRST_LOOKBACK
    if after >= now:
        return []
    config = await services.config_store.load()
    requests = due_requests(config, after, now)
    for request in requests:
        await services.queue.enqueue(request)
    entity = {"PartitionKey": SCHEDULER_KEY[0], "RowKey": SCHEDULER_KEY[1], "last_tick": now}
    await threads.call(table.upsert_entity, entity, mode=UpdateMode.REPLACE)
    return requests
