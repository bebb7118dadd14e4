"""Incremental runs: one Graph delta round per stream, applied to the task's previous view, for any stream.

A round returns only what changed since the stored delta link: objects created or updated (in Graph's
default mode, with all their selected properties), objects removed (``@removed``), and for groups the
membership changes (``members@delta``, split across pages for large groups: merged here). The new view is
the previous view's file streamed line by line: unchanged records are copied as they are, changed ones are
rebuilt, removed ones dropped, new ones appended, memberships patched. Memory holds the changes only.

Scope is applied client-side (delta cannot filter): an object that no longer matches the task's
``$filter`` leaves the view, one that now matches joins it. Objects that join the view without a delta entry
of their own (a user newly in an "include members of" group, a group that enters the filter) and the
relations of new objects (a new group's members) are read directly, through the one $batch fan-out.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from azure.storage.blob import ContainerClient

from shared.extract.fanout import FanOut
from shared.extract.mapping import Mapper
from shared.extract.relations import Relation, Values
from shared.extract.scoping import Scope, Scoping
from shared.extract.streams import Stream
from shared.extract.view import parse_packed
from shared.graph.client import GraphClient
from shared.graph.errors import BadRequest, DeltaTokenExpired, NotFound
from shared.runs import RunCounts
from shared.storage.blobs import StagedJsonl, encode_line, read_lines
from shared.storage.views import line_id


@dataclass
class DeltaRound:
    """What one delta round said, merged over its pages (later entries win; replays are harmless)."""

    objects: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> properties (full entries)
    reported: set[str] = field(default_factory=set)  # every id the round reports and does not remove
    removed: set[str] = field(default_factory=set)
    removed_reasons: dict[str, str] = field(default_factory=dict)  # id -> @removed.reason (changed | deleted)
    member_adds: dict[str, set[str]] = field(default_factory=dict)  # group -> member ids added
    member_removes: dict[str, set[str]] = field(default_factory=dict)  # group -> member ids removed
    read: int = 0
    delta_link: str = ""

    def add(self, item: dict[str, Any]) -> None:
        self.read += 1
        object_id = item["id"]
        if "@removed" in item:
            self.removed.add(object_id)
            self.removed_reasons[object_id] = str((item["@removed"] or {}).get("reason") or "")
            self.reported.discard(object_id)
            self.objects.pop(object_id, None)
            self.member_adds.pop(object_id, None)
            self.member_removes.pop(object_id, None)
            return
        self.removed.discard(object_id)
        self.reported.add(object_id)
        properties = {k: v for k, v in item.items() if "@" not in k}
        if len(properties) > 1:  # more than the id: a full representation (default delta mode)
            self.objects[object_id] = properties
        for member in item.get("members@delta") or ():
            member_id = member["id"]
            if "@removed" in member:
                self.member_adds.get(object_id, set()).discard(member_id)
                self.member_removes.setdefault(object_id, set()).add(member_id)
            else:
                self.member_removes.get(object_id, set()).discard(member_id)
                self.member_adds.setdefault(object_id, set()).add(member_id)

    def member_of_changes(self) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
        """The same membership changes seen from the members' side: object -> groups gained / lost."""
        gained: dict[str, set[str]] = {}
        lost: dict[str, set[str]] = {}
        for group_id, members in self.member_adds.items():
            for member_id in members:
                gained.setdefault(member_id, set()).add(group_id)
        for group_id, members in self.member_removes.items():
            for member_id in members:
                lost.setdefault(member_id, set()).add(group_id)
        return gained, lost


async def read_round(
    client: GraphClient, delta_link: str, stop: Callable[[], Awaitable[None]] | None = None
) -> DeltaRound:
    """Every page of one delta round. Any refusal of the link itself (Graph documents ``syncStateNotFound``,
    ``resyncRequired`` and 410 Gone, but not every shape an expired or garbled token can take; or a link for
    a host the connector no longer uses) is a :class:`DeltaTokenExpired`: the caller reads everything."""
    result = DeltaRound()
    try:
        async for page in client.pages(delta_link):
            if stop is not None:
                await stop()  # at each page boundary: an administrator's stop request
            for item in page.items:
                result.add(item)
            if page.delta_link:
                result.delta_link = page.delta_link
    except (BadRequest, NotFound) as exc:
        raise DeltaTokenExpired(
            exc.message, status=exc.status, code=exc.code, request_id=exc.request_id, url=exc.url
        ) from exc
    return result


