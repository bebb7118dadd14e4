"""The run models, in one place: the run request (queue message), the history record, the task's state (view,
delta links, checkpoint) and the manifest written with each run's output.

pydantic at the edges: each is read from or written to a queue, a table row or a blob. The stores that keep
them are in :mod:`shared.storage`.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

Trigger = Literal["timer", "manual", "api", "cli", "activity", "notification"]
RunStatus = Literal["queued", "running", "succeeded", "failed", "skipped", "held", "stopped"]
Mode = Literal["full", "incremental"]
FORMAT = "entra-graph-connector/records-v1"


def new_run_id(at: datetime | None = None) -> str:
    """Sortable by time, unique: ``20261128T010203Z-3f9a1c``."""
    return f"{(at or datetime.now(UTC)):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def scheduled_run_id(task: str, planned_at: datetime) -> str:
    """Deterministic for a planned tick, so a tick delivered twice is one run (the second is a duplicate)."""
    digest = hashlib.sha256(f"{task}|{planned_at.isoformat()}".encode()).hexdigest()[:6]
    return f"{planned_at:%Y%m%dT%H%M%SZ}-{digest}"


class RunRequest(BaseModel):
    """A queue message: run this task (the tick, the CLI, the admin API and the run-task activity send it)."""

    task: str
    run_id: str = Field(default_factory=new_run_id)
    trigger: Trigger = "manual"
    planned_at: datetime | None = None
    requested_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    full_resync: bool = False  # incremental tasks: read everything this time (delta links are renewed)
    force: bool = False  # run even though the task is disabled
    task_key: str | None = None  # the task's stable id (ScheduledTask.storage_key), when the sender knows it


class RunCounts(BaseModel):
    read: int = 0  # objects Graph returned (delta: changes returned)
    written: int = 0  # records in the output file
    changed: int = 0  # records new or different from the previous view
    removed: int = 0  # records in the previous view that are gone


class PhaseReport(BaseModel):
    """One phase of a run as the history shows it: the extract (Graph to blob) or the load (to the platform)."""

    status: str  # running | succeeded | failed | held
    started_at: datetime | None = None
    completed_at: datetime | None = None
    counts: dict[str, Any] = Field(default_factory=dict)
    info: str | None = None
    file: str | None = None  # the load: the changes file it delivers


class RunRecord(BaseModel):
    """One run of one task, as the history table keeps it."""

    task: str
    run_id: str
    trigger: str  # timer | manual | api | cli | activity
    status: RunStatus = "queued"
    mode: str | None = None  # full | incremental
    resync_reason: str | None = None  # why an incremental task did a full read
    planned_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    counts: dict[str, RunCounts] = Field(default_factory=dict)  # per stream
    files: dict[str, str] = Field(default_factory=dict)  # stream -> blob name
    requests: dict[str, Any] = Field(default_factory=dict)  # http_calls, batch_steps, throttled, ...
    error: str | None = None
    attempt: int = 1
    extract: PhaseReport | None = None
    load: PhaseReport | None = None


class View(BaseModel):
    """The last committed output of a task: what the next incremental run patches."""

    run_id: str
    fingerprint: str  # of the task settings that shape records; a change forces a full read
    files: dict[str, str]  # stream -> blob name
    records: dict[str, int] = Field(default_factory=dict)
    committed_at: datetime


class StreamCheckpoint(BaseModel):
    """How far one stream's full read got: the longest finished prefix of its pages."""

    next_link: str | None = None  # where the read continues (None: the stream is complete)
    blocks: list[str] = Field(default_factory=list)  # staged block ids holding exactly the prefix's records
    records: int = 0  # records in those blocks
    read: int = 0  # objects Graph returned for the prefix


class Checkpoint(BaseModel):
    """How far a run in progress got, so a restarted invocation resumes instead of starting over."""

    run_id: str
    mode: str
    fingerprint: str = ""  # of the task and connector it was made for: another configuration starts over
    streams: dict[str, StreamCheckpoint] = Field(default_factory=dict)
    delta_links: dict[str, str] = Field(default_factory=dict)  # taken before a full read (incremental tasks)
    resync_reason: str | None = None
    saved_at: datetime


class TaskState(BaseModel):
    """One row per task: delta links, the current view, the checkpoint of a run in progress."""

    delta_links: dict[str, str] = Field(default_factory=dict)  # stream -> @odata.deltaLink
    view: View | None = None
    checkpoint: Checkpoint | None = None


class ManifestFile(BaseModel):
    path: str
    records: int
    target_template: str
    target_folder: str
    key: str
    key_attribute: str | None = None  # the local code each record carries the key's value in (key not id)


class Manifest(BaseModel):
    """``manifest.json``, written last into a run's folder (and copied to ``latest.json``)."""

    format: str = FORMAT
    task: str
    connector: str
    run_id: str
    mode: str | None
    resync_reason: str | None
    trigger: str
    planned_at: datetime | None
    started_at: datetime | None
    committed_at: datetime
    previous_run_id: str | None
    files: dict[str, ManifestFile]
    counts: dict[str, RunCounts]
