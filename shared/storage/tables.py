"""Tables: the stored configuration, each task's run history, each task's state.

- ``CONFIG_TABLE``: one row per connector and per task (PartitionKey ``connector`` / ``task``, RowKey the
  definition's stable id, ``name``, ``definition`` the JSON). Secrets are references, never values (the
  config models refuse values).
- ``HISTORY_TABLE``: one row per run (PartitionKey the task, RowKey newest-first: inverted time + run id).
- ``STATE_TABLE``: one row per task (RowKey ``state``): delta links, the current view, the checkpoint of a
  run in progress. Written only after the run's data is committed ("write the data, then the state").
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.config import Config, ConfigError, ConfigIssue, parse_config
from shared.runs import Checkpoint, PhaseReport, RunCounts, RunRecord, RunStatus, TaskState, View
from shared.storage import threads

__all__ = [
    "Checkpoint",
    "ConfigStore",
    "HistoryStore",
    "RunCounts",
    "RunRecord",
    "RunStatus",
    "StateStore",
    "TaskState",
    "View",
]

MAX_TEXT = 30_000  # characters; a table string property holds at most 64 KiB (UTF-16)


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
            # Rows are keyed by each definition's stable id (shared/admin/definitions.py): a definition
            # without one keeps the id of the stored row of the same name, or gets its name as id (so storage
            # keyed by id stays where storage keyed by name was), or a new GUID when a renamed definition
            # already holds that id.
            stored = {}
            taken = set()
            for entity in self.table.list_entities(select=["PartitionKey", "RowKey", "name"]):
                name = str(entity.get("name") or entity["RowKey"]).lower()
                stored[(entity["PartitionKey"], name)] = entity["RowKey"]
                taken.add((entity["PartitionKey"], entity["RowKey"].lower()))
            wanted: dict[tuple[str, str], tuple[str, str]] = {}
            items = [("connector", c) for c in config.connectors] + [("task", t) for t in config.tasks]
            for partition, item in items:
                row = item.id or stored.get((partition, item.name.lower()))
                if row is None:
                    row = item.name if (partition, item.name.lower()) not in taken else str(uuid.uuid4())
                definition = item.model_copy(update={"id": row}).model_dump_json(exclude_none=True)
                wanted[(partition, row)] = (item.name, definition)
            for (partition, row), (name, definition) in wanted.items():
                self.table.upsert_entity(
                    {"PartitionKey": partition, "RowKey": row, "name": name, "definition": definition},
                    mode=UpdateMode.REPLACE,
                )
            if replace:
                for entity in self.table.list_entities(select=["PartitionKey", "RowKey"]):
                    if (entity["PartitionKey"], entity["RowKey"]) not in wanted:
                        self.table.delete_entity(entity["PartitionKey"], entity["RowKey"])

        await threads.call(run)

    async def load(self) -> Config:
        """The stored configuration, validated again (a bad row is reported by its name, nothing used)."""

        def run() -> dict[str, list[Any]]:
            data: dict[str, list[Any]] = {"connectors": [], "tasks": []}
            issues = []
            for entity in self.table.list_entities():
                if entity["PartitionKey"] not in ("connector", "task"):
                    continue  # the admin's name claims (shared/admin/definitions.py)
                kind = "connectors" if entity["PartitionKey"] == "connector" else "tasks"
                try:
                    data[kind].append(json.loads(entity["definition"]))
                except (KeyError, ValueError):
                    issues.append(ConfigIssue(f"{kind}[{entity['RowKey']}]", "stored definition is not JSON"))
            if issues:
                raise ConfigError(issues)
            return data

        return parse_config(await threads.call(run))

    async def task_key(self, name: str) -> str:
        """What the scheduled task named ``name`` is keyed by in history, state and output (its stable id,
        ``ScheduledTask.storage_key``); the name itself when the stored configuration cannot say."""
        try:
            return (await self.load()).task(name).storage_key
        except (KeyError, ValueError):
            return name


# ------------------------------------------------------------------------------------------ history


def record_entity(record: RunRecord) -> dict[str, Any]:
    """A history row for a run record."""
    entity: dict[str, Any] = {
        "PartitionKey": record.task,
        "RowKey": history_row_key(record.run_id),
        "run_id": record.run_id,
        "trigger": record.trigger,
        "status": record.status,
        "mode": record.mode,
        "resync_reason": record.resync_reason,
        "planned_at": record.planned_at,
        "started_at": record.started_at,
        "completed_at": record.completed_at,
        "counts": json.dumps({k: v.model_dump() for k, v in record.counts.items()}),
        "files": json.dumps(record.files),
        "requests": json.dumps(record.requests),
        "error": _clip(record.error),
        "attempt": record.attempt,
        "extract": record.extract.model_dump_json() if record.extract else None,
        "load": record.load.model_dump_json() if record.load else None,
        "extract_status": record.extract.status if record.extract else None,
        "load_status": record.load.status if record.load else None,
    }
    for stream, counts in record.counts.items():
        for name, value in counts.model_dump().items():
            entity[f"{stream}_{name}"] = value
    return {k: v for k, v in entity.items() if v is not None}


def record_from_entity(entity: dict[str, Any]) -> RunRecord:
    def moment(name: str) -> datetime | None:
        value = entity.get(name)
        return value if isinstance(value, datetime) else None

    return RunRecord(
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
        extract=PhaseReport.model_validate_json(entity["extract"]) if entity.get("extract") else None,
        load=PhaseReport.model_validate_json(entity["load"]) if entity.get("load") else None,
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
        await threads.call(self.table.upsert_entity, record_entity(record), mode=UpdateMode.REPLACE)

    async def put_new(self, record: RunRecord) -> bool:
        """Store ``record`` unless the run already has a row (a request sent twice: the row stays)."""

        def run() -> bool:
            try:
                self.table.create_entity(record_entity(record))
            except ResourceExistsError:
                return False
            return True

        return await threads.call(run)

    async def get(self, task: str, run_id: str) -> RunRecord | None:
        def run() -> RunRecord | None:
            try:
                return record_from_entity(self.table.get_entity(task, history_row_key(run_id)))
            except ResourceNotFoundError:
                return None

        return await threads.call(run)

    async def list(self, task: str | None = None, limit: int = 20) -> list[RunRecord]:
        def run() -> list[RunRecord]:
            if task is None:
                entities = self.table.list_entities()
            else:
                entities = self.table.query_entities("PartitionKey eq @task", parameters={"task": task})
            records: list[RunRecord] = []
            last_second = None
            for entity in entities:
                # Rows come newest second first, but runs of one second by their ids' random part: at the
                # limit, read the rest of that second too, so the sort below can put them in time order.
                second = entity["RowKey"].split("-", 1)[0]
                if task is not None and len(records) >= limit and second != last_second:
                    break
                records.append(record_from_entity(entity))
                last_second = second
            records.sort(
                key=lambda r: r.started_at or r.planned_at or datetime.min.replace(tzinfo=UTC), reverse=True
            )
            return records[:limit]

        return await threads.call(run)


# -------------------------------------------------------------------------------------------- state


class StateStore:
    def __init__(self, table: TableClient) -> None:
        self.table = table

    async def get(self, task: str) -> TaskState:
        def run() -> TaskState:
            try:
                entity = self.table.get_entity(task, "state")
            except ResourceNotFoundError:
                return TaskState()
            return TaskState.model_validate_json(_joined(entity, "state") or "{}")

        return await threads.call(run)

    async def put(self, task: str, state: TaskState) -> None:
        entity = {"PartitionKey": task, "RowKey": "state", "updated_at": now_utc()}
        entity.update(_split("state", state.model_dump_json()))
        await threads.call(self.table.upsert_entity, entity, mode=UpdateMode.REPLACE)


# A string property holds at most 64 KiB: 16,000 characters are at most 64,000 bytes of UTF-16 whatever they are.
_PART = 16_000


def _split(name: str, text: str) -> dict[str, str]:
    """``text`` in properties ``name``, ``name_1``, ``name_2``...: a checkpoint of a million-user read names
    about 1,100 staged blocks (50,000 characters); an entity holds 1 MiB."""
    parts = [text[i : i + _PART] for i in range(0, len(text), _PART)] or [""]
    return {name if n == 0 else f"{name}_{n}": part for n, part in enumerate(parts)}


def _joined(entity: Any, name: str) -> str:
    text = entity.get(name) or ""
    n = 1
    while f"{name}_{n}" in entity:
        text += entity[f"{name}_{n}"]
        n += 1
    return text
