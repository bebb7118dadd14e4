"""Sub-queries: requests run for each item of a generic stream, and for each result of a sub-query.

Every sub-query goes through the one ``$batch`` fan-out (:class:`shared.extract.fanout.FanOut`): 20 requests
a call, a bounded number of calls in flight, Intune's budget paced by the Graph client
(:mod:`shared.graph.pacing`). A level's requests are sent for a whole page of items at once, and requests
with the same concrete path (two devices of one user asking for ``/users/{userId}``) are sent once.

An item's results are kept per sub-query path, so several sub-queries never mix their data:
``{"/deviceManagement/managedDevices/{id}/windowsProtectionState": {...}, "/users/{userId}": {...}}``.

What a result is, and how mappings read it (``<sub-query path>.<attribute path>``):

- a sub-query that answers an **object** gives that object; ``path.attribute`` reads it like an item's
  attribute (``path.a.b``, ``path.list.0.c``);
- one that answers a **collection** gives the list of its items, every page followed, in Graph's order:
  ``path.0.displayName`` is the first item's name (``null`` if there is none), and ``path.displayName``
  without a position is the **list** of every item's ``displayName`` (``null`` where one has none, so two
  attributes of one sub-query line up position by position; ``[]`` for an empty collection);
- a sub-query of a sub-query runs once per parent result: under an object it gives its own result, under a
  collection the results for each parent item joined into one list (objects as items, collections'
  items in turn), in the parents' order;
- not found (404: a non-Windows device has no ``windowsProtectionState``), or a placeholder whose field is
  empty, gives ``null`` for every attribute of that sub-query and its sub-queries: the item is still
  delivered. Any other refusal fails the run with Graph's error (a beta-only path answers 400 on v1.0).

Incremental runs re-run the sub-queries of items that changed or joined; an unchanged item keeps the
sub-query results of the run that last read it (a full run reads all of them again).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote

from shared.config.generic import SUB_QUERIES, GenericSelection, SubQuery
from shared.extract.relations import Relation, RelationContext, RelationFactory, Values

if TYPE_CHECKING:
    from shared.extract.incremental import DeltaRound
    from shared.extract.streams import StreamSpec

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
Results = dict[str, Any]  # sub-query path -> result (object, list, or None)


def field_value(obj: dict[str, Any], path: str) -> Any:
    """A field of a result (``id``, ``manager.id``) for a placeholder."""
    value: Any = obj
    for part in path.split("."):
        if isinstance(value, list) and part.isdigit():
            value = value[int(part)] if int(part) < len(value) else None
        elif isinstance(value, dict):
            value = value.get(part)
        else:
            return None
        if value is None:
            return None
    return value


def concrete_path(template: str, parent: dict[str, Any]) -> str | None:
    """The sub-query's path for one parent: placeholders replaced by the parent's fields, percent-encoded
    (a value cannot add a path segment or a query); ``None`` if a field is empty."""
    route, mark, query = template.partition("?")
    missing = False

    def fill(match: re.Match[str]) -> str:
        nonlocal missing
        value = field_value(parent, match.group(1))
        if value is None or value == "" or isinstance(value, dict | list):
            missing = True
            return ""
        return quote(str(value), safe="")

    path = _PLACEHOLDER.sub(fill, route)
    return None if missing else path + mark + query


def _objects(result: Any) -> list[dict[str, Any]]:
    if isinstance(result, dict):
        return [result]
    if isinstance(result, list):
        return [item for item in result if isinstance(item, dict)]
    return []


@dataclass
class SubQueries:
    """The sub-queries of one generic stream, as a relation: its values are each item's :data:`Results`."""

    spec: StreamSpec
    context: RelationContext
    tree: tuple[SubQuery, ...]
    name: str = SUB_QUERIES
    uses_membership_round: bool = False
    tracks_own_members: bool = False
    _fresh: dict[str, Results] = field(default_factory=dict)

    async def prepare(self) -> None:
        return None

    async def full_values(self, ids: list[str]) -> Values:
        return await self.read({object_id: {"id": object_id} for object_id in ids})  # type: ignore[return-value]

    async def join_values(self, ids: list[str]) -> Values:
        missing = [object_id for object_id in ids if object_id not in self._fresh]
        if missing:
            self._fresh.update(await self.read({object_id: {"id": object_id} for object_id in missing}))
        return {object_id: self._fresh[object_id] for object_id in ids}  # type: ignore[misc]

    def begin_merge(self, own: DeltaRound, memberships: DeltaRound) -> None:
        return None

    async def prefetch(self, own: DeltaRound) -> None:
        """Before a merge: the sub-queries of every item the round changed (their records are rebuilt)."""
        ids = sorted(own.objects)
        self._fresh = await self.read({object_id: {"id": object_id} for object_id in ids}) if ids else {}

    def touches(self, object_id: str, line: bytes) -> bool:
        return False  # sub-query results change with their item only (a full run refreshes them all)

    def patch(self, object_id: str, current: Iterable[str]) -> Results:
        return self._fresh.get(object_id, {})

    # ------------------------------------------------------------------------------------------ reads
    async def read(self, parents: dict[str, dict[str, Any]]) -> dict[str, Results]:
        """Every sub-query of every item: item id -> {path: result}."""
        results: dict[str, Results] = {item_id: {} for item_id in parents}
        for sub_query in self.tree:
            # The first level: one parent per item, the item itself (its id).
            await self._level(sub_query, {item_id: [obj] for item_id, obj in parents.items()}, results, None)
        return results

    async def _level(
        self,
        sub_query: SubQuery,
        parents: dict[str, list[dict[str, Any]]],
        results: dict[str, Results],
        parent_result: dict[str, Any] | None,
    ) -> None:
        """Run ``sub_query`` for every parent of every item; then its own sub-queries under its results."""
        concrete: dict[str, list[str | None]] = {
            item_id: [concrete_path(sub_query.path, obj) for obj in objs] for item_id, objs in parents.items()
        }
        wanted = sorted({path for paths in concrete.values() for path in paths if path is not None})
        answers = await self.context.fanout.answers(wanted) if wanted else {}
        children: dict[str, list[dict[str, Any]]] = {}
        for item_id, paths in concrete.items():
            if parent_result is not None and not isinstance(parent_result.get(item_id), list):
                # Under an object (or nothing): the child's own result.
                value = answers.get(paths[0]) if paths and paths[0] is not None else None
            elif parent_result is None:
                value = answers.get(paths[0]) if paths[0] is not None else None
            else:
                # Under a collection: each parent's result, joined in the parents' order.
                joined: list[Any] = []
                for path in paths:
                    answer = answers.get(path) if path is not None else None
                    if isinstance(answer, dict):
                        joined.append(answer)
                    elif isinstance(answer, list):
                        joined.extend(answer)
                value = joined
            results[item_id][sub_query.path] = value
            children[item_id] = _objects(value)
        if sub_query.sub_queries:
            mine = {item_id: results[item_id][sub_query.path] for item_id in results}
            for child in sub_query.sub_queries:
                await self._level(child, children, results, mine)


def sub_queries_factory(selection: GenericSelection) -> RelationFactory:
    """The relation factory a generic stream specification offers (bound to its selection's sub-queries).
    Its values are sub-query results rather than id lists; the mapper reads them by path."""
    tree = tuple(selection.sub_queries)

    def make(spec: StreamSpec, context: RelationContext) -> Relation:
        return cast("Relation", SubQueries(spec, context, tree))

    return make
