"""Full reads: every user and group the task's queries select, with direct memberships.

Users stream page by page into the output (memory stays flat); the run checkpoints its resume link and the
blocks staged so far every ``CHECKPOINT_EVERY_S`` seconds, so a restarted invocation continues from there.
Groups pages are processed a few at a time: while one page waits for a very large group's member pages, the
next pages proceed; each page's records go into blocks of their own, and the checkpoint covers the longest
run of finished pages from the start.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from shared.extract.mapping import Mapper
from shared.extract.members import MemberReader, MembershipIndex
from shared.extract.streams import Scope, StreamPlan
from shared.graph.client import GraphClient
from shared.storage.blobs import StagedJsonl
from shared.storage.tables import RunCounts

CHECKPOINT_EVERY_S = 20.0
GROUP_PAGES_IN_FLIGHT = 3

SaveCheckpoint = Callable[[str, dict[str, Any]], Awaitable[None]]
Progress = Callable[[str, int], None]


@dataclass
class FullRead:
    client: GraphClient
    members: MemberReader
    save_checkpoint: SaveCheckpoint
    progress: Progress | None = None

    def _report(self, stream: str, count: int) -> None:
        if self.progress is not None:
            self.progress(stream, count)

    async def users(
        self,
        plan: StreamPlan,
        mapper: Mapper,
        scope: Scope,
        writer: StagedJsonl,
        counts: RunCounts,
        *,
        index: MembershipIndex | None = None,
        resume: dict[str, Any] | None = None,
    ) -> None:
        start, params = _starting_point(plan, resume, counts)
        last_saved = time.monotonic()
        async for page in self.client.pages(start, params=params, headers=plan.headers()):
            for obj in page.items:
                counts.read += 1
                if not scope.keeps(obj):
                    continue
                member_of = (
                    index.member_of(obj["id"]) if index is not None and mapper.needs_member_of else None
                )
                await writer.write(mapper.record(obj, member_of=member_of))
            self._report(plan.name, counts.read)
            if page.next_link and time.monotonic() - last_saved >= CHECKPOINT_EVERY_S:
                await writer.flush()
                await self.save_checkpoint(
                    plan.name,
                    {
                        "next_link": page.next_link,
                        "blocks": writer.blocks,
                        "records": writer.records,
                        "read": counts.read,
                    },
                )
                last_saved = time.monotonic()
        await writer.flush()
        counts.written = writer.records

    async def groups(
        self,
        plan: StreamPlan,
        mapper: Mapper,
        scope: Scope,
        writer: StagedJsonl,
        counts: RunCounts,
        *,
        index: MembershipIndex | None = None,
        resume: dict[str, Any] | None = None,
    ) -> None:
        start, params = _starting_point(plan, resume, counts)
        gate = asyncio.Semaphore(GROUP_PAGES_IN_FLIGHT)
        finished: dict[int, tuple[list[str], str | None, int]] = {}  # page -> (blocks, next_link, read)
        prefix_blocks = list(writer.blocks)
        prefix_end = -1
        last_saved = time.monotonic()
        tasks: list[asyncio.Task[None]] = []

        async def process(number: int, items: list[dict[str, Any]], next_link: str | None) -> None:
            try:
                kept = [g for g in items if scope.keeps(g)]
                members: dict[str, list[str] | None] = {}
                if mapper.needs_members and kept:
                    if index is not None:
                        members = {g["id"]: index.members(g["id"]) for g in kept}
                    else:
                        members = await self.members.members(g["id"] for g in kept)
                records = []
                for group in kept:
                    group_members = members.get(group["id"], [])
                    if mapper.needs_members and group_members is None:
                        continue  # deleted while we read: it is gone, like the next read will say
                    parents = (
                        index.member_of(group["id"]) if index is not None and mapper.needs_member_of else None
                    )
                    records.append(mapper.record(group, members=group_members, member_of=parents))
                block = await writer.stage(records)  # this page's own block: the checkpoint names exactly it
                finished[number] = ([block] if block else [], next_link, len(items))
            finally:
                gate.release()

        number = 0
        async for page in self.client.pages(start, params=params, headers=plan.headers()):
            await gate.acquire()
            tasks.append(asyncio.create_task(process(number, page.items, page.next_link)))
            number += 1
            # Advance the checkpoint over the finished prefix of pages.
            while prefix_end + 1 in finished:
                blocks, link, read = finished.pop(prefix_end + 1)
                prefix_end += 1
                prefix_blocks.extend(blocks)
                counts.read += read
                self._report(plan.name, counts.read)
                if link and time.monotonic() - last_saved >= CHECKPOINT_EVERY_S:
                    await self.save_checkpoint(
                        plan.name, {"next_link": link, "blocks": list(prefix_blocks), "read": counts.read}
                    )
                    last_saved = time.monotonic()
            failed = next((t for t in tasks if t.done() and t.exception()), None)
            if failed is not None:
                break
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            raise
        for _, _, read in finished.values():
            counts.read += read
        self._report(plan.name, counts.read)
        counts.written = writer.records


def _starting_point(
    plan: StreamPlan, resume: dict[str, Any] | None, counts: RunCounts
) -> tuple[str, dict[str, str] | None]:
    """Where a stream's page loop starts: the collection with the task's query, or a checkpoint's link."""
    if resume:
        counts.read = resume.get("read", 0)
        return resume["next_link"], None
    return plan.collection, plan.list_params()


async def membership_index(client: GraphClient, reader: MemberReader) -> MembershipIndex:
    """Every group's direct members (all groups, whatever the task's query): ``memberOf`` needs them."""
    index = MembershipIndex()
    async for page in client.pages("groups", params={"$select": "id", "$top": "999"}):
        found = await reader.members(g["id"] for g in page.items)
        for group_id, members in found.items():
            if members is not None:
                index.add(group_id, members)
    return index
