"""Incremental runs: one Graph delta round per stream, applied to the task's previous view.

A round returns only what changed since the stored delta link: objects created or updated (in Graph's
default mode, with all their selected properties), objects removed (``@removed``), and for groups the
membership changes (``members@delta``, split across pages for large groups: merged here). The new view is
the previous view's file streamed line by line: unchanged records are copied as they are, changed ones are
rebuilt, removed ones dropped, new ones appended, memberships patched. Memory holds the changes only.

Scope is applied client-side (delta cannot filter): an object that no longer matches the task's
``$filter`` leaves the view, one that now matches joins it. Objects that join the view without a delta entry
of their own (a user newly in an "include members of" group, a group that enters the filter) and new groups'
full membership are read directly, in batches.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from azure.storage.blob import ContainerClient

from shared.extract.mapping import Mapper
from shared.extract.members import MemberIds, MemberReader
from shared.extract.streams import Scope, StreamPlan, membership_groups
from shared.extract.view import line_id, parse
from shared.graph.client import MAX_BATCH_STEPS, BatchStep, GraphClient, decode_body
from shared.graph.errors import BadRequest, DeltaTokenExpired, NotFound
from shared.storage.blobs import StagedJsonl, encode_line, read_lines
from shared.storage.tables import RunCounts


@dataclass
class DeltaRound:
    """What one delta round said, merged over its pages (later entries win; replays are harmless)."""

    objects: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> properties (full entries)
    reported: set[str] = field(default_factory=set)  # every id the round reports and does not remove
    removed: set[str] = field(default_factory=set)
    member_adds: dict[str, set[str]] = field(default_factory=dict)  # group -> member ids added
    member_removes: dict[str, set[str]] = field(default_factory=dict)  # group -> member ids removed
    read: int = 0
    delta_link: str = ""

    def add(self, item: dict[str, Any]) -> None:
        self.read += 1
        object_id = item["id"]
        if "@removed" in item:
            self.removed.add(object_id)
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


async def read_round(client: GraphClient, delta_link: str) -> DeltaRound:
    """Every page of one delta round. Any refusal of the link itself (Graph documents ``syncStateNotFound``,
    ``resyncRequired`` and 410 Gone, but not every shape an expired or garbled token can take; or a link for
    a host the connector no longer uses) is a :class:`DeltaTokenExpired`: the caller reads everything."""
    result = DeltaRound()
    try:
        async for page in client.pages(delta_link):
            for item in page.items:
                result.add(item)
            if page.delta_link:
                result.delta_link = page.delta_link
    except (BadRequest, NotFound) as exc:
        raise DeltaTokenExpired(
            exc.message, status=exc.status, code=exc.code, request_id=exc.request_id, url=exc.url
        ) from exc
    return result


async def latest_delta_link(client: GraphClient, plan: StreamPlan, *, members: bool) -> str:
    """A delta link for "changes from now on" (``$deltatoken=latest``): taken before a full read."""
    params = {"$select": ",".join(plan.delta_select(members=members)), "$deltatoken": "latest"}
    link = ""
    async for page in client.pages(f"{plan.collection}/delta", params=params):
        link = page.delta_link or link
    return link


def _patched(
    current: Iterable[str], gained: set[str] | None, lost: set[str] | None, gone: set[str]
) -> list[str]:
    result = set(current)
    if lost:
        result -= lost
    if gone:
        result -= gone
    if gained:
        result |= gained
    return sorted(result)


@dataclass
class ViewMerge:
    """Builds one stream's new view from its previous view and the delta rounds."""

    client: GraphClient
    reader: MemberReader
    plan: StreamPlan
    mapper: Mapper
    scope: Scope
    own_round: DeltaRound | None  # the stream's own changes (None: the stream's objects did not change)
    groups_round: DeltaRound | None  # membership changes (members of groups, memberOf of objects)

    async def run(
        self, container: ContainerClient, previous_blob: str, writer: StagedJsonl, counts: RunCounts
    ) -> None:
        own = self.own_round or DeltaRound()
        counts.read = own.read
        groups = self.groups_round or DeltaRound()
        gained, lost = groups.member_of_changes() if self.mapper.needs_member_of else ({}, {})
        removed_groups = groups.removed if self.mapper.needs_member_of else set()
        removed_pattern = (
            re.compile("|".join(re.escape(g) for g in sorted(removed_groups)).encode())
            if removed_groups
            else None
        )
        is_groups = self.plan.name == "groups"
        # Users who may join without a delta entry of their own: added to an include group, removed from an
        # exclude group (membership changes are in the groups round, not the users round).
        include_groups, exclude_groups = membership_groups(self.plan.selection)
        candidates: set[str] = set()
        for group_id in include_groups:
            candidates |= groups.member_adds.get(group_id, set())
        for group_id in exclude_groups:
            candidates |= groups.member_removes.get(group_id, set())
        in_view: set[str] = set()  # the ids of the previous view that matter below

        async for line in read_lines(container, previous_blob):
            object_id = line_id(line)
            if object_id in own.reported or object_id in candidates:
                in_view.add(object_id)
            if object_id in own.removed or not self.scope.keeps_id(object_id):
                counts.removed += 1
                continue
            adds = own.member_adds.get(object_id) if is_groups else None
            removes = own.member_removes.get(object_id) if is_groups else None
            obj = own.objects.get(object_id)
            touches_member_of = (
                object_id in gained
                or object_id in lost
                or (removed_pattern is not None and removed_pattern.search(line) is not None)
            )
            if obj is None and not adds and not removes and not touches_member_of:
                await writer.write_line(line)
                continue
            previous = parse(line)
            members = (
                _patched(self.mapper.members_of(previous), adds, removes, set())
                if self.mapper.needs_members
                else None
            )
            member_of = (
                _patched(
                    self.mapper.member_of_of(previous),
                    gained.get(object_id),
                    lost.get(object_id),
                    removed_groups,
                )
                if self.mapper.needs_member_of
                else None
            )
            if obj is not None:
                if not self.scope.keeps(obj):
                    counts.removed += 1
                    continue
                record = self.mapper.record(obj, members=members, member_of=member_of)
            else:
                record = self.mapper.with_memberships(previous, members=members, member_of=member_of)
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
            joining.extend(o for o in await self._fetch_objects(to_fetch) if self.scope.keeps(o))
        members_of_new: dict[str, MemberIds | None] = {}
        if is_groups and self.mapper.needs_members and joining:
            members_of_new = await self.reader.members(o["id"] for o in joining)
        parents_of_new: dict[str, MemberIds | None] = {}
        if self.mapper.needs_member_of and joining:
            parents_of_new = await self.reader.member_of(
                [o["id"] for o in joining], collection=self.plan.collection
            )
        for obj in joining:
            oid = obj["id"]
            if is_groups and self.mapper.needs_members and members_of_new.get(oid) is None:
                continue  # vanished meanwhile
            counts.changed += 1
            await writer.write(
                self.mapper.record(
                    obj,
                    members=members_of_new.get(oid) if is_groups else None,
                    member_of=parents_of_new.get(oid) if self.mapper.needs_member_of else None,
                )
            )
        await writer.flush()
        counts.written = writer.records

    async def _fetch_objects(self, ids: list[str]) -> list[dict[str, Any]]:
        select = ",".join(self.plan.delta_select(members=False))
        found: list[dict[str, Any]] = []
        for start in range(0, len(ids), MAX_BATCH_STEPS):
            chunk = ids[start : start + MAX_BATCH_STEPS]
            steps = [
                BatchStep(str(i), f"/{self.plan.collection}/{oid}?$select={select}")
                for i, oid in enumerate(chunk)
            ]
            answers = await self.client.batch(steps)
            for step in steps:
                answer = answers[step.id]
                if answer.missing:
                    continue
                if not answer.ok:
                    raise answer.error(step)
                body = decode_body(answer)
                found.append({k: v for k, v in body.items() if not k.startswith("@odata")})
        return found
