"""The administration service: ONE layer behind the admin API, the management page and the CLI.

Connectors and tasks (scheduled, event, authentication) are listed, read, created, updated, deleted and
copied as plain JSON definitions, each with its stable id and ETag (:mod:`shared.admin.definitions`). Every
change is validated against the whole stored configuration with the config package's own rules, so every
missing or invalid field is named (paths relative to the definition changed). Operations: run now, history,
overview, test connection, sign-in checks, settings; export and import live in :mod:`shared.admin.transfer`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any, get_args

from shared.admin.definitions import Definition, DefinitionStore, Kind, new_id
from shared.admin.errors import (
    Conflict,
    ForceRequired,
    Invalid,
    NotFound,
    PreconditionRequired,
)
from shared.admin.permissions import Need, needs_of
from shared.config import Config, ConfigError, ConfigIssue, Connector, parse_config
from shared.runs import RunRecord, RunRequest
from shared.services import Services
from shared.settings import EnvironmentType

log = logging.getLogger(__name__)

VERSION = "0.10.0"
"""The connector's version, shown on the page and written into exports."""

RECENT_CALLS = timedelta(days=30)
"""An event task called within this long is in use by workflows: deleting it or changing its usage or
mappings type needs an explicit force."""

ENVIRONMENT_TYPE_CHANGE = (
    "Read-only here: the alert rules' severities are deployed by Bicep from the same value, so changing the "
    "app setting alone, or at run time, would make telemetry and the alerts disagree. Change it with the "
    "deployment: azd env set ENVIRONMENT_TYPE <test|prod|demo|dev>, then azd provision (it sets the app "
    "setting and the alert rules together, and the app restarts with the new value)."
)
"""Why the environment type is not editable on the page, and how to change it."""

TaskStatus = str  # ok | failed | running | waiting | held | stopped | never run | not scheduled
_STATUS_OF_RUN = {
    "succeeded": "ok",
    "failed": "failed",
    "running": "running",
    "queued": "waiting",
    "held": "held",
    "stopped": "stopped",
}
_SEVERITY = ["failed", "held", "stopped", "running", "waiting", "ok", "never run", "not scheduled"]


@dataclass
class TaskSummary:
    id: str
    name: str
    usage: str
    connector: str
    enabled: bool
    status: TaskStatus
    schedule: str | None = None
    last_run: RunRecord | None = None
    calls: list[dict[str, Any]] = field(default_factory=list)  # event tasks: per activity

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "usage": self.usage,
            "connector": self.connector,
            "enabled": self.enabled,
            "status": self.status,
            "schedule": self.schedule,
            "last_run": self.last_run.model_dump(mode="json") if self.last_run else None,
            "calls": self.calls,
        }


@dataclass
class ConnectorSummary:
    id: str
    name: str
    tenant_id: str
    status: TaskStatus
    tasks: list[TaskSummary]

    @property
    def counts(self) -> dict[str, int]:
        return {usage: sum(1 for t in self.tasks if t.usage == usage) for usage in _USAGES}

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "tenant_id": self.tenant_id,
            "status": self.status,
            "counts": self.counts,
            "tasks": [task.as_json() for task in self.tasks],
        }


_USAGES = ("scheduled", "event", "authentication")


def _relative_issues(
    error: ConfigError, list_name: str, index: int, others: dict[str, str]
) -> list[ConfigIssue]:
    """The config's issues as paths relative to the definition at ``list_name[index]``; problems elsewhere
    keep their place, named by the definition they are in (``others``: path prefix -> name)."""
    prefix = f"{list_name}[{index}]"
    issues = []
    for issue in error.errors:
        if issue.path == prefix or issue.path.startswith((prefix + ".", prefix + "[")):
            issues.append(ConfigIssue(issue.path[len(prefix) :].lstrip("."), issue.message))
            continue
        where = next((name for path, name in others.items() if issue.path.startswith(path)), None)
        issues.append(ConfigIssue(issue.path, f"{issue.message} (in {where})" if where else issue.message))
    return issues


