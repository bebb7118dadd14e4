"""The one full-read pipeline, for any stream: page -> per-item fan-out -> staged block -> ordered checkpoint.

Pages are processed a few at a time (``PAGES_IN_FLIGHT``): while one page waits on its fan-outs (a very large
group's member pages), the next pages proceed. Each page's records are staged as a block of their own, so the
checkpoint can name exactly the blocks of the longest run of finished pages from the start, with the link
that continues after them. Every ``CHECKPOINT_EVERY_S`` seconds that prefix is saved; a restarted invocation
commits those blocks together with what it reads from the link on. Memory holds the pages in flight only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from shared.extract.concurrency import first_error
from shared.extract.fanout import MemberIds
from shared.extract.mapping import Mapper
from shared.extract.relations import Relation
from shared.extract.scoping import Scope
from shared.extract.streams import Stream
from shared.graph.client import GraphClient
from shared.runs import RunCounts, StreamCheckpoint
from shared.storage.blobs import StagedJsonl

CHECKPOINT_EVERY_S = 20.0
PAGES_IN_FLIGHT = 3

SaveCheckpoint = Callable[[str, StreamCheckpoint], Awaitable[None]]
StopCheck = Callable[[], Awaitable[None]]  # raises when an administrator asked the run to stop
Progress = Callable[[str, int], None]


@dataclass
class _Finished:
    blocks: list[str]
    records: int
    read: int
    next_link: str | None


@dataclass
class FullRead:
    """One stream's full read."""

    client: GraphClient
    stream: Stream
    mapper: Mapper
    scope: Scope
    relations: dict[str, Relation]
    writer: StagedJsonl
    counts: RunCounts
    save_checkpoint: SaveCheckpoint
    progress: Progress | None = None
    stop: StopCheck | None = None  # checked at each page boundary (shared/storage/stops.py)

    async def run(self, resume: StreamCheckpoint | None) -> None:
        stream = self.stream
        if resume is not None and resume.next_link:
            start, params = resume.next_link, None
            self.counts.read = resume.read
        else:
            start, params = stream.collection, stream.list_params()
        prefix = StreamCheckpoint(
            blocks=list(self.writer.blocks), records=self.writer.records, read=self.counts.read
        )
        finished: dict[int, _Finished] = {}
        done = -1  # the last page of the finished prefix
        last_saved = time.monotonic()
        gate = asyncio.Semaphore(PAGES_IN_FLIGHT)

        async def process(number: int, items: list[dict], next_link: str | None) -> None:
            try:
                finished[number] = await self._page(items, next_link)
            finally:
                gate.release()

        async with first_error(), asyncio.TaskGroup() as pages:
            number = 0
            async for page in self.client.pages(start, params=params, headers=stream.headers()):
                if self.stop is not None:
                    await self.stop()
                await gate.acquire()
                pages.create_task(process(number, page.items, page.next_link))
                number += 1
                while done + 1 in finished:  # advance over the finished prefix of pages
                    done += 1
                    step = finished.pop(done)
                    prefix.blocks.extend(step.blocks)
                    prefix.records += step.records
                    prefix.read += step.read
                    prefix.next_link = step.next_link
                    self.counts.read = prefix.read
                    self._report()
                    if step.next_link and time.monotonic() - last_saved >= CHECKPOINT_EVERY_S:
                        await self.save_checkpoint(stream.name, prefix.model_copy(deep=True))
                        last_saved = time.monotonic()
        self.counts.read = prefix.read + sum(step.read for step in finished.values())
        self._report()
        self.counts.written = self.writer.records

    async def _page(self, items: list[dict], next_link: str | None) -> _Finished:
        kept = [obj for obj in items if self.scope.keeps(obj)]
        ids = [obj["id"] for obj in kept]
        values = {}
        if kept:
            for name, relation in self.relations.items():
                values[name] = await relation.full_values(ids)
        for found in values.values():  # a huge group's member ids: their JSON built letting the loop run
            for member_ids in found.values():
                if isinstance(member_ids, MemberIds):
                    await member_ids.prepare_json()
        records = []
        for obj in kept:
            related = {name: found.get(obj["id"]) for name, found in values.items()}
            if any(value is None for value in related.values()):
                continue  # deleted while we read: it is gone, like the next read will say
            records.append(self.mapper.record(obj, related, packed=True))
        block = await self.writer.stage(records)  # this page's own block: the checkpoint names exactly it
        return _Finished([block] if block else [], len(records), len(items), next_link)

    def _report(self) -> None:
        if self.progress is not None:
            self.progress(self.stream.name, self.counts.read)
