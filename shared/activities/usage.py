"""Per event task and activity: the last call's time and outcome and the call counts, in a table
(``ACTIVITY_USAGE_TABLE``, default ``activityusage``; PartitionKey the task, RowKey the activity), for the
admin views. Counters are updated with optimistic concurrency (ETag), so concurrent calls are all counted.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode


@dataclass(frozen=True)
class Usage:
    task: str
    activity: str
    calls: int
    completed: int
    exceptions: int
    last_call_at: datetime | None
    last_status: int | None


class UsageStore:
    def __init__(self, table: TableClient) -> None:
        self.table = table

    async def record(self, task: str, activity: str, http_status: int, at: datetime | None = None) -> None:
        await asyncio.to_thread(self._record, task, activity, http_status, at or datetime.now(UTC))

    def _record(self, task: str, activity: str, http_status: int, at: datetime) -> None:
        completed = 1 if http_status < 400 else 0
        for _ in range(10):
            try:
                stored = self.table.get_entity(task, activity)
            except ResourceNotFoundError:
                try:
                    self.table.create_entity(
                        {
                            "PartitionKey": task,
                            "RowKey": activity,
                            "calls": 1,
                            "completed": completed,
                            "exceptions": 1 - completed,
                            "last_call_at": at,
                            "last_status": http_status,
                        }
                    )
                    return
                except ResourceExistsError:
                    continue
            stored["calls"] = int(stored["calls"]) + 1
            stored["completed"] = int(stored["completed"]) + completed
            stored["exceptions"] = int(stored["exceptions"]) + 1 - completed
            if stored.get("last_call_at") is None or stored["last_call_at"] <= at:
                stored["last_call_at"] = at
                stored["last_status"] = http_status
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

        return await asyncio.to_thread(run)
