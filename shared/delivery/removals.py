"""Why a delivered object left the task's view: deleted, soft-deleted (restorable), or out of scope.

- Incremental runs know it for the objects their delta round removed: ``@removed`` with reason ``changed``
  is a soft delete (the object sits in deleted items for 30 days and can be restored), ``deleted`` a
  permanent one (docs/graph-behaviour.md section 3). The runner passes these as hints.
- Every other object (full runs; objects that left the view in an earlier, undelivered run; objects that
  left the scope without being removed) is looked up in batches of ``$batch`` steps: ``GET
  /directoryObjects/{id}`` (a generic task's objects: ``GET /{collection}/{id}``) answers 200 when the
  object still exists (so it left the task's scope), and ``GET /directory/deletedItems/{id}`` 200 when it
  was soft-deleted (asked only for the types Entra keeps there); 404 to both means deleted for good
  (docs/graph-behaviour.md sections 3, 4 and 7).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from urllib.parse import quote

from shared.graph.client import MAX_BATCH_STEPS, BatchStep, GraphClient
from shared.graph.errors import GraphError

log = logging.getLogger(__name__)

DELETED = "deleted"
SOFT_DELETED = "soft_deleted"
OUT_OF_SCOPE = "out_of_scope"
UNKNOWN = "unknown"  # the lookup failed (e.g. a permission is missing): the mark still goes out
REASONS = (DELETED, SOFT_DELETED, OUT_OF_SCOPE, UNKNOWN)
DELTA_REASONS = {"changed": SOFT_DELETED, "deleted": DELETED}  # @removed.reason -> ours
# Collections whose objects Entra keeps in deleted items, restorable for 30 days
# (https://learn.microsoft.com/en-us/graph/api/resources/directory?view=graph-rest-1.0: application,
# group, servicePrincipal, administrativeUnit, user, and external user profiles).
RESTORABLE = frozenset(
    {
        "users",
        "groups",
        "applications",
        "serviceprincipals",
        "directory/administrativeunits",
        "administrativeunits",
    }
)


def from_delta(reason: str | None) -> str | None:
    return DELTA_REASONS.get((reason or "").lower())


async def look_up(
    client: GraphClient, ids: Iterable[str], *, concurrency: int = 4, collection: str | None = None
) -> dict[str, str]:
    """id -> reason, by batched lookups (one or two steps per id, up to ten ids per ``$batch``).

    ``collection``: None for directory objects (users, groups), looked up as ``/directoryObjects/{id}``;
    otherwise a generic task's collection path, whose objects are looked up in it (an Intune managed device
    is no directory object: ``/directoryObjects/{id}`` would call one that is out of scope deleted). Only
    the types Entra keeps in deleted items are looked up there too (:data:`RESTORABLE`); other objects are
    told apart as out of scope (still there) or deleted.
    """
    restorable = collection is None or collection.lower() in RESTORABLE
    pending = list(dict.fromkeys(ids))
    per_batch = MAX_BATCH_STEPS // 2
    chunks = [pending[i : i + per_batch] for i in range(0, len(pending), per_batch)]
    reasons: dict[str, str] = {}
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(chunk: list[str]) -> None:
        found: dict[str, BatchStep] = {}
        steps = []
        for index, object_id in enumerate(chunk):
            segment = quote(object_id, safe="")
            path = f"/{collection}/{segment}" if collection else f"/directoryObjects/{segment}"
            found[f"o{index}"] = BatchStep(f"o{index}", f"{path}?$select=id")
            if restorable:
                found[f"d{index}"] = BatchStep(f"d{index}", f"/directory/deletedItems/{segment}?$select=id")
        steps = list(found.values())
        async with gate:
            results = await client.batch(steps)
        for index, object_id in enumerate(chunk):
            exists = results[f"o{index}"]
            if exists.ok:
                reasons[object_id] = OUT_OF_SCOPE
                continue
            if not exists.missing:
                raise exists.error(found[f"o{index}"])
            if restorable:
                deleted = results[f"d{index}"]
                if deleted.ok:
                    reasons[object_id] = SOFT_DELETED
                    continue
                if not deleted.missing:
                    raise deleted.error(found[f"d{index}"])
            reasons[object_id] = DELETED

    await asyncio.gather(*(one(chunk) for chunk in chunks))
    return reasons


async def reasons_for(
    client: GraphClient | None,
    ids: list[str],
    hints: Mapping[str, str],
    *,
    concurrency: int = 4,
    collection: str | None = None,
) -> dict[str, str]:
    """A reason for every id: the run's hints where it has them, lookups for the rest. Without a client, or
    when the lookups fail, the rest are ``unknown``: a mark is never held back by its reason."""
    reasons = {i: hints[i] for i in ids if i in hints}
    rest = [i for i in ids if i not in reasons]
    if rest and client is not None:
        try:
            reasons.update(await look_up(client, rest, concurrency=concurrency, collection=collection))
        except GraphError as exc:
            log.warning("removal reasons could not be looked up (%s): marked as unknown", exc.redacted())
    for object_id in rest:
        reasons.setdefault(object_id, UNKNOWN)
    return reasons


def removal_hints(delta_reasons: Mapping[str, str]) -> dict[str, str]:
    """A delta round's ``@removed`` reasons as removal reasons (unknown reasons are left to lookups)."""
    hints = {}
    for object_id, reason in delta_reasons.items():
        ours = from_delta(reason)
        if ours is not None:
            hints[object_id] = ours
    return hints
