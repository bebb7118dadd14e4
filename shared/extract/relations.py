"""Relations: per-item fan-outs that fill a pseudo-attribute (``members``, ``memberOf``) of a stream's records.

A relation answers three questions, for any stream that offers it:

- full reads: the values for a page of objects (:meth:`Relation.full_values`);
- objects that join the view in an incremental run: their values, read directly (:meth:`Relation.join_values`);
- incremental merges: whether a previous record is touched by this round's changes, and its patched values.

``None`` for an object means it no longer exists (Graph said not found): the record is left out, as the next
read would.

``memberOf`` in a full read comes from one index of every group's members (one batched read of all groups,
whatever the task's query) rather than one request per object; its memory is the index's (about 35 MB per
million memberships).
"""

from __future__ import annotations

import asyncio
import re
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from shared.extract.fanout import PAGE_QUERY, FanOut, IdCollector, MemberIds, SubQuery

if TYPE_CHECKING:
    from shared.extract.incremental import DeltaRound
    from shared.extract.streams import StreamSpec

GROUP_TYPE = "#microsoft.graph.group"
Values = dict[str, MemberIds | list[str] | None]


class MembershipIndex:
    """Every direct membership of the tenant's groups, both ways, for ``memberOf`` mappings.

    Members stay packed per group; each member's groups are an array of group numbers, so a tenant of
    1,000,000 memberships costs tens of megabytes, not the hundreds that lists of strings would."""

    def __init__(self) -> None:
        self._members: dict[str, MemberIds] = {}
        self._group_ids: list[str] = []
        self._parents: dict[str, array[int]] = {}

    def add(self, group_id: str, member_ids: MemberIds) -> None:
        self._members[group_id] = member_ids
        number = len(self._group_ids)
        self._group_ids.append(group_id)
        for member_id in member_ids.sorted():
            parents = self._parents.get(member_id)
            if parents is None:
                parents = self._parents[member_id] = array("I")
            parents.append(number)

    def members(self, group_id: str) -> MemberIds:
        return self._members.get(group_id) or MemberIds()

    def member_of(self, object_id: str) -> list[str]:
        return [self._group_ids[number] for number in self._parents.get(object_id, ())]


@dataclass
class RelationContext:
    """What relations of one run share: the fan-out (its concurrency gate) and the membership index."""

    fanout: FanOut
    _index: MembershipIndex | None = None
    _index_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def index(self) -> MembershipIndex | None:
        return self._index

    async def membership_index(self) -> MembershipIndex:
        """Every group's direct members (all groups, whatever the task's query), read once per run."""
        async with self._index_lock:
            if self._index is None:
                index = MembershipIndex()
                query = SubQuery(f"/groups/{{id}}/members?{PAGE_QUERY}", IdCollector)
                async for page in self.fanout.client.pages("groups", params={"$select": "id", "$top": "999"}):
                    found = await self.fanout.collections((g["id"] for g in page.items), query)
                    for group_id, collector in found.items():
                        if collector is not None:
                            index.add(group_id, collector.ids)
                self._index = index
            return self._index


class Relation(Protocol):
    name: str
    uses_membership_round: bool  # incremental runs need the groups' delta round (members@delta)
    tracks_own_members: bool  # the stream's own delta round must carry members@delta

    async def prepare(self) -> None: ...
    async def full_values(self, ids: list[str]) -> Values: ...
    async def join_values(self, ids: list[str]) -> Values: ...
    def begin_merge(self, own: DeltaRound, memberships: DeltaRound) -> None: ...
    async def prefetch(self, own: DeltaRound) -> None: ...  # before a merge: read what changed items need
    def touches(self, object_id: str, line: bytes) -> bool: ...
    def patch(self, object_id: str, current: Iterable[str]) -> list[str] | MemberIds: ...


RelationFactory = Callable[["StreamSpec", RelationContext], Relation]


def _patched(
    current: Iterable[str], gained: set[str] | None, lost: set[str] | None, gone: set[str]
) -> list[str] | MemberIds:
    if isinstance(current, MemberIds):  # a previous record's ids, packed (view.parse_packed)
        return current.patched(gained or (), (lost or set()) | gone)
    result = set(current)
    if lost:
        result -= lost
    if gone:
        result -= gone
    if gained:
        result |= gained
    return sorted(result)


