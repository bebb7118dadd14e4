"""Direct group memberships, read with as few round trips as Graph allows.

The first page of each group's members is fetched through ``$batch`` (20 groups per call, a bounded
number of calls in flight, throttled steps retried by the client); a group with more members than one page
continues on its own chain of ``@odata.nextLink`` pages, concurrently with everything else, so a very large
group does not hold the rest back.
"""

from __future__ import annotations

import asyncio
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field

from shared.graph.client import MAX_BATCH_STEPS, BatchStep, GraphClient, decode_body

MEMBERS_QUERY = "$select=id&$top=999"
GROUP_TYPE = "#microsoft.graph.group"


class MemberIds:
    """One group's member ids, packed 16 bytes each (directory object ids are GUIDs).

    A group of 100,000 members costs 1.6 MB here instead of about 10 MB of Python strings, and, more
    important, no long-lived small objects are left scattered between the short-lived ones a page's
    JSON creates, so the memory a very large group took returns to the system once its record is written.
    """

    __slots__ = ("_other", "_packed")

    def __init__(self, ids: Iterable[str] = ()) -> None:
        self._packed = bytearray()
        self._other: list[str] = []
        self.extend(ids)

    def extend(self, ids: Iterable[str]) -> None:
        for object_id in ids:
            raw = object_id.replace("-", "")
            if len(raw) == 32:
                try:
                    self._packed += bytes.fromhex(raw)
                    continue
                except ValueError:
                    pass
            self._other.append(object_id)

    def __len__(self) -> int:
        return len(self._packed) // 16 + len(self._other)

    def __iter__(self):
        return iter(self.sorted())

    def sorted(self) -> list[str]:
        """The ids as canonical lower-case GUID strings, sorted."""
        packed = self._packed
        chunks = sorted(packed[i : i + 16] for i in range(0, len(packed), 16))
        ids = []
        for chunk in chunks:
            h = chunk.hex()
            ids.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
        if self._other:
            ids = sorted(ids + self._other)
        return ids


def _ids(items: list[dict], only_type: str | None) -> MemberIds:
    if only_type is None:
        return MemberIds(item["id"] for item in items)
    return MemberIds(item["id"] for item in items if item.get("@odata.type", only_type) == only_type)


@dataclass
class MemberReader:
    client: GraphClient
    concurrency: int = 8
    _gate: asyncio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        self._gate = asyncio.Semaphore(self.concurrency)

    async def members(self, group_ids: Iterable[str]) -> dict[str, MemberIds | None]:
        """Member ids per group; ``None`` for a group that no longer exists."""
        return await self._each(group_ids, "/groups/{}/members?" + MEMBERS_QUERY)

    async def member_of(
        self, object_ids: Iterable[str], collection: str = "users"
    ) -> dict[str, MemberIds | None]:
        """Ids of the groups each object is directly in; ``None`` for an object that no longer exists."""
        # memberOf also lists directory roles and administrative units: keep groups only.
        return await self._each(object_ids, f"/{collection}/{{}}/memberOf?{MEMBERS_QUERY}", GROUP_TYPE)

    async def _each(
        self, object_ids: Iterable[str], path: str, only_type: str | None = None
    ) -> dict[str, MemberIds | None]:
        ids = list(dict.fromkeys(object_ids))
        chunks = [ids[i : i + MAX_BATCH_STEPS] for i in range(0, len(ids), MAX_BATCH_STEPS)]
        results: dict[str, MemberIds | None] = {}
        await asyncio.gather(*(self._chunk(chunk, path, results, only_type) for chunk in chunks))
        return results

    async def _chunk(
        self, group_ids: list[str], path: str, results: dict[str, MemberIds | None], only_type: str | None
    ) -> None:
        steps = [BatchStep(str(i), path.format(gid)) for i, gid in enumerate(group_ids)]
        async with self._gate:
            answers = await self.client.batch(steps)
        follow = []
        for step, gid in zip(steps, group_ids, strict=True):
            answer = answers[step.id]
            if answer.missing:
                results[gid] = None
                continue
            if not answer.ok:
                raise answer.error(step)
            body = decode_body(answer)
            results[gid] = _ids(body.get("value", []), only_type)
            if body.get("@odata.nextLink"):
                follow.append((gid, body["@odata.nextLink"]))
        if follow:
            await asyncio.gather(*(self._rest(gid, link, results, only_type) for gid, link in follow))

    async def _rest(self, object_id: str, link: str, results: dict[str, MemberIds | None], only_type) -> None:
        found = results[object_id]
        assert found is not None
        async for page in self.client.pages(link):
            found.extend(_ids(page.items, only_type))

    async def member_set(self, group_ids: Iterable[str]) -> set[str]:
        """Everyone directly in any of the groups (missing groups count as empty)."""
        found: set[str] = set()
        for members in (await self.members(group_ids)).values():
            if members is not None:
                found.update(members.sorted())
        return found


class MembershipIndex:
    """Every direct membership of the tenant's groups, both ways, for ``memberOf`` mappings.

    Members stay packed per group; each member's groups are an array of group numbers, so a tenant of
    1,000,000 memberships costs tens of megabytes, not the hundreds that lists of strings would."""

    def __init__(self) -> None:
        self._members: dict[str, MemberIds] = {}
        self._group_ids: list[str] = []
        self._parents: dict[str, array] = {}

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
