"""Connector and task definitions in the config table, each with its stable id and its ETag.

One row per definition: PartitionKey ``connector`` or ``task``, RowKey the definition's id (a GUID given when it
is first stored; rows written by name before ids existed keep their name as id), ``name`` and ``definition``
(the JSON, holding the id too). Every change is conditional on the ETag the caller read (``If-Match``): the
table refuses a stale one with 412, so concurrent edits are detected, never silently overwritten. See
https://learn.microsoft.com/rest/api/storageservices/update-entity2 (If-Match) and
https://learn.microsoft.com/azure/storage/tables/table-storage-design-patterns (optimistic concurrency).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.admin.errors import Conflict, NotFound, PreconditionFailed

Kind = Literal["connector", "task"]
KINDS: tuple[Kind, ...] = ("connector", "task")


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class Definition:
    """A stored connector or task: its id, name, the definition (plain JSON data) and the row's ETag."""

    kind: Kind
    id: str
    data: dict[str, Any]
    etag: str

    @property
    def name(self) -> str:
        return str(self.data.get("name", ""))

    @property
    def usage(self) -> str:
        return str(self.data.get("usage", "scheduled")) if self.kind == "task" else "connector"


def _definition(entity: Any) -> Definition:
    try:
        data = json.loads(entity["definition"])
    except (KeyError, ValueError):
        data = {"name": entity.get("name", entity["RowKey"])}
    data["id"] = entity["RowKey"]
    return Definition(entity["PartitionKey"], entity["RowKey"], data, entity.metadata["etag"])


def _entity(kind: Kind, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "PartitionKey": kind,
        "RowKey": data["id"],
        "name": data["name"],
        "definition": json.dumps(data, separators=(",", ":")),
    }


class DefinitionStore:
    """The config table's definitions, with optimistic concurrency (blocking calls run in a thread)."""

    def __init__(self, table: TableClient) -> None:
        self.table = table

    async def all(self, kind: Kind | None = None) -> list[Definition]:
        def run() -> list[Definition]:
            if kind is None:
                entities = self.table.list_entities()
            else:
                entities = self.table.query_entities("PartitionKey eq @kind", parameters={"kind": kind})
            return sorted(
                (_definition(e) for e in entities if e["PartitionKey"] in KINDS),
                key=lambda d: (d.kind, d.name.lower()),
            )

        return await asyncio.to_thread(run)

    async def get(self, kind: Kind, id: str) -> Definition:
        def run() -> Definition:
            try:
                return _definition(self.table.get_entity(kind, id))
            except ResourceNotFoundError:
                raise NotFound(f"no {kind} with id {id!r}") from None

        return await asyncio.to_thread(run)

    async def insert(self, kind: Kind, data: dict[str, Any]) -> Definition:
        """Store a new definition (its ``id`` set by the caller); 409 if that id exists."""

        def run() -> Definition:
            try:
                metadata = self.table.create_entity(_entity(kind, data))
            except ResourceExistsError:
                raise Conflict(f"a {kind} with id {data['id']!r} already exists") from None
            return Definition(kind, data["id"], data, metadata["etag"])

        return await asyncio.to_thread(run)

    async def replace(self, kind: Kind, data: dict[str, Any], etag: str) -> Definition:
        """Replace a definition only if it is still the version ``etag`` names; 412 otherwise."""

        def run() -> Definition:
            try:
                metadata = self.table.update_entity(
                    _entity(kind, data),
                    mode=UpdateMode.REPLACE,
                    etag=etag,
                    match_condition=MatchConditions.IfNotModified,
                )
            except ResourceModifiedError:
                raise PreconditionFailed(
                    f"the {kind} {data['name']!r} was changed by someone else since you read it; "
                    "read it again and reapply your change"
                ) from None
            except ResourceNotFoundError:
                raise NotFound(f"no {kind} with id {data['id']!r}") from None
            return Definition(kind, data["id"], data, metadata["etag"])

        return await asyncio.to_thread(run)

    async def delete(self, definition: Definition, etag: str) -> None:
        def run() -> None:
            try:
                self.table.delete_entity(
                    definition.kind, definition.id, etag=etag, match_condition=MatchConditions.IfNotModified
                )
            except ResourceModifiedError:
                raise PreconditionFailed(
                    f"the {definition.kind} {definition.name!r} was changed by someone else since you read "
                    "it; read it again"
                ) from None

        await asyncio.to_thread(run)
