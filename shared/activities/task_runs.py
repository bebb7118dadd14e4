"""Run a scheduled task now: a run request on the runs queue (the same path as the tick and the CLI), then
either wait for its history row (bounded by the request's ``wait_seconds``) or answer at once with where to
poll (``GET /api/v1/activities/tasks/runs/{task}/{run_id}``)."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from shared.activities.contract import RunStatusResponse, RunTaskRequest
from shared.activities.problems import ActivityError, invalid
from shared.config import Config, ScheduledTask
from shared.storage.queues import RunRequest
from shared.storage.tables import RunRecord

if TYPE_CHECKING:
    from shared.services import Services

ACTIVITY = "tasks.run"
FINISHED = ("succeeded", "failed", "skipped")
POLL_INTERVAL_S = 1.0


def poll_path(task: str, run_id: str) -> str:
    return f"/api/v1/activities/tasks/runs/{task}/{run_id}"


def scheduled_task(config: Config, name: str) -> ScheduledTask:
    try:
        return config.task_of(ScheduledTask, name)
    except KeyError:
        kinds = {t.name: getattr(t, "usage", "scheduled") for t in config.tasks}
        message = f"{name} is an {kinds[name]} task" if name in kinds else f"no scheduled task named {name}"
        raise invalid([("task", f"{message}; only scheduled tasks can be run")]) from None


async def start(services: Services, config: Config, request: RunTaskRequest) -> tuple[int, RunStatusResponse]:
    """(HTTP status, body): 200 when the run finished within the wait, 202 while it is queued or running."""
    key = scheduled_task(config, request.task).storage_key  # what the history is keyed by
    run = RunRequest(task=request.task, task_key=key, trigger="activity", full_resync=request.full_resync)
    await services.queue.enqueue(run)
    record: RunRecord | None = None
    give_up = time.monotonic() + request.wait_seconds
    while request.wait_seconds and time.monotonic() < give_up:
        record = await services.history.get(key, run.run_id)
        if record is not None and record.status in FINISHED:
            break
        await asyncio.sleep(min(POLL_INTERVAL_S, max(0.0, give_up - time.monotonic())))
    return answer(request.task, run.run_id, record)


async def status(services: Services, config: Config, task: str, run_id: str) -> tuple[int, RunStatusResponse]:
    record = await services.history.get(scheduled_task(config, task).storage_key, run_id)
    return answer(task, run_id, record)


def answer(task: str, run_id: str, record: RunRecord | None) -> tuple[int, RunStatusResponse]:
    run_status = record.status if record is not None else "queued"
    if run_status == "failed":
        raise ActivityError(
            502,
            "run-failed",
            f"run {run_id} of {task} failed: {record.error if record else ''}".strip(),
            result={"run_id": run_id, "run_status": run_status},
        )
    finished = run_status in FINISHED
    result: dict = {"run_id": run_id, "run_status": run_status}
    if record is not None:
        result["counts"] = {stream: counts.model_dump() for stream, counts in record.counts.items()}
        result["files"] = record.files
    body = RunStatusResponse(
        activity=ACTIVITY,
        task=task,
        result=result,
        run_id=run_id,
        run_status=run_status,
        poll=None if finished else poll_path(task, run_id),
    )
    return (200 if finished else 202), body
