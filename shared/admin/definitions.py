"""Connector and task definitions in the config table, each with its stable id and its ETag.

One row per definition: PartitionKey ``connector`` or ``task``, RowKey the definition's id (a GUID given when it
is first stored; rows written by name before ids existed keep their name as id), ``name`` and ``definition``
(the JSON, holding the id too). Every change is conditional on the ETag the caller read (``If-Match``): the
table refuses a stale one with 412, so concurrent edits are detected, never silently overwritten.

Names are unique per kind (ignoring case). The table has no transaction across partitions, so two creates of
one name at the same moment could both pass validation; each name is therefore *claimed* first, with a row
the table creates only once (PartitionKey ``name``, RowKey ``{kind}:{name in lower case}``, the owner's id).
A claim whose owner no longer exists (a write that failed halfway) is taken over. See
https://learn.microsoft.com/rest/api/storageservices/update-entity2 (If-Match) and
https://learn.microsoft.com/azure/storage/tables/table-storage-design-patterns (optimistic concurrency).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.admin.errors import Conflict, NotFound, PreconditionFailed
from shared.storage import threads

Kind = Literal["connector", "task"]
KINDS: tuple[Kind, ...] = ("connector", "task")
CLAIMS = "name"  # the partition of the name claims


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
    def storage_key(self) -> str:
        """What a scheduled task's history, state and output are keyed by: its id (ScheduledTask.storage_key)."""
        return self.id

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

        return await threads.call(run)

    async def get(self, kind: Kind, id: str) -> Definition:
        def run() -> Definition:
            try:
                return _definition(self.table.get_entity(kind, id))
            except ResourceNotFoundError:
                raise NotFound(f"no {kind} with id {id!r}") from None

        return await threads.call(run)

    # ------------------------------------------------------------------------------------ name claims
    def _claim(self, kind: Kind, name: str, id: str) -> None:
        """Claim ``name`` for the definition ``id``; Conflict when another existing definition holds it."""
        key = f"{kind}:{name.lower()}"
        for _ in range(3):
            try:
                self.table.create_entity({"PartitionKey": CLAIMS, "RowKey": key, "id": id})
                return
            except ResourceExistsError:
                pass
            try:
                claim = self.table.get_entity(CLAIMS, key)
            except ResourceNotFoundError:
                continue  # released meanwhile: try again
            if claim.get("id") == id:
                return
            try:
                self.table.get_entity(kind, claim["id"], select=["RowKey"])
            except ResourceNotFoundError:
                try:  # its owner is gone: take the stale claim over
                    self.table.update_entity(
                        {"PartitionKey": CLAIMS, "RowKey": key, "id": id},
                        mode=UpdateMode.REPLACE,
                        etag=claim.metadata["etag"],
                        match_condition=MatchConditions.IfNotModified,
                    )
                    return
                except (ResourceModifiedError, ResourceNotFoundError):
                    continue
            raise Conflict(f"the {kind} name {name!r} is in use (names ignore case)")
        raise Conflict(f"the {kind} name {name!r} is being claimed by another change; try again")

    def _release(self, kind: Kind, name: str, id: str) -> None:
        key = f"{kind}:{name.lower()}"
        try:
            claim = self.table.get_entity(CLAIMS, key)
            if claim.get("id") == id:
                self.table.delete_entity(
                    CLAIMS, key, etag=claim.metadata["etag"], match_condition=MatchConditions.IfNotModified
                )
        except (ResourceNotFoundError, ResourceModifiedError):
            pass

    # -------------------------------------------------------------------------------------- changes
    async def insert(self, kind: Kind, data: dict[str, Any]) -> Definition:
        """Store a new definition (its ``id`` set by the caller); 409 if that id or its name is taken."""

        def run() -> Definition:
            self._claim(kind, data["name"], data["id"])
            try:
                metadata = self.table.create_entity(_entity(kind, data))
            except ResourceExistsError:
                self._release(kind, data["name"], data["id"])
                raise Conflict(f"a {kind} with id {data['id']!r} already exists") from None
            return Definition(kind, data["id"], data, metadata["etag"])

        return await threads.call(run)

    async def replace(
        self, kind: Kind, data: dict[str, Any], etag: str, *, old_name: str | None = None
    ) -> Definition:
        """Replace a definition only if it is still the version ``etag`` names; 412 otherwise. ``old_name``:
        the stored name, when this change renames it (the new name is claimed first, the old one released)."""

        def run() -> Definition:
            renamed = old_name is not None and old_name.lower() != str(data["name"]).lower()
            if renamed:
                self._claim(kind, data["name"], data["id"])
            try:
                metadata = self.table.update_entity(
                    _entity(kind, data),
                    mode=UpdateMode.REPLACE,
                    etag=etag,
                    match_condition=MatchConditions.IfNotModified,
                )
            except ResourceModifiedError:
                if renamed:
                    self._release(kind, data["name"], data["id"])
                raise PreconditionFailed(
                    f"the {kind} {data['name']!r} was changed by someone else since you read it; "
                    "read it again and reapply your change"
                ) from None
            except ResourceNotFoundError:
                if renamed:
                    self._release(kind, data["name"], data["id"])
                raise NotFound(f"no {kind} with id {data['id']!r}") from None
            if renamed and old_name is not None:
                self._release(kind, old_name, data["id"])
            return Definition(kind, data["id"], data, metadata["etag"])

        return await threads.call(run)

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
            self._release(definition.kind, definition.name, definition.id)

        await threads.call(run)