def _token_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT access token, read only to show them (the token came from the identity platform
    over TLS; nothing is decided on it here)."""
    try:
        payload = token.split(".")[1]
        return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))
    except (IndexError, ValueError):
        return {}


class AdminService:
    def __init__(self, services: Services) -> None:
        self.services = services

    @cached_property
    def store(self) -> DefinitionStore:
        return DefinitionStore(
            self.services.storage.tables.get_table_client(self.services.settings.config_table)
        )

    # ------------------------------------------------------------------------------------ definitions
    async def definitions(self, kind: Kind | None = None) -> list[Definition]:
        return await self.store.all(kind)

    async def get(self, kind: Kind, id: str) -> Definition:
        return await self.store.get(kind, id)

    async def find(self, kind: Kind, name_or_id: str) -> Definition:
        """By id, or else by name (names ignore case): for the CLI and links people type."""
        for definition in await self.store.all(kind):
            if definition.id == name_or_id:
                return definition
        for definition in await self.store.all(kind):
            if definition.name.lower() == name_or_id.lower():
                return definition
        raise NotFound(f"no {kind} named or with id {name_or_id!r}")

    async def config(self) -> Config:
        """The stored configuration as the runner sees it."""
        return parse_config(self._document(await self.store.all()))

    @staticmethod
    def _document(definitions: list[Definition]) -> dict[str, Any]:
        return {
            "connectors": [d.data for d in definitions if d.kind == "connector"],
            "tasks": [d.data for d in definitions if d.kind == "task"],
        }

    def _validate(self, definitions: list[Definition], kind: Kind, data: dict[str, Any]) -> None:
        """Validate ``data`` (replacing the definition with its id, or added) within the whole configuration."""
        document = self._document([d for d in definitions if not (d.kind == kind and d.id == data["id"])])
        list_name = "connectors" if kind == "connector" else "tasks"
        document[list_name].append(data)
        index = len(document[list_name]) - 1
        others = {
            f"{name}[{i}]": f"{name[:-1]} {item.get('name')!r}"
            for name in ("connectors", "tasks")
            for i, item in enumerate(document[name])
        }
        try:
            parse_config(document)
        except ConfigError as exc:
            raise Invalid(_relative_issues(exc, list_name, index, others)) from None

    @staticmethod
    def _plain(data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise Invalid([ConfigIssue("", "a definition must be a JSON object")])
        return dict(data)

    async def create(self, kind: Kind, data: Any) -> Definition:
        data = self._plain(data)
        if "id" in data:
            raise Invalid(
                [ConfigIssue("id", "is given by the connector when the definition is first stored")]
            )
        data = {"id": new_id(), **data}
        self._validate(await self.store.all(), kind, data)
        return await self.store.insert(kind, data)

    async def update(
        self, kind: Kind, id: str, data: Any, etag: str | None, *, force: bool = False
    ) -> Definition:
        """Replace a definition; ``etag`` is the version the caller edited (412 when it changed since)."""
        if not etag:
            raise PreconditionRequired("send the definition's ETag in If-Match (read it first)")
        data = self._plain(data)
        if data.get("id", id) != id:
            raise Invalid([ConfigIssue("id", "cannot be changed")])
        data = {"id": id, **{k: v for k, v in data.items() if k != "id"}}
        definitions = await self.store.all()
        current = next((d for d in definitions if d.kind == kind and d.id == id), None)
        if current is None:
            raise NotFound(f"no {kind} with id {id!r}")
        if kind == "task" and current.usage == "event" and not force:
            changed = [
                k
                for k in ("usage", "mappings_type", "name")
                if data.get(k, "scheduled") != current.data.get(k)
            ]
            if changed:
                await self._refuse_if_in_use(current, f"changing its {' and '.join(changed)}")
        followers: list[tuple[Definition, dict[str, Any]]] = []
        if kind == "connector" and data.get("name") != current.name:
            # Tasks name their connector: a rename carries them along (ids, history and state stay).
            followers = [
                (d, {**d.data, "connector": data.get("name")})
                for d in definitions
                if d.kind == "task" and d.data.get("connector") == current.name
            ]
            definitions = [d for d in definitions if d not in [f for f, _ in followers]] + [
                Definition("task", f.id, new, f.etag) for f, new in followers
            ]
        self._validate(definitions, kind, data)
        updated = await self.store.replace(kind, data, etag, old_name=current.name)
        for follower, new in followers:
            await self.store.replace("task", new, follower.etag)
        return updated

    async def delete(self, kind: Kind, id: str, etag: str | None, *, force: bool = False) -> None:
        if not etag:
            raise PreconditionRequired("send the definition's ETag in If-Match (read it first)")
        definitions = await self.store.all()
        current = next((d for d in definitions if d.kind == kind and d.id == id), None)
        if current is None:
            raise NotFound(f"no {kind} with id {id!r}")
        if kind == "connector":
            users = [
                d.name for d in definitions if d.kind == "task" and d.data.get("connector") == current.name
            ]
            if users:
                raise Conflict(
                    f"connector {current.name!r} is used by task(s) {', '.join(users)}: delete them first"
                )
        if kind == "task" and current.usage == "event" and not force:
            await self._refuse_if_in_use(current, "deleting it")
        await self.store.delete(current, etag)

    async def copy(
        self, kind: Kind, id: str, name: str, *, usage: str | None = None, extra: dict[str, Any] | None = None
    ) -> Definition:
        """A copy under a new name and id; a scheduled task may become an authentication task (``usage``,
        with ``extra`` giving what that kind needs: protocol and realm)."""
        source = await self.store.get(kind, id)
        data = {k: v for k, v in source.data.items() if k != "id"}
        data["name"] = name
        if kind == "task" and usage and usage != source.usage:
            if (source.usage, usage) != ("scheduled", "authentication"):
                raise Invalid([ConfigIssue("usage", f"a {source.usage} task cannot be copied as {usage}")])
            data = _authentication_from_scheduled(data)
        data.update(extra or {})
        return await self.create(kind, data)

    async def _refuse_if_in_use(self, task: Definition, change: str) -> None:
        recent = [
            u
            for u in await self.activity_usage(task.name)
            if u["last_call_at"] and _recent(u["last_call_at"])
        ]
        if recent:
            last = max(u["last_call_at"] for u in recent)
            calls = sum(u["calls"] for u in recent)
            raise ForceRequired(
                f"event task {task.name!r} was called by workflows in the last {RECENT_CALLS.days} days "
                f"({calls} call(s), last {last}); {change} breaks them: repeat with force to do it anyway"
            )

    async def activity_usage(self, task: str | None = None) -> list[dict[str, Any]]:
        """Per event task and activity: calls and the last call (the activities' own counters)."""
        from shared.activities.api import ActivityApi

        rows = await (await ActivityApi(self.services).usage()).list(task)
        return [
            {
                "task": row.task,
                "activity": row.activity,
                "calls": row.calls,
                "completed": row.completed,
                "exceptions": row.exceptions,
                "last_call_at": row.last_call_at.isoformat() if row.last_call_at else None,
                "last_status": row.last_status,
            }
            for row in rows
        ]

    # ------------------------------------------------------------------------------------- operations
    async def task_definition(self, id: str) -> Definition:
        return await self.store.get("task", id)

    async def run_now(self, id: str, *, full_resync: bool = False, force: bool = False) -> RunRecord:
        """Queue a run of a scheduled task for the Function App; recorded ``queued`` in its history. A
        disabled task runs only with ``force`` (the runner skips it otherwise)."""
        task = await self.task_definition(id)
        if task.usage != "scheduled":
            raise Conflict(f"{task.name!r} is an {task.usage} task; only scheduled tasks run")
        if task.data.get("enabled", True) is False and not force:
            raise Conflict(f"{task.name!r} is disabled: run it with force to run it anyway")
        request = RunRequest(
            task=task.name, task_key=task.storage_key, trigger="api", full_resync=full_resync, force=force
        )
        await self.services.queue.enqueue(request)  # recorded queued in the task's history first
        record = await self.services.history.get(task.storage_key, request.run_id)
        assert record is not None
        return record

    async def stop(self, id: str) -> RunRecord:
        """Ask the task's running run to stop: it stops at its next page boundary, commits nothing and is
        recorded ``stopped`` (shared/storage/stops.py). Answers the run asked."""
        from shared.storage.stops import StopRequests

        task = await self._scheduled(id)
        running = [
            r for r in await self.services.history.list(task.storage_key, limit=5) if r.status == "running"
        ]
        if not running:
            raise Conflict(f"no run of {task.name!r} is running")
        await StopRequests(self.services.state.table).request(task.storage_key, running[0].run_id)
        return running[0]

    async def clear_cache(self, id: str) -> None:
        """The task's next run delivers every record once (the read side's delivery cache; delta links kept)."""
        from shared.delivery import cache
        from shared.delivery.release import delivery_store

        task = await self._scheduled(id)
        await cache.clear(delivery_store(self.services), task.storage_key)

    async def approve(self, id: str, run_id: str) -> RunRecord:
        """Release exactly the changes of the run the deletion guard held, once."""
        from shared.delivery.release import ApprovalError, approve

        task = await self._scheduled(id)
        config = await self.config()
        scheduled = config.task(task.name)
        try:
            return await approve(self.services, scheduled, config.connector(scheduled.connector), run_id)
        except ApprovalError as exc:
            raise Conflict(str(exc)) from None

    async def _scheduled(self, id: str) -> Definition:
        task = await self.task_definition(id)
        if task.usage != "scheduled":
            raise Conflict(
                f"{task.name!r} is an {task.usage} task; only scheduled tasks have runs and a cache"
            )
        return task

    async def history(self, id: str, limit: int = 20) -> list[RunRecord]:
        task = await self.task_definition(id)
        return await self.services.history.list(task.storage_key, limit=limit)

    async def run(self, id: str, run_id: str) -> RunRecord:
        task = await self.task_definition(id)
        record = await self.services.history.get(task.storage_key, run_id)
        if record is None:
            raise NotFound(f"no run {run_id!r} of {task.name!r}")
        return record

    async def run_log(self, id: str, run_id: str) -> bytes:
        """The run's own log lines (every attempt), as kept with the run."""
        from shared.storage import blobs, runlogs

        record = await self.run(id, run_id)
        text = await runlogs.read(self.services.extracts, blobs.run_prefix(record.task, record.run_id))
        if text is None:
            raise NotFound(f"run {run_id} of {record.task!r} kept no log lines")
        return text

    async def overview(self) -> list[ConnectorSummary]:
        definitions = await self.store.all()
        usage = await self.activity_usage()
        all_tasks = [d for d in definitions if d.kind == "task"]
        # One history query per task, all at once (the table has no "latest run of every task" query).
        found = await asyncio.gather(*(self._task_summary(task, usage) for task in all_tasks))
        by_id = {summary.id: summary for summary in found}
        summaries = []
        for connector in (d for d in definitions if d.kind == "connector"):
            tasks = [by_id[t.id] for t in all_tasks if t.data.get("connector") == connector.name]
            statuses = [t.status for t in tasks if t.usage == "scheduled"]
            status = min(statuses, key=_SEVERITY.index) if statuses else "not scheduled"
            summaries.append(
                ConnectorSummary(
                    connector.id, connector.name, str(connector.data.get("tenant_id")), status, tasks
                )
            )
        return summaries

    async def _task_summary(self, task: Definition, usage: list[dict[str, Any]]) -> TaskSummary:
        enabled = bool(task.data.get("enabled", True))
        summary = TaskSummary(
            task.id,
            task.name,
            task.usage,
            str(task.data.get("connector")),
            enabled,
            "ok",
            task.data.get("schedule"),
        )
        if task.usage == "scheduled":
            runs = [
                r
                for r in await self.services.history.list(task.storage_key, limit=5)
                if r.status != "skipped"
            ]
            summary.last_run = runs[0] if runs else None
            if summary.last_run is not None:
                summary.status = _STATUS_OF_RUN.get(summary.last_run.status, summary.last_run.status)
            elif not enabled or not summary.schedule:
                summary.status = "not scheduled"
            else:
                summary.status = "never run"
        elif task.usage == "event":
            summary.calls = [u for u in usage if u["task"] == task.name]
            summary.status = "ok" if enabled else "not scheduled"
        else:
            summary.status = "ok" if enabled else "not scheduled"
        return summary

    # ---------------------------------------------------------------------------------- connections
    async def test_connection(self, id: str) -> dict[str, Any]:
        """A token, one Graph read, and the token's permissions against what each configured task needs."""
        definition = await self.store.get("connector", id)
        connector = Connector.model_validate(definition.data)
        result: dict[str, Any] = {"connector": connector.name, "token": None, "read": None, "roles": []}
        try:
            token = await self.services.tokens(connector).token()
        except Exception as exc:  # any credential failure is the answer here, never raised
            result["token"] = {"ok": False, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0]}"}
            return result
        claims = _token_claims(token)
        roles = sorted(claims.get("roles") or [])
        result["token"] = {"ok": True, "tenant": claims.get("tid"), "app": claims.get("appid")}
        result["roles"] = roles
        client = self.services.graph(connector)
        try:
            async with client.context():
                page = await client.get_json("users", params={"$top": "1", "$select": "id"})
            result["read"] = {
                "ok": True,
                "request": "GET /v1.0/users?$top=1&$select=id",
                "objects": len(page["value"]),
            }
        except Exception as exc:
            result["read"] = {"ok": False, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0]}"}
        tasks = [d for d in await self.store.all("task") if d.data.get("connector") == connector.name]
        needs: list[Need] = [need for task in tasks for need in needs_of(task.data)]
        result["features"] = [
            {"task": n.task, "feature": n.feature, "any_of": list(n.any_of), "granted": n.met_by(set(roles))}
            for n in needs
        ]
        return result

    # ------------------------------------------------------------------------------------- settings
    def settings(self) -> dict[str, Any]:
        return {
            "environment_type": self.services.settings.environment_type,
            "environment_types": list(get_args(EnvironmentType)),
            "version": VERSION,
            "set_by": "the ENVIRONMENT_TYPE app setting, deployed from the infra parameter environmentType; "
            "telemetry reads it at start",
            "how_to_change": ENVIRONMENT_TYPE_CHANGE,
        }


def _recent(moment: str) -> bool:
    return datetime.fromisoformat(moment) >= datetime.now(UTC) - RECENT_CALLS


def _authentication_from_scheduled(data: dict[str, Any]) -> dict[str, Any]:
    """A scheduled task's selection as an authentication task's filters: the users' $filter and the groups
    their users are scoped by (include -> member_of, exclude -> excluded_member_of)."""
    from shared.config.queries import split_query

    users = data.get("users") or {}
    query = dict(split_query(users.get("query") or ""))
    result: dict[str, Any] = {
        "usage": "authentication",
        "name": data["name"],
        "connector": data.get("connector"),
        "enabled": data.get("enabled", True),
        "users": {
            k: v
            for k, v in {"filter": query.get("$filter"), "excluded_ids": users.get("excluded_ids")}.items()
            if v
        },
        "groups": {
            k: v
            for k, v in {
                "member_of": users.get("include_members_of"),
                "excluded_member_of": users.get("exclude_members_of"),
            }.items()
            if v
        },
    }
    if data.get("description"):
        result["description"] = data["description"]
    return result
