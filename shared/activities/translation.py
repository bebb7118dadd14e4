"""Values by local attribute code <-> Graph properties, through an event task's mappings.

Writing, ``a.b`` paths become nested objects (``onPremisesExtensionAttributes.extensionAttribute1`` ->
``{"onPremisesExtensionAttributes": {"extensionAttribute1": ...}}``); directory extensions
(``extension_<appid>_<name>``) are top-level properties. Mappings with ``format: date`` / ``datetime`` read the
workflow's text in the task's ``date_format`` / ``datetime_format`` and send ISO 8601; reading, they give it
back in those formats. List positions (``assignedLicenses.0.skuId``) can be read, not written.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from shared.config.event_tasks import EventAttributeMapping, EventMappings, EventTask


class TranslationProblems(ValueError):
    """Values that cannot be translated; ``body`` holds the translation of the others."""

    def __init__(self, problems: list[tuple[str, str]], body: dict[str, Any]) -> None:
        super().__init__("; ".join(f"{where}: {message}" for where, message in problems))
        self.problems = problems
        self.body = body


def to_graph(
    values: Mapping[str, Any], mappings: EventMappings, task: EventTask, *, field: str = "values"
) -> dict[str, Any]:
    """The Graph body for ``values``; every unmapped code and every bad value is named."""
    by_local = mappings.external_of()
    body: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    for code, value in values.items():
        mapping = by_local.get(code)
        where = f"{field}.{code}"
        if mapping is None:
            problems.append((where, f"not mapped in event task {task.name}"))
            continue
        parts = mapping.external.split(".")
        if any(part.isdigit() for part in parts):
            problems.append((where, f"{mapping.external} addresses a list position, which cannot be written"))
            continue
        try:
            converted = _convert_in(value, mapping, task)
        except ValueError as exc:
            problems.append((where, str(exc)))
            continue
        target = body
        for part in parts[:-1]:
            existing = target.setdefault(part, {})
            if not isinstance(existing, dict):
                problems.append((where, f"{mapping.external} conflicts with another mapped value"))
                break
            target = existing
        else:
            target[parts[-1]] = converted
    if problems:
        raise TranslationProblems(problems, body)
    return body


def _convert_in(value: Any, mapping: EventAttributeMapping, task: EventTask) -> Any:
    typed = typed_value(value, mapping, task)
    if isinstance(typed, datetime):
        return typed.strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(typed, date):
        return typed.isoformat()
    return typed


def typed_value(value: Any, mapping: EventAttributeMapping, task: EventTask) -> Any:
    """A workflow's value as Graph's type: a ``date`` or a UTC ``datetime`` for date / datetime mappings (read
    in the task's formats), the value itself otherwise. ``$filter`` literals are built from it (a date-time
    is compared unquoted, as a DateTimeOffset)."""
    if mapping.format == "value" or value is None:
        return value
    if not isinstance(value, str):
        raise ValueError(f"a {mapping.format} is expected as text in the event task's format")
    if mapping.format == "date":
        try:
            return datetime.strptime(value, task.date_format).date()
        except ValueError:
            raise ValueError(f"not a date in the format {task.date_format}") from None
    try:
        moment = datetime.strptime(value, task.datetime_format)
    except ValueError:
        raise ValueError(f"not a date-time in the format {task.datetime_format}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(microsecond=0)


def from_graph(obj: Mapping[str, Any], mappings: EventMappings, task: EventTask) -> dict[str, Any]:
    """The mapped attributes of a Graph object, by local code (None where Graph has no value)."""
    out: dict[str, Any] = {}
    for mapping in mappings.mappings:
        value = _dig(obj, mapping.external)
        out[mapping.local] = _convert_out(value, mapping, task)
    return out


def _dig(obj: Any, path: str) -> Any:
    current = obj
    for part in path.split("."):
        if isinstance(current, Mapping):
            current = current.get(part)
        elif isinstance(current, list) and part.isdigit():
            index = int(part)
            current = current[index] if index < len(current) else None
        else:
            return None
    return current


def _convert_out(value: Any, mapping: EventAttributeMapping, task: EventTask) -> Any:
    if mapping.format == "value" or not isinstance(value, str):
        return value
    try:
        if mapping.format == "date":
            return date.fromisoformat(value[:10]).strftime(task.date_format)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return moment.astimezone(UTC).strftime(task.datetime_format)
    except ValueError:
        return value


def select_properties(mappings: EventMappings) -> list[str]:
    """Top-level Graph properties to ``$select`` for reading the mapped attributes (with ``id``)."""
    return sorted({"id"} | {mapping.external.split(".")[0] for mapping in mappings.mappings})


def mapped(mappings: EventMappings | None, external: str) -> str | None:
    """The local code mapped to ``external`` (case-insensitive), if any."""
    if mappings is None:
        return None
    for mapping in mappings.mappings:
        if mapping.external.lower() == external.lower():
            return mapping.local
    return None
