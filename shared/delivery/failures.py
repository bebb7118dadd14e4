"""Failure notification: a failed or held run produces a failure record carrying the error text.

- In the run history: the run's ``error`` (and its load phase's ``info``).
- As one structured log event, :data:`FAILURE_EVENT` (``TaskRunFailed``), with the task, run id, status
  and error text as fields (``event``, ``run_status``, ``error_text``; the run-scoped ``task`` and
  ``run_id`` come from :mod:`shared.logs`). Application Insights keeps them as custom dimensions; the
  alert rules query ``customDimensions.event == "TaskRunFailed"``.
- Where the task configures a failure record (template, folder, attribute): a record written beside the
  run's output (``failure.jsonl``) and delivered to the platform like any record (one batch, stream
  ``failure``), if the task has an endpoint.
"""

from __future__ import annotations

import logging
from typing import Any

from shared.config import ScheduledTask
from shared.delivery.batches import Batch, BatchHeader
from shared.graph.errors import redact_text

log = logging.getLogger(__name__)

FAILURE_EVENT = "TaskRunFailed"
FAILURE_STREAM = "failure"
MAX_ERROR_TEXT = 8_000


def log_failure(task: str, run_id: str, status: str, error: str) -> None:
    """The event carries the error text with UPN-like tokens redacted (Graph's messages can name a user);
    the history and the failure record keep it whole, for the administrators who act on it."""
    error = redact_text(error)
    log.error(
        "%s: run %s of %s %s: %s",
        FAILURE_EVENT,
        run_id,
        task,
        status,
        error.splitlines()[0] if error else "",
        extra={
            "event": FAILURE_EVENT,
            "run_status": status,
            "error_text": error[:MAX_ERROR_TEXT],
            "failed_task": task,
            "failed_run": run_id,
        },
    )


def failure_record(task: ScheduledTask, run_id: str, status: str, error: str) -> dict[str, Any] | None:
    """The record delivered for a failed or held run, or None if the task configures none."""
    failure = task.delivery.failure
    if failure is None:
        return None
    text = f"{task.name} run {run_id} {status}: {error}"[:MAX_ERROR_TEXT]
    return {
        "op": "failure",
        "stream": FAILURE_STREAM,
        "id": f"{task.name}/{run_id}",
        "attributes": {failure.attribute: text},
    }


def failure_batch(task: ScheduledTask, run_id: str, line: bytes) -> Batch:
    failure = task.delivery.failure
    assert failure is not None
    header = BatchHeader(
        task=task.name,
        base=f"failure:{run_id}",
        streams={
            FAILURE_STREAM: {
                "target_template": failure.target_template,
                "target_folder": failure.target_folder,
                "key": "id",
            }
        },
    )
    return header.build([line], 1)
