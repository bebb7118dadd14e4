"""Run requests that failed for good: a message the queue gave up on becomes a failed run in history."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import ValidationError

from shared.delivery.failures import log_failure
from shared.delivery.release import notify_failure
from shared.runs import RunRecord, RunRequest, new_run_id
from shared.services import Services


async def record_poisoned(services: Services, body: bytes, dequeue_count: int | None) -> RunRecord:
    """Record a poison message as a failed run (never silently dropped).

    ``dequeue_count``: how many times the run queue delivered it, if known. The poison queue's own count
    is not that (the host moves the message as a new one), so the trigger passes None and the attempts
    the history row counted are used. A run that already succeeded (or was skipped) stays as it is.
    """
    try:
        request = RunRequest.model_validate_json(body)
    except ValidationError as exc:
        record = RunRecord(
            task="_unreadable",
            run_id=new_run_id(),
            trigger="unknown",
            status="failed",
            completed_at=datetime.now(UTC),
            error=f"unreadable run request ({len(body)} bytes): {exc.errors()[0]['msg']}",
        )
        await services.history.put(record)
        return record
    key = await services.config_store.task_key(request.task)
    existing = await services.history.get(key, request.run_id)
    if existing is not None and existing.status in ("succeeded", "skipped"):
        return existing
    record = existing or RunRecord(
        task=key, run_id=request.run_id, trigger=request.trigger, planned_at=request.planned_at
    )
    attempts = dequeue_count or (existing.attempt if existing is not None else None)
    record.status = "failed"
    record.completed_at = datetime.now(UTC)
    reason = f"gave up after {attempts or 'several'} attempts"
    record.error = f"{reason}; last error: {record.error}" if record.error else reason
    await services.history.put(record)
    log_failure(record.task, record.run_id, "failed", record.error)  # the alerts' TaskRunFailed event
    try:  # and the task's failure record for the platform, if it configures one
        config = await services.config_store.load()
        task = config.task(request.task)
        connector = config.connector(task.connector)
    except (KeyError, ValueError):  # an unknown task, or a configuration that no longer parses
        return record
    await notify_failure(services, task, connector, record, "failed", record.error)
    return record
