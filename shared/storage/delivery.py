"""Each task's delivery state: the task cache, a held run, when the cache was last cleared.

One row per task in ``STATE_TABLE`` (PartitionKey the task, RowKey ``delivery``), beside the extract's own
row (RowKey ``state``: delta links, view, checkpoint). Two rows, so that clearing the cache or releasing a
held run never touches delta links, and an extract never overwrites what was delivered.

The cache is the **delivered view**: a pointer to the run whose records the platform has (its view files
and, per stream, a digest table of its records in blob storage: 16 bytes per record, too large for a table
property beyond a few thousand records), not a copy of them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode
from pydantic import BaseModel, Field

from shared.storage import threads

ROW_KEY = "delivery"


class DeliveredView(BaseModel):
    """A run whose changes reached the platform (or the blob, for a task without endpoint)."""

    run_id: str
    files: dict[str, str] = Field(default_factory=dict)  # stream -> that run's view file
    digests: dict[str, str] = Field(default_factory=dict)  # stream -> digest table blob
    records: dict[str, int] = Field(default_factory=dict)  # stream -> live records delivered
    targets: dict[str, str] = Field(default_factory=dict)  # stream -> where they went (template, folder)
    # stream -> how it was delivered (key, key_attribute, marking, collection): a stream the task no longer
    # has is marked with them (shared.delivery.changes.removed_streams)
    settings: dict[str, dict[str, Any]] = Field(default_factory=dict)
    delivered_at: datetime


class HeldRun(BaseModel):
    """A run the deletion guard stopped: its changes wait for ``approve`` (or a run that needs no hold)."""

    run_id: str
    changes: str  # the changes file
    view: DeliveredView  # what the cache becomes once it is released
    marks: int
    upserts: int
    reason: str
    held_at: datetime
    resend_all: bool = False  # computed after a cache clear: it sends every record


class DeliveryState(BaseModel):
    delivered: DeliveredView | None = None
    cleared_at: datetime | None = None  # when the cache was last cleared (daily or on demand)
    resend_all: bool = False  # cleared since the last delivery: the next delivery sends every record
    held: HeldRun | None = None
    released: list[str] = Field(default_factory=list)  # held runs approved so far (newest last, a few)


class DeliveryStateStore:
    def __init__(self, table: TableClient) -> None:
        self.table = table

    async def get(self, task: str) -> DeliveryState:
        def run() -> DeliveryState:
            try:
                entity = self.table.get_entity(task, ROW_KEY)
            except ResourceNotFoundError:
                return DeliveryState()
            return DeliveryState.model_validate_json(entity.get("state") or "{}")

        return await threads.call(run)

    async def put(self, task: str, state: DeliveryState) -> None:
        entity = {
            "PartitionKey": task,
            "RowKey": ROW_KEY,
            "state": state.model_dump_json(),
            "updated_at": datetime.now(UTC),
        }
        await threads.call(self.table.upsert_entity, entity, mode=UpdateMode.REPLACE)
