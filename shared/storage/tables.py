"""Tables: the stored configuration, each task's run history, each task's state.

- ``CONFIG_TABLE``: one row per connector and per task (PartitionKey ``connector`` / ``task``, RowKey the
  name, ``definition`` the JSON). Secrets are references, never values (the config models refuse values).
- ``HISTORY_TABLE``: one row per run (PartitionKey the task, RowKey newest-first: inverted time + run id).
- ``STATE_TABLE``: one row per task (RowKey ``state``): delta links, the current view, the checkpoint of a
  run in progress. Written only after the run's data is committed ("write the data, then the state").
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any, Literal

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode
from pydantic import BaseModel, Field

from shared.config import Config, ConfigError, ConfigIssue, parse_config

MAX_TEXT = 30_000  # characters; a table string property holds at most 64 KiB (UTF-16)
RunStatus = Literal["queued", "running", "succeeded", "failed", "skipped"]


def now_utc() -> datetime:
    return datetime.now(UTC)


def _clip(text: str | None) -> str | None:
    if text is None or len(text) <= MAX_TEXT:
        return text
    return text[: MAX_TEXT - 20] + " …[truncated]"


# ------------------------------------------------------------------------------------------- config


class ConfigStore:
    def __init__(self, table: TableClient) -> None:
        self.table = table

    async def save(self, config: Config, *, replace: bool = True) -> None:
        """Store every connector and task of ``config``; with ``replace``, remove the ones it no longer has."""

        def run() -> None:
            wanted: dict[tuple[str, str], str] = {}
            for connector in config.connectors:
                wanted[("connector", connector.name)] = connector.model_dump_json(exclude_none=True)
            for task in config.tasks:
                wanted[("task", task.name)] = task.model_dump_json(exclude_none=True)
            for (partition, name), definition in wanted.items():
                self.table.upsert_entity(
                    {"PartitionKey": partition, "RowKey": name, "definition": definition},
                    mode=UpdateMode.REPLACE,
                )
            if replace:
                for entity in self.table.list_entities(select=["PartitionKey", "RowKey"]):
                    if (entity["PartitionKey"], entity["RowKey"]) not in wanted:
                        self.table.delete_entity(entity["PartitionKey"], entity["RowKey"])

        await asyncio.to_thread(run)

    async def load(self) -> Config:
        """The stored configuration, validated again (a bad row is reported by its name, nothing used)."""

        def run() -> dict[str, list[Any]]:
            data: dict[str, list[Any]] = {"connectors": [], "tasks": []}
            issues = []
            for entity in self.table.list_entities():
                kind = "connectors" if entity["PartitionKey"] == "connector" else "tasks"
                try:
                    data[kind].append(json.loads(entity["definition"]))
                except (KeyError, ValueError):
                    issues.append(ConfigIssue(f"{kind}[{entity['RowKey']}]", "stored definition is not JSON"))
            if issues:
                raise ConfigError(issues)
            return data

        return parse_config(await asyncio.to_thread(run))


# ------------------------------------------------------------------------------------------ history


class RunCounts(BaseModel):
    read: int = 0  # objects Graph returned (delta: changes returned)
    written: int = 0  # records in the output file
    changed: int = 0  # records new or different from the previous view
    removed: int = 0  # records in the previous view that are gone


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
    counts: dict[str, RunCounts] = Field(default_factory=dict)  # "users" / "groups"
    files: dict[str, str] = Field(default_factory=dict)  # "users" -> blob name
    requests: dict[str, Any] = Field(default_factory=dict)  # http_calls, batch_steps, throttled, ...
    error: str | None = None
    attempt: int = 1

    def to_entity(self) -> dict[str, Any]:
        entity: dict[str, Any] = {
            "PartitionKey": self.task,
            "RowKey": history_row_key(self.run_id),
            "run_id": self.run_id,
            "trigger": self.trigger,
            "status": self.status,
            "mode": self.mode,
            "resync_reason": self.resync_reason,
            "planned_at": self.planned_at,
            "started_at": self.started_at,
            "completed_at": self.completed_at,
            "counts": json.dumps({k: v.model_dump() for k, v in self.counts.items()}),
            "files": json.dumps(self.files),
            "requests": json.dumps(self.requests),
            "error": _clip(self.error),
            "attempt": self.attempt,
        }
        for stream, counts in self.counts.items():
            for name, value in counts.model_dump().items():
                entity[f"{stream}_{name}"] = value
        return {k: v for k, v in entity.items() if v is not None}

    @classmethod
    def from_entity(cls, entity: dict[str, Any]) -> RunRecord:
        def moment(name: str) -> datetime | None:
            value = entity.get(name)
            return value if isinstance(value, datetime) else None

        return cls(
            task=entity["PartitionKey"],
            run_id=entity["run_id"],
            trigger=entity.get("trigger", "unknown"),
            status=entity.get("status", "queued"),
            mode=entity.get("mode"),
            resync_reason=entity.get("resync_reason"),
            planned_at=moment("planned_at"),
            started_at=moment("started_at"),
            completed_at=moment("completed_at"),
            counts={k: RunCounts(**v) for k, v in json.loads(entity.get("counts") or "{}").items()},
            files=json.loads(entity.get("files") or "{}"),
            requests=json.loads(entity.get("requests") or "{}"),
            error=entity.get("error"),
            attempt=int(entity.get("attempt", 1)),
        )


def history_row_key(run_id: str) -> str:
    """Newest first: run ids start with a UTC time (``20261128T010203Z-...``); invert it."""
    stamp = run_id.split("-", 1)[0]
    try:
        moment = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        inverted = 10**11 - int(moment.timestamp())
    except ValueError:
        inverted = 0
    return f"{inverted:011d}-{run_id}"


class HistoryStore:
    def __init__(self, table: TableClient) -> None:
        self.table = table

    async def put(self, record: RunRecord) -> None:
        await asyncio.to_thread(self.table.upsert_entity, record.to_entity(), mode=UpdateMode.REPLACE)

    async def get(self, task: str, run_id: str) -> RunRecord | None:
        def run() -> RunRecord | None:
            try:
                return RunRecord.from_entity(self.table.get_entity(task, history_row_key(run_id)))
            except ResourceNotFoundError:
                return None

        return await asyncio.to_thread(run)

    async def list(self, task: str | None = None, limit: int = 20) -> list[RunRecord]:
        def run() -> list[RunRecord]:
            if task is None:
                entities = self.table.list_entities()
            else:
                entities = self.table.query_entities("PartitionKey eq @task", parameters={"task": task})
            records = []
            for entity in entities:
                records.append(RunRecord.from_entity(entity))
                if task is not None and len(records) >= limit:
                    break
            records.sort(
                key=lambda r: r.started_at or r.planned_at or datetime.min.replace(tzinfo=UTC), reverse=True
            )
            return records[:limit]

        return await asyncio.to_thread(run)


# -------------------------------------------------------------------------------------------- state


class View(BaseModel):
    """The last committed output of a task: what the next incremental run patches."""

    run_id: str
    fingerprint: str  # of the task settings that shape records; a change forces a full read
    files: dict[str, str]  # stream -> blob name
    records: dict[str, int] = Field(default_factory=dict)
    committed_at: datetime


class Checkpoint(BaseModel):
    """How far a run in progress got, so a restarted invocation resumes instead of starting over."""

    run_id: str
    mode: str
    fingerprint: str = ""  # of the task and connector it was made for: another configuration starts over
    streams: dict[str, dict[str, Any]] = Field(default_factory=dict)  # stream -> {next_link, blocks, ...}
    delta_links: dict[str, str] = Field(default_factory=dict)  # taken before a full read (incremental tasks)
    resync_reason: str | None = None
    saved_at: datetime


class TaskState(BaseModel):
    delta_links: dict[str, str] = Field(default_factory=dict)  # stream -> @odata.deltaLink
    view: View | None = None
    checkpoint: Checkpoint | None = None


class StateStore:
    def __init__(self, table: TableClient) -> None:
        self.table = table

    async def get(self, task: str) -> TaskState:
        def run() -> TaskState:
            try:
                entity = self.table.get_entity(task, "state")
            except ResourceNotFoundError:
                return TaskState()
            return TaskState.model_validate_json(entity.get("state") or "{}")

        return await asyncio.to_thread(run)

    async def put(self, task: str, state: TaskState) -> None:
        entity = {
            "PartitionKey": task,
            "RowKey": "state",
            "state": state.model_dump_json(),
            "updated_at": now_utc(),
        }
        await asyncio.to_thread(self.table.upsert_entity, entity, mode=UpdateMode.REPLACE)
