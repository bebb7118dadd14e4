"""Generic streams: a :class:`StreamSpec` built from a task's generic selection, and their watermark rounds.

A generic selection (:mod:`shared.config.generic`) names any collection; its specification says whether
Graph offers delta for it, which timestamp property serves instead when it does not, and offers one
relation, the selection's sub-queries (:mod:`shared.extract.subqueries`). Everything else is the stream
pipeline every stream runs through: full reads page by page, incremental runs merged into the view.

**Watermark rounds** (collections without delta, ``timestamp_property`` set): the task's per-stream change
cursor in the state table (where a delta stream keeps its delta link) holds
``watermark:<property>:<UTC time>``, taken *before* a read and set back by the selection's
``watermark_overlap_s`` for clock skew. A round then reads

1. the items whose property is later than the watermark (the task's ``$filter`` ``and`` ``<property> gt
   <time>``), with every mapped property: they are the round's changed or new objects; and
2. the ids of every item in scope (``$select=id``, the task's ``$filter``): an id of the previous view that
   is no longer listed is removed.

An item changed in the overlap is read again: applying it twice is harmless. Properties that change without
the timestamp moving are refreshed by full runs (a full read, or the daily cache clear's re-delivery, does
not reset the watermark).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import MappingProxyType

from azure.storage.blob import ContainerClient

from shared.config.generic import SUB_QUERIES, GenericSelection
from shared.extract.incremental import DeltaRound
from shared.extract.relations import RelationFactory
from shared.extract.streams import Stream, StreamSpec
from shared.extract.subqueries import sub_queries_factory
from shared.graph.client import GraphClient
from shared.storage.blobs import read_lines
from shared.storage.views import line_id

WATERMARK = "watermark:"


def generic_spec(selection: GenericSelection) -> StreamSpec:
    """The specification of a generic selection's stream (named after the collection's last segment)."""
    relations: dict[str, RelationFactory] = {}
    if selection.sub_queries:
        relations[SUB_QUERIES] = sub_queries_factory(selection)
    return StreamSpec(
        name=selection.stream_name,
        collection=selection.collection,
        key=selection.key,
        delta=selection.delta_offered,
        relations=MappingProxyType(relations),
        watermark=None if selection.delta_offered else selection.timestamp_property,
    )


def generic_stream(selection: GenericSelection) -> Stream:
    return Stream(generic_spec(selection), selection)


# ----------------------------------------------------------------------------------------- watermarks


def is_watermark(cursor: str) -> bool:
    return cursor.startswith(WATERMARK)


def start_watermark(stream: Stream, now: datetime | None = None) -> str:
    """The cursor a read taken now starts the next round from (set back by the overlap)."""
    assert stream.spec.watermark is not None
    overlap = getattr(stream.selection, "watermark_overlap_s", 0)
    moment = (now or datetime.now(UTC)) - timedelta(seconds=overlap)
    return f"{WATERMARK}{stream.spec.watermark}:{moment.strftime('%Y-%m-%dT%H:%M:%SZ')}"


def watermark_filter(cursor: str, user_filter: str | None) -> str:
    """``$filter`` for the items changed since ``cursor``: the task's own ``and`` the timestamp clause."""
    prop, _, moment = cursor[len(WATERMARK) :].partition(":")
    clause = f"{prop} gt {moment}"
    return f"({user_filter}) and {clause}" if user_filter else clause


async def watermark_round(
    client: GraphClient, stream: Stream, cursor: str, extracts: ContainerClient, previous_blob: str
) -> DeltaRound:
    """A round of a collection without delta: changed items by timestamp, removals by listing ids."""
    next_cursor = start_watermark(stream)
    result = DeltaRound()
    params = stream.list_params()
    user_filter = params.get("$filter")
    changed = {**params, "$filter": watermark_filter(cursor, user_filter)}
    changed["$select"] = ",".join(stream.delta_select())
    changed.pop("$orderby", None)
    async for page in client.pages(stream.collection, params=changed, headers=stream.headers()):
        for item in page.items:
            result.add(item)
    listed: set[str] = set()
    ids = {"$top": params["$top"], "$select": "id"}
    if user_filter:
        ids["$filter"] = user_filter
    async for page in client.pages(stream.collection, params=ids, headers=stream.headers()):
        listed.update(item["id"] for item in page.items)
    reason = "" if user_filter else "deleted"  # with a filter, an unlisted item may only be out of scope
    async for line in read_lines(extracts, previous_blob):
        object_id = line_id(line)
        if object_id not in listed:
            result.add({"id": object_id, "@removed": {"reason": reason}})
    result.delta_link = next_cursor
    return result
