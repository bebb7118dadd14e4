"""Per event task and activity: the last call's time and outcome and the call counts, in a table
(``ACTIVITY_USAGE_TABLE``, default ``activityusage``; PartitionKey the task, RowKey the activity), for the
admin views.

Calls are counted in memory and written in the background at most every ``FLUSH_SECONDS`` (one table update
per task and activity per flush, whatever the call rate), and within ``FLUSH_SECONDS`` of a call even when
no other call follows; so counting costs a call nothing and concurrent callers do not contend for one row.
Each update merges into the stored row with optimistic concurrency (ETag), so several instances count
correctly together. Counts a write fails to store are kept for the next one. A process that stops loses at
most its last ``FLUSH_SECONDS`` of counts.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.storage import threads

FLUSH_SECONDS = 5.0


@dataclass
class Usage:
    task: str
    activity: str
    calls: int = 0
    completed: int = 0
    exceptions: int = 0
    last_call_at: datetime | None = None
    last_status: int | None = None

    def add(self, http_status: int, at: datetime) -> None:
        self.calls += 1
        if http_status < 400:
            self.completed += 1
        else:
            self.exceptions += 1
        if self.last_call_at is None or at >= self.last_call_at:
            self.last_call_at, self.last_status = at, http_status


class UsageStore:
    def __init__(self, table: TableClient) -> None:
        self.table = table
        self._pending: dict[tuple[str, str], Usage] = {}
        self._lock = asyncio.Lock()

    def note(self, task: str, activity: str, http_status: int, at: datetime | None = None) -> None:
        """Count a call (in memory; :meth:`flush` writes it)."""
        pending = self._pending.get((task, activity))
        if pending is None:
            pending = self._pending[(task, activity)] = Usage(task, activity)
        pending.add(http_status, at or datetime.now(UTC))

    async def record(self, task: str, activity: str, http_status: int, at: datetime | None = None) -> None:
        """Count a call and write it now."""
        self.note(task, activity, http_status, at)
        await self.flush()

    @property
    def pending(self) -> bool:
        """Whether counts wait to be written."""
        return bool(self._pending)

    async def flush(self) -> None:
        async with self._lock:
            pending, self._pending = self._pending, {}
            for key, usage in list(pending.items()):
                try:
                    await threads.call(self._merge, usage)
                except BaseException:
                    for unwritten in pending.values():  # kept for the next flush, with calls counted since
                        self._readd(unwritten)
                    raise
                del pending[key]

    def _readd(self, usage: Usage) -> None:
        kept = self._pending.setdefault((usage.task, usage.activity), Usage(usage.task, usage.activity))
        kept.calls += usage.calls
        kept.completed += usage.completed
        kept.exceptions += usage.exceptions
        if usage.last_call_at is not None and (
            kept.last_call_at is None or usage.last_call_at > kept.last_call_at
        ):
            kept.last_call_at, kept.last_status = usage.last_call_at, usage.last_status

    def _merge(self, usage: Usage) -> None:
        for _ in range(20):
            try:
                stored = self.table.get_entity(usage.task, usage.activity)
            except ResourceNotFoundError:
                try:
                    self.table.create_entity(
                        {
                            "PartitionKey": usage.task,
                            "RowKey": usage.activity,
                            "calls": usage.calls,
                            "completed": usage.completed,
                            "exceptions": usage.exceptions,
                            "last_call_at": usage.last_call_at,
                            "last_status": usage.last_status,
                        }
                    )
                    return
                except ResourceExistsError:
                    continue
            stored["calls"] = int(stored["calls"]) + usage.calls
            stored["completed"] = int(stored["completed"]) + usage.completed
            stored["exceptions"] = int(stored["exceptions"]) + usage.exceptions
            last = stored.get("last_call_at")
            if usage.last_call_at is not None and (last is None or last <= usage.last_call_at):
                stored["last_call_at"] = usage.last_call_at
                stored["last_status"] = usage.last_status
            try:
                self.table.update_entity(
                    stored,
                    mode=UpdateMode.REPLACE,
                    etag=stored.metadata["etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
                return
            except (ResourceModifiedError, ResourceNotFoundError):
                continue
        raise RuntimeError(f"could not update the usage of {usage.activity} for {usage.task}: contended")

    async def list(self, task: str | None = None) -> list[Usage]:
        def run() -> list[Usage]:
            if task is None:
                entities = self.table.list_entities()
            else:
                entities = self.table.query_entities("PartitionKey eq @task", parameters={"task": task})
            return [
                Usage(
                    e["PartitionKey"],
                    e["RowKey"],
                    int(e["calls"]),
                    int(e["completed"]),
                    int(e["exceptions"]),
                    e.get("last_call_at"),
                    e.get("last_status"),
                )
                for e in entities
            ]

        return await threads.call(run)
