"""Direct group memberships, read with as few round trips as Graph allows.

The first page of each group's members is fetched through ``$batch`` (20 groups per call, a bounded
number of calls in flight, throttled steps retried by the client); a group with more members than one page
continues on its own chain of ``@odata.nextLink`` pages, concurrently with everything else, so a very large
group does not hold the rest back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field

from shared.graph.client import MAX_BATCH_STEPS, BatchStep, GraphClient, decode_body

MEMBERS_QUERY = "$select=id&$top=999"
GROUP_TYPE = "#microsoft.graph.group"


def _ids(items: list[dict], only_type: str | None) -> list[str]:
    if only_type is None:
        return [item["id"] for item in items]
    return [item["id"] for item in items if item.get("@odata.type", only_type) == only_type]


@dataclass
class MemberReader:
    client: GraphClient
    concurrency: int = 8
    _gate: asyncio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        self._gate = asyncio.Semaphore(self.concurrency)

    async def members(self, group_ids: Iterable[str]) -> dict[str, list[str] | None]:
        """Member ids per group; ``None`` for a group that no longer exists."""
        return await self._each(group_ids, "/groups/{}/members?" + MEMBERS_QUERY)

    async def member_of(
        self, object_ids: Iterable[str], collection: str = "users"
    ) -> dict[str, list[str] | None]:
        """Ids of the groups each object is directly in; ``None`` for an object that no longer exists."""
        # memberOf also lists directory roles and administrative units: keep groups only.
        return await self._each(object_ids, f"/{collection}/{{}}/memberOf?{MEMBERS_QUERY}", GROUP_TYPE)

    async def _each(
        self, object_ids: Iterable[str], path: str, only_type: str | None = None
    ) -> dict[str, list[str] | None]:
        ids = list(dict.fromkeys(object_ids))
        chunks = [ids[i : i + MAX_BATCH_STEPS] for i in range(0, len(ids), MAX_BATCH_STEPS)]
        results: dict[str, list[str] | None] = {}
        await asyncio.gather(*(self._chunk(chunk, path, results, only_type) for chunk in chunks))
        return results

    async def _chunk(
        self, group_ids: list[str], path: str, results: dict[str, list[str] | None], only_type: str | None
    ) -> None:
        steps = [BatchStep(str(i), path.format(gid)) for i, gid in enumerate(group_ids)]
        async with self._gate:
            answers = await self.client.batch(steps)
        follow = []
        for step, gid in zip(steps, group_ids, strict=True):
            answer = answers[step.id]
            if answer.status == 404:
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

    async def _rest(self, object_id: str, link: str, results: dict[str, list[str] | None], only_type) -> None:
        found = results[object_id]
        assert found is not None
        async for page in self.client.pages(link):
            found.extend(_ids(page.items, only_type))

    async def member_set(self, group_ids: Iterable[str]) -> set[str]:
        """Everyone directly in any of the groups (missing groups count as empty)."""
        found: set[str] = set()
        for members in (await self.members(group_ids)).values():
            found.update(members or ())
        return found


class MembershipIndex:
    """Every direct membership of the tenant's groups, both ways, for ``memberOf`` mappings."""

    def __init__(self) -> None:
        self.members: dict[str, list[str]] = {}
        self.groups_of: dict[str, list[str]] = {}

    def add(self, group_id: str, member_ids: Iterable[str]) -> None:
        members = self.members.setdefault(group_id, [])
        for member_id in member_ids:
            members.append(member_id)
            self.groups_of.setdefault(member_id, []).append(group_id)

    def member_of(self, object_id: str) -> list[str]:
        return self.groups_of.get(object_id, [])
