"""Requests to stop a task's run in progress, and the run's side of them.

An administrator asks (``shared.admin``: the API, the page, the CLI); the run checks at its page boundaries
(:class:`StopSignal`, at most every :data:`CHECK_EVERY_S` seconds: one table read) and, when asked, raises
:class:`RunStopped`. The runner then drops the run's checkpoint and records it ``stopped``: nothing was
committed, so the output, view and delta links stay exactly as the last good run left them, and the next run
(the next tick, or run now) starts as if this one never happened.

Rows live in the state table beside the task's state: PartitionKey the task, RowKey ``stop``, with the run
id the request is for (a request for another run is ignored and removed when that run ends).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.storage import threads

CHECK_EVERY_S = 1.0
ROW = "stop"


class RunStopped(Exception):
    """An administrator asked this run to stop; raised at a page boundary."""


class StopRequests:
    def __init__(self, table: TableClient) -> None:
        self.table = table

    async def request(self, task: str, run_id: str) -> None:
        entity = {"PartitionKey": task, "RowKey": ROW, "run_id": run_id, "requested_at": datetime.now(UTC)}
        await threads.call(self.table.upsert_entity, entity, mode=UpdateMode.REPLACE)

    async def requested(self, task: str, run_id: str) -> bool:
        def run() -> bool:
            try:
                return bool(self.table.get_entity(task, ROW).get("run_id") == run_id)
            except ResourceNotFoundError:
                return False

        return await threads.call(run)

    async def clear(self, task: str) -> None:
        def run() -> None:
            try:
                self.table.delete_entity(task, ROW)
            except ResourceNotFoundError:
                pass

        await threads.call(run)


class StopSignal:
    """One run's view of the stop requests: ``await signal()`` at a page boundary raises RunStopped."""

    def __init__(self, requests: StopRequests, task: str, run_id: str) -> None:
        self.requests = requests
        self.task = task
        self.run_id = run_id
        self._checked = 0.0

    async def __call__(self) -> None:
        now = time.monotonic()
        if now - self._checked < CHECK_EVERY_S:
            return
        self._checked = now
        if await self.requests.requested(self.task, self.run_id):
            raise RunStopped(f"stopped by an administrator's request (run {self.run_id})")
