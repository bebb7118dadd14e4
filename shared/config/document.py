"""A configuration file as a whole: connectors and tasks, with the rules that span them (unique names,
known connectors), and typed accessors per task kind."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, Field, model_validator

from shared.config.connectors import Connector
from shared.config.fields import NAME_PATTERN, ConfigModel
from shared.config.issues import ConfigIssue, join_path, raise_if_any
from shared.config.tasks import READS, SELECTIONS, AnyTask, ScheduledTask, selection_issues

TaskKind = TypeVar("TaskKind", bound=BaseModel)


class Config(ConfigModel):
    """A configuration file: connectors and the tasks (of every kind) that use them."""

    schema_uri: str | None = Field(default=None, alias="$schema", description="JSON Schema for editors.")
    connectors: list[Connector]
    tasks: list[AnyTask]

    @model_validator(mode="after")
    def _names_and_references_hold(self) -> Config:
        raise_if_any(reference_issues(self.model_dump(by_alias=True, include={"connectors", "tasks"})))
        return self

    def connector(self, name: str) -> Connector:
        for connector in self.connectors:
            if connector.name == name:
                return connector
        raise KeyError(f"no connector named {name!r}")

    def task_of(self, kind: type[TaskKind], name: str) -> TaskKind:
        """The task of this kind named ``name``; KeyError when there is none (or it is of another kind)."""
        for task in self.tasks:
            if task.name == name:
                if isinstance(task, kind):
                    return task
                raise KeyError(f"task {name!r} is not a {kind.__name__}")
        raise KeyError(f"no task named {name!r}")

    def tasks_of(self, kind: type[TaskKind]) -> list[TaskKind]:
        """Every task of this kind, in the file's order."""
        return [task for task in self.tasks if isinstance(task, kind)]

    def task(self, name: str) -> ScheduledTask:
        """The scheduled task named ``name`` (what the runner runs)."""
        return self.task_of(ScheduledTask, name)

    def scheduled_task(self, name: str) -> ScheduledTask:
        return self.task_of(ScheduledTask, name)

    @property
    def scheduled_tasks(self) -> list[ScheduledTask]:
        return self.tasks_of(ScheduledTask)


def reference_issues(data: Mapping[str, Any]) -> list[ConfigIssue]:
    """Rules across objects: unique names, known connectors, selections matching mappings_type.

    Works on raw (possibly invalid) data, so these are reported together with every other problem.
    """
    issues: list[ConfigIssue] = []
    connectors = data.get("connectors")
    connector_names: list[str] | None = None
    if isinstance(connectors, list):
        names = [item.get("name") for item in connectors if isinstance(item, Mapping)]
        connector_names = [name for name in names if isinstance(name, str)]
        issues += _duplicate_name_issues("connectors", connectors, "connector")
    tasks = data.get("tasks")
    if not isinstance(tasks, list):
        return issues
    issues += _duplicate_name_issues("tasks", tasks, "task")
    for index, task in enumerate(tasks):
        if not isinstance(task, Mapping):
            continue
        path = f"tasks[{index}]"
        connector = task.get("connector")
        if (
            connector_names is not None
            and isinstance(connector, str)
            and re.fullmatch(NAME_PATTERN, connector)
            and connector not in connector_names
        ):
            issues.append(
                ConfigIssue(f"{path}.connector", _unknown_connector_message(connector, connector_names))
            )
        mappings_type = task.get("mappings_type")
        scheduled = task.get("usage", "scheduled") == "scheduled"
        if scheduled and isinstance(mappings_type, str) and mappings_type in READS:
            given = [name for name in SELECTIONS if task.get(name) is not None]
            issues += [
                ConfigIssue(join_path(path, issue.path), issue.message)
                for issue in selection_issues(mappings_type, given)
            ]
    return issues


def _duplicate_name_issues(list_path: str, items: list[Any], kind: str) -> list[ConfigIssue]:
    first_index: dict[str, int] = {}
    issues = []
    for index, item in enumerate(items):
        name = item.get("name") if isinstance(item, Mapping) else None
        if not isinstance(name, str):
            continue
        # Names become table keys and blob paths: names differing only by case are too easily confused.
        earlier = first_index.setdefault(name.lower(), index)
        if earlier != index:
            issues.append(
                ConfigIssue(
                    f"{list_path}[{index}].name",
                    f"duplicate {kind} name {name!r} (also {list_path}[{earlier}]; names ignore case)",
                )
            )
    return issues


def _unknown_connector_message(name: str, known: list[str]) -> str:
    message = f"no connector named {name!r} is configured"
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return f"{message}; did you mean {close[0]!r}?"
    if known:
        return f"{message} (configured: {', '.join(sorted(known))})"
    return message
