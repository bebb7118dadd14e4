"""Preview: what a task would make of one object, or of the first few, without writing anything.

For each of the task's streams, ``preview`` reads from Graph exactly what a run would (the stream's
``$select``, query and headers; its relations and sub-queries for those objects only, read directly, never
the whole tenant's memberships), maps the objects, and compares each record with the task cache (the last
delivered view's digests) to say what would be delivered: ``new``, ``changed`` or ``unchanged`` (an
unchanged record is not sent). Nothing is written: no blob, no state, no history, no delivery; storage is
only read (a task never delivered reads nothing there).

``python -m shared.cli preview TASK [--id OBJECT_ID | --sample N]``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from azure.core.exceptions import ResourceNotFoundError

from shared.config import Config
from shared.extract.fanout import FanOut, MemberIds
from shared.extract.mapping import Mapper
from shared.extract.relations import RelationContext
from shared.extract.scoping import base_scope
from shared.extract.streams import Stream, task_streams
from shared.graph.client import GraphClient
from shared.graph.errors import NotFound
from shared.services import Services
from shared.storage import digests
from shared.storage.blobs import encode_line
from shared.storage.delivery import DeliveryStateStore

DEFAULT_SAMPLE = 3
MAX_SAMPLE = 100


@dataclass
class PreviewItem:
    stream: str
    graph: dict[str, Any]  # the object as Graph returned it
    related: dict[str, Any]  # relations (member ids) and sub-query results, per name or path
    record: dict[str, Any]  # the mapped record, as the view file would hold it
    delivery: str  # new | changed | unchanged | out of scope
    target_template: str
    target_folder: str

    def as_json(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "graph": self.graph,
            "related": self.related,
            "record": self.record,
            "delivery": {
                "status": self.delivery,
                "sent": self.delivery in ("new", "changed"),
                "target_template": self.target_template,
                "target_folder": self.target_folder,
            },
        }


def _plain(value: Any) -> Any:
    """Relation values as JSON (packed member ids as a sorted list)."""
    if isinstance(value, MemberIds):
        return value.sorted()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


async def _objects(client: GraphClient, stream: Stream, object_id: str | None, sample: int) -> list[dict]:
    if object_id is not None:
        params = {"$select": ",".join(stream.delta_select())}  # with what the task's $filter reads
        try:
            found = await client.get_json(
                f"{stream.collection}/{quote(object_id, safe='')}", params=params, headers=stream.headers()
            )
        except NotFound:
            return []
        return [{k: v for k, v in found.items() if not k.startswith("@odata")}]
    params = stream.list_params()
    params["$top"] = str(min(int(params["$top"]), sample))
    objects: list[dict] = []
    async for page in client.pages(stream.collection, params=params, headers=stream.headers()):
        objects.extend(page.items)
        if len(objects) >= sample:
            break
    return objects[:sample]


async def _delivered(services: Services, task: str) -> dict[str, digests.DigestTable]:
    state = await DeliveryStateStore(services.state.table).get(task)
    tables = {}
    if state.delivered is not None and not state.resend_all:
        for stream, blob in state.delivered.digests.items():
            try:
                table = await digests.load(services.extracts, blob)
            except ResourceNotFoundError:
                table = None
            if table is not None:
                tables[stream] = table
    return tables


async def preview(
    services: Services,
    config: Config,
    task_name: str,
    *,
    object_id: str | None = None,
    sample: int = DEFAULT_SAMPLE,
) -> list[PreviewItem]:
    """What the task would read, map and deliver for ``object_id`` (in any of its streams) or for the
    first ``sample`` objects of each stream."""
    if not 1 <= sample <= MAX_SAMPLE:
        raise ValueError(f"--sample must be 1 to {MAX_SAMPLE}")
    task = config.task(task_name)
    connector = config.connector(task.connector)
    client = services.graph(connector)
    delivered = await _delivered(services, task.storage_key)
    items: list[PreviewItem] = []
    async with client.context():
        context = RelationContext(FanOut(client, services.settings.graph_concurrency))
        for stream in task_streams(task):
            mapper = Mapper(stream.selection, task.name)
            relations = {name: stream.spec.relations[name](stream.spec, context) for name in stream.related()}
            scope = base_scope(stream.selection, client_side=object_id is not None)
            for make in stream.spec.scopings:
                scoping = make(stream.selection)
                if scoping is not None:
                    scope = await scoping.narrow(scope, context.fanout)
            objects = await _objects(client, stream, object_id, sample)
            ids = [obj["id"] for obj in objects]
            values = (
                {name: await relation.join_values(ids) for name, relation in relations.items()} if ids else {}
            )
            table = delivered.get(stream.name)
            for obj in objects:
                related = {name: found.get(obj["id"]) for name, found in values.items()}
                record = mapper.record(obj, related)
                items.append(
                    PreviewItem(
                        stream=stream.name,
                        graph=obj,
                        related=_plain(related),
                        record=record,
                        delivery=_status(table, record) if scope.keeps(obj) else "out of scope",
                        target_template=stream.selection.target_template,
                        target_folder=stream.selection.target_folder,
                    )
                )
    return items


def _status(table: digests.DigestTable | None, record: dict[str, Any]) -> str:
    if table is None:
        return "new"
    position = table.find(digests.id_hash(record["id"]))
    if position < 0 or table.digests[position] == digests.MARKED:
        return "new"
    return "unchanged" if table.digests[position] == digests.line_digest(encode_line(record)) else "changed"


def render(items: Iterable[PreviewItem]) -> list[dict[str, Any]]:
    return [item.as_json() for item in items]