async def latest_delta_link(client: GraphClient, stream: Stream, *, members: bool) -> str:
    """A delta link for "changes from now on" (``$deltatoken=latest``): taken before a full read."""
    params = {"$select": ",".join(stream.delta_select(members=members)), "$deltatoken": "latest"}
    link = ""
    async for page in client.pages(f"{stream.collection}/delta", params=params):
        link = page.delta_link or link
    return link


@dataclass
class ViewMerge:
    """Builds one stream's new view from its previous view and the delta rounds."""

    fanout: FanOut
    stream: Stream
    mapper: Mapper
    scope: Scope
    relations: dict[str, Relation]
    scopings: list[Scoping]
    own_round: DeltaRound | None  # the stream's own changes (None: the stream's objects did not change)
    memberships: DeltaRound | None  # the groups' round: membership changes (members of groups, memberOf)

    async def run(
        self, container: ContainerClient, previous_blob: str, writer: StagedJsonl, counts: RunCounts
    ) -> None:
        own = self.own_round or DeltaRound()
        counts.read = own.read
        memberships = self.memberships or DeltaRound()
        for relation in self.relations.values():
            relation.begin_merge(own, memberships)
            await relation.prefetch(own)
        candidates: set[str] = set()  # objects that may join without a delta entry of their own
        for scoping in self.scopings:
            candidates |= scoping.candidates(memberships)
        in_view: set[str] = set()  # the ids of the previous view that matter below
        packed_codes = [
            self.mapper.related_codes[name] for name in self.relations if name in self.mapper.related_codes
        ]

        async for line in read_lines(container, previous_blob):
            object_id = line_id(line)
            if object_id in own.reported or object_id in candidates:
                in_view.add(object_id)
            if object_id in own.removed or not self.scope.keeps_id(object_id):
                counts.removed += 1
                continue
            obj = own.objects.get(object_id)
            touched = any(relation.touches(object_id, line) for relation in self.relations.values())
            if obj is None and not touched:
                await writer.write_line(line)
                continue
            previous = parse_packed(line, packed_codes)  # member ids stay packed: a group may have millions
            related = {
                name: relation.patch(object_id, self.mapper.related_of(previous, name))
                for name, relation in self.relations.items()
            }
            if obj is not None:
                if not self.scope.keeps(obj):
                    counts.removed += 1
                    continue
                record = self.mapper.record(obj, related, packed=True)
            else:
                record = self.mapper.with_related(previous, related)
            encoded = encode_line(record)
            if encoded.rstrip(b"\n") != line.rstrip(b"\n"):
                counts.changed += 1
            await writer.write_line(encoded)

        # Objects that join the view: reported with their properties, or reported by id only (Graph omits
        # properties never set, so a new object can arrive as its id alone), or newly in scope by membership.
        joining = [obj for oid, obj in own.objects.items() if oid not in in_view and self.scope.keeps(obj)]
        unknown = (own.reported - own.objects.keys()) | candidates
        to_fetch = sorted(oid for oid in unknown - in_view - own.removed if self.scope.keeps_id(oid))
        if to_fetch:
            select = ",".join(self.stream.delta_select())
            fetched = await self.fanout.objects(
                to_fetch, f"/{self.stream.collection}/{{id}}?$select={select}"
            )
            joining.extend(obj for obj in fetched.values() if obj is not None and self.scope.keeps(obj))
        ids = [obj["id"] for obj in joining]
        values: dict[str, Values] = {}
        if ids:
            values = {name: await relation.join_values(ids) for name, relation in self.relations.items()}
        for obj in joining:
            joined = {name: found.get(obj["id"]) for name, found in values.items()}
            if any(value is None for value in joined.values()):
                continue  # vanished meanwhile
            counts.changed += 1
            await writer.write(self.mapper.record(obj, joined))
        await writer.flush()
        counts.written = writer.records
