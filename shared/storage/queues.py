"""Task-run requests on the storage queue ``RUNS_QUEUE``: the scheduler tick, the CLI, the admin API and
the run-task activity enqueue them; the queue-triggered function runs one per message."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime
from typing import Literal

from azure.storage.queue import QueueClient
from pydantic import BaseModel, Field

Trigger = Literal["timer", "manual", "api", "cli", "activity"]


def new_run_id(at: datetime | None = None) -> str:
    """Sortable by time, unique: ``20261128T010203Z-3f9a1c``."""
    return f"{(at or datetime.now(UTC)):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def scheduled_run_id(task: str, planned_at: datetime) -> str:
    """Deterministic for a planned tick, so a tick delivered twice is one run (the second is a duplicate)."""
    import hashlib

    digest = hashlib.sha256(f"{task}|{planned_at.isoformat()}".encode()).hexdigest()[:6]
    return f"{planned_at:%Y%m%dT%H%M%SZ}-{digest}"


class RunRequest(BaseModel):
    task: str
    run_id: str = Field(default_factory=new_run_id)
    trigger: Trigger = "manual"
    planned_at: datetime | None = None
    requested_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    full_resync: bool = False  # incremental tasks: read everything this time (delta links are renewed)


class RunQueue:
    def __init__(self, queue: QueueClient) -> None:
        self.queue = queue

    async def enqueue(self, request: RunRequest) -> None:
        await asyncio.to_thread(self.queue.send_message, request.model_dump_json())
