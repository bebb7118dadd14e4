"""Task-run requests on the storage queue ``RUNS_QUEUE``: the scheduler tick, the CLI, the admin API and
the run-task activity enqueue them; the queue-triggered function runs one per message."""

from __future__ import annotations

from azure.storage.queue import QueueClient

from shared.runs import RunRecord, RunRequest, new_run_id, scheduled_run_id
from shared.storage import threads
from shared.storage.tables import HistoryStore

__all__ = ["RunQueue", "RunRequest", "new_run_id", "scheduled_run_id"]


class RunQueue:
    """``history``: where a request is recorded as ``queued`` before it is sent (every enqueue path)."""

    def __init__(self, queue: QueueClient, history: HistoryStore | None = None) -> None:
        self.queue = queue
        self.history = history

    async def enqueue(self, request: RunRequest, *, delay_s: int = 0) -> None:
        """``delay_s``: the message stays invisible that long (a run planned for later)."""
        if self.history is not None:
            queued = RunRecord(
                task=request.task_key or request.task,  # history is keyed by the task's stable id
                run_id=request.run_id,
                trigger=request.trigger,
                status="queued",
                planned_at=request.planned_at or request.requested_at,
            )
            await self.history.put_new(queued)  # a request sent again leaves its row as it is
        await threads.call(
            self.queue.send_message, request.model_dump_json(), visibility_timeout=delay_s or None
        )
