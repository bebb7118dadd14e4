"""Run requests that failed for good: a message the queue gave up on becomes a failed run in history."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import ValidationError

from shared.services import Services
from shared.storage.queues import RunRequest, new_run_id
from shared.storage.tables import RunRecord


async def record_poisoned(services: Services, body: bytes, dequeue_count: int | None) -> RunRecord:
    """Record a poison message as a failed run (never silently dropped)."""
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
    record = await services.history.get(request.task, request.run_id) or RunRecord(
        task=request.task, run_id=request.run_id, trigger=request.trigger, planned_at=request.planned_at
    )
    record.status = "failed"
    record.completed_at = datetime.now(UTC)
    reason = f"gave up after {dequeue_count or 'several'} attempts"
    record.error = f"{reason}; last error: {record.error}" if record.error else reason
    await services.history.put(record)
    return record