@dataclass
class Members:
    """A group's direct members (``/groups/{id}/members``); incremental runs patch them from members@delta."""

    spec: StreamSpec
    context: RelationContext
    name: str = "members"
    uses_membership_round: bool = False
    tracks_own_members: bool = True
    _own: DeltaRound | None = None

    def _query(self) -> SubQuery[IdCollector]:
        return SubQuery(f"/{self.spec.collection}/{{id}}/members?{PAGE_QUERY}", IdCollector)

    async def prepare(self) -> None:
        return None

    async def full_values(self, ids: list[str]) -> Values:
        index = self.context.index  # read anyway when a memberOf mapping needs it
        if index is not None:
            return {object_id: index.members(object_id) for object_id in ids}
        return await self.join_values(ids)

    async def join_values(self, ids: list[str]) -> Values:
        found = await self.context.fanout.collections(ids, self._query())
        return {object_id: None if c is None else c.ids for object_id, c in found.items()}

    def begin_merge(self, own: DeltaRound, memberships: DeltaRound) -> None:
        self._own = own

    async def prefetch(self, own: DeltaRound) -> None:
        return None

    def touches(self, object_id: str, line: bytes) -> bool:
        own = self._own
        return own is not None and (object_id in own.member_adds or object_id in own.member_removes)

    def patch(self, object_id: str, current: Iterable[str]) -> list[str] | MemberIds:
        own = self._own
        if own is None:
            return sorted(current)
        return _patched(current, own.member_adds.get(object_id), own.member_removes.get(object_id), set())


@dataclass
class MemberOf:
    """The groups an object is directly in. Full reads take them from the membership index; objects joining
    an incremental view read ``/{collection}/{id}/memberOf`` (groups only: it also lists directory roles and
    administrative units); merges patch them from the groups' delta round."""

    spec: StreamSpec
    context: RelationContext
    name: str = "memberOf"
    uses_membership_round: bool = True
    tracks_own_members: bool = False
    _gained: dict[str, set[str]] = field(default_factory=dict)
    _lost: dict[str, set[str]] = field(default_factory=dict)
    _removed_groups: set[str] = field(default_factory=set)
    _removed_pattern: re.Pattern[bytes] | None = None

    async def prepare(self) -> None:
        await self.context.membership_index()

    async def full_values(self, ids: list[str]) -> Values:
        index = self.context.index
        assert index is not None, "prepare() builds the index"
        return {object_id: index.member_of(object_id) for object_id in ids}

    async def join_values(self, ids: list[str]) -> Values:
        query = SubQuery(
            f"/{self.spec.collection}/{{id}}/memberOf?{PAGE_QUERY}", lambda: IdCollector(GROUP_TYPE)
        )
        found = await self.context.fanout.collections(ids, query)
        return {object_id: None if c is None else c.ids for object_id, c in found.items()}

    async def prefetch(self, own: DeltaRound) -> None:
        return None

    def begin_merge(self, own: DeltaRound, memberships: DeltaRound) -> None:
        self._gained, self._lost = memberships.member_of_changes()
        self._removed_groups = set(memberships.removed)
        self._removed_pattern = (
            re.compile("|".join(re.escape(g) for g in sorted(self._removed_groups)).encode())
            if self._removed_groups
            else None
        )

    def touches(self, object_id: str, line: bytes) -> bool:
        return (
            object_id in self._gained
            or object_id in self._lost
            or (self._removed_pattern is not None and self._removed_pattern.search(line) is not None)
        )

    def patch(self, object_id: str, current: Iterable[str]) -> list[str] | MemberIds:
        return _patched(current, self._gained.get(object_id), self._lost.get(object_id), self._removed_groups)


def members(spec: StreamSpec, context: RelationContext) -> Relation:
    return Members(spec, context)


def member_of(spec: StreamSpec, context: RelationContext) -> Relation:
    return MemberOf(spec, context)
