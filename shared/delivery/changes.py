"""A run's changes against the task cache (the last delivered view): ``changes.jsonl`` beside its view.

Each of the run's views is compared with the delivered view by their digest tables (in memory, 16 bytes
per record; a view's table is written with it); then the view is read for the records to send, if any
(streamed: all of it, a range at a time, when every record is sent), and only if some delivered records
were not seen, the delivered view's file is read to name them. Memory holds the digest tables, the id
hashes of the records to send and the ids to mark, never records.

Each line of ``changes.jsonl`` is one change (schema/delivery-batch.schema.json, ``records`` items)::

    {"op":"upsert","stream":"users","id":"…","attributes":{…}}                 new or changed
    {"op":"upsert","stream":"users","id":"…","attributes":{…},"restored":true}  marked before, back now
    {"op":"mark","stream":"users","id":"…","reason":"soft_deleted","attributes":{"status":"Deleted",…}}

An object is marked once: the run's digest table keeps it as ``MARKED`` until it comes back (then it is
delivered again, unmarked), across cache clears too (16 bytes per removed object). Streams whose selection has no deletion marking drop
vanished objects from the cache without a mark. A stream whose target template or folder changed since
the delivered view sends every record again, like after a cache clear (a target is no read setting: the
extract keeps reading incrementally).
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from azure.storage.blob import ContainerClient

from shared.config.delivery import DeletionMarking
from shared.storage import digests
from shared.storage.blobs import StagedJsonl, encode_line, read_chunks, read_lines, read_ranges
from shared.storage.delivery import DeliveredView
from shared.storage.digests import MARKED, DigestTable, id_hash
from shared.storage.views import line_id

Reasons = Callable[[list[str], "StreamOutput"], Awaitable[dict[str, str]]]  # ids of a stream -> reasons


@dataclass(frozen=True)
class StreamOutput:
    """One stream of a committed run, as delivery sees it."""

    name: str
    view_file: str
    target_template: str
    target_folder: str
    key: str = "id"
    marking: DeletionMarking | None = None
    collection: str | None = None  # a generic task's collection (removal lookups); None: directory objects
    key_attribute: str | None = None  # the local code carrying a key other than id (marks carry it too)
    removed: bool = False  # delivered before, no longer in the task: every live object is marked

    def settings(self) -> dict[str, Any]:
        """What the delivered view keeps of the stream, to mark its objects if the task drops it."""
        return {
            "key": self.key,
            "key_attribute": self.key_attribute,
            "collection": self.collection,
            "marking": self.marking.model_dump(mode="json") if self.marking is not None else None,
        }

    @property
    def target(self) -> str:
        """Where the platform stores the stream's records: another target receives every record once."""
        return json.dumps([self.target_template, self.target_folder])


@dataclass
class StreamChanges:
    new: int = 0
    changed: int = 0
    restored: int = 0
    unchanged: int = 0
    marks: dict[str, int] = field(default_factory=dict)  # reason -> count
    records: int = 0  # live records in the run's view

    @property
    def upserts(self) -> int:
        return self.new + self.changed + self.restored

    def as_dict(self) -> dict[str, Any]:
        return {
            "new": self.new,
            "changed": self.changed,
            "restored": self.restored,
            "unchanged": self.unchanged,
            "marked": sum(self.marks.values()),
            **{f"marked_{reason}": count for reason, count in sorted(self.marks.items())},
        }


@dataclass
class ChangeSet:
    """What a run would deliver, and what the cache becomes once it is delivered."""

    changes_file: str
    streams: dict[str, StreamChanges]
    view: DeliveredView  # the cache after delivery (``delivered_at`` set when it is delivered)
    delivered_live: int  # live records of the cache it was computed against

    @property
    def marks(self) -> int:
        return sum(sum(s.marks.values()) for s in self.streams.values())

    @property
    def upserts(self) -> int:
        return sum(s.upserts for s in self.streams.values())

    @property
    def total(self) -> int:
        return self.marks + self.upserts


def _upsert_head(stream: str) -> bytes:
    """What an upsert line puts before the view line's ``"id":…,"attributes":…`` (its bytes are kept as they
    are: no JSON round trip, and no copy of the line before it reaches the writer's buffer)."""
    return b'{"op":"upsert","stream":' + json.dumps(stream).encode() + b","


def _restored_line(stream: str, line: bytes, marking: DeletionMarking | None) -> bytes:
    record = json.loads(line)
    attributes = dict(record.get("attributes") or {})
    if marking is not None:
        if marking.restored_value is not None:
            attributes[marking.attribute] = marking.restored_value
        if marking.reason_attribute is not None:
            attributes[marking.reason_attribute] = None
    return encode_line(
        {"op": "upsert", "stream": stream, "id": record["id"], "attributes": attributes, "restored": True}
    )


def mark_record(
    stream: str, object_id: str, reason: str, marking: DeletionMarking, key: tuple[str, Any] | None = None
) -> dict[str, Any]:
    """A deletion mark; ``key``: the local code and value of a key other than id, as the object's records
    carried it, so a platform that finds records by that key finds this one."""
    attributes: dict[str, Any] = {marking.attribute: marking.value}
    if marking.reason_attribute is not None:
        attributes[marking.reason_attribute] = reason
    if key is not None:
        attributes.setdefault(key[0], key[1])  # the mark's own attributes win over a clashing key code
    return {"op": "mark", "stream": stream, "id": object_id, "reason": reason, "attributes": attributes}


def removed_streams(delivered: DeliveredView | None, streams: list[StreamOutput]) -> list[StreamOutput]:
    """The streams the task delivered before and no longer has (a mappings type narrowed, a selection taken
    out), with the marking they were delivered with: their objects are marked once, then the stream leaves
    the cache. A stream delivered without a marking (or by a connector that did not keep it) is not marked."""
    if delivered is None:
        return []
    names = {s.name for s in streams}
    removed = []
    for name in sorted(set(delivered.digests) - names):
        settings = delivered.settings.get(name) or {}
        if settings.get("marking") is None or name not in delivered.files:
            continue
        template, folder = json.loads(delivered.targets[name]) if name in delivered.targets else ("", "")
        removed.append(
            StreamOutput(
                name=name,
                view_file=delivered.files[name],
                target_template=template,
                target_folder=folder,
                key=settings.get("key") or "id",
                marking=DeletionMarking.model_validate(settings["marking"]),
                collection=settings.get("collection"),
                key_attribute=settings.get("key_attribute"),
                removed=True,
            )
        )
    return removed


async def compute(
    container: ContainerClient,
    prefix: str,
    run_id: str,
    streams: list[StreamOutput],
    delivered: DeliveredView | None,
    *,
    resend_all: bool,
    reasons: Reasons,
    block_size: int,
) -> ChangeSet:
    """Write ``{prefix}/changes.jsonl`` and the run's digest tables; return what they hold.

    ``resend_all``: the cache was cleared, so every record is delivered again (marks still come from the
    delivered view: clearing forgets how records looked, not which objects the platform has).

    Each stream's view is compared with the cache table to table (the view's own table was written with
    it); the view is read only if records are to be sent, and when every record is (a first delivery, a
    cleared cache) it is copied a range at a time, each line given its upsert head, with no step per line.
    """
    # Two blocks staged while the next fills: a first delivery copies the whole view (Azurite takes 1 MiB
    # blocks at about 100 MB/s one at a time, 140 MB/s two at a time).
    writer = StagedJsonl(container, f"{prefix}/changes.jsonl", block_size=block_size, staging_ahead=2)
    result: dict[str, StreamChanges] = {}
    digest_files: dict[str, str] = {}
    records: dict[str, int] = {}
    delivered_live = 0
    for stream in streams:
        counts = StreamChanges()
        result[stream.name] = counts
        old: DigestTable | None = None
        if delivered is not None and stream.name in delivered.digests:
            old = await digests.load(container, delivered.digests[stream.name])
        if old is not None:
            delivered_live += old.live()
        # A removed stream has no live records: every object it delivered is gone.
        table_now = _EMPTY if stream.removed else await digests.of_view(container, stream.view_file)
        counts.records = len(table_now)
        moved = delivered is not None and delivered.targets.get(stream.name, stream.target) != stream.target
        resend = resend_all or moved  # every record again (marks stay as they are)
        plan = _plan(table_now, old, resend, counts)
        if plan.upserts and plan.upserts == len(table_now) and not plan.restored:
            await _all_upserts(container, stream, writer)
        elif plan.upserts:
            await _some_upserts(container, stream, writer, plan, table_now)
        marked: list[int] = []  # id hashes the new table keeps as MARKED
        if old is not None:
            # Still gone and already marked: stays marked, a cache clear included (it is not marked again,
            # and a comeback days later is still delivered as restored, with the marking's restored value).
            gone = [i for i in range(len(old)) if not plan.seen[i]]
            marked += [old.hashes[i] for i in gone if old.digests[i] == MARKED]
            gone_live = {i for i in gone if old.digests[i] != MARKED}  # delivered records not in this view
            if gone_live and stream.marking is not None and delivered is not None:
                keys = await _ids_at(
                    container, delivered.files[stream.name], old, gone_live, stream.key_attribute
                )
                found = await reasons(list(keys), stream)
                for object_id, key in keys.items():
                    reason = found[object_id]
                    counts.marks[reason] = counts.marks.get(reason, 0) + 1
                    await writer.write(mark_record(stream.name, object_id, reason, stream.marking, key))
                    marked.append(id_hash(object_id))
        if stream.removed:
            continue  # marked once; it leaves the cache (a stream added again delivers everything anew)
        # The cache keeps hashes and digests (16 bytes a record); where lines are is the view's business.
        # The tables compared are let go first: a million records' are 50 MB.
        cache = DigestTable(table_now.hashes, table_now.digests)
        old, table_now = None, _EMPTY
        del plan
        name = f"{prefix}/cache/{stream.name}.digests"
        await digests.save(container, name, cache, marked)
        digest_files[stream.name] = name
        records[stream.name] = counts.records
    await writer.commit()
    kept = [s for s in streams if not s.removed]
    view = DeliveredView(
        run_id=run_id,
        files={s.name: s.view_file for s in kept},
        digests=digest_files,
        records=records,
        targets={s.name: s.target for s in kept},
        settings={s.name: s.settings() for s in kept},
        delivered_at=datetime.now(UTC),
    )
    return ChangeSet(writer.name, result, view, delivered_live)


_EMPTY = DigestTable(array("Q"), array("Q"))
COPY_CHUNK = 2 * 1024 * 1024  # a view copied whole is read in ranges of this size, two ahead


@dataclass
class _Plan:
    """Which of a view's records are sent: the id hashes of the upserts (sorted), and of the restored ones
    among them; ``seen``: the cache's positions this view still has."""

    sends: array
    restored: set[int]
    seen: bytearray

    @property
    def upserts(self) -> int:
        return len(self.sends)


def _plan(view: DigestTable, old: DigestTable | None, resend: bool, counts: StreamChanges) -> _Plan:
    """Compare a view's table with the cache's (None: nothing delivered yet); counts what each record is."""
    if old is None:
        counts.new = len(view)
        return _Plan(view.hashes, set(), bytearray())
    sends = array("Q")
    restored: set[int] = set()
    seen = bytearray(len(old))
    find, before = old.find, old.digests
    for hashed, digest in zip(view.hashes, view.digests, strict=True):
        index = find(hashed)
        if index < 0:
            counts.new += 1
            sends.append(hashed)
            continue
        seen[index] = 1
        if before[index] == MARKED:
            counts.restored += 1
            restored.add(hashed)
            sends.append(hashed)
        elif resend or before[index] != digest:
            counts.changed += 1
            sends.append(hashed)
        else:
            counts.unchanged += 1
    return _Plan(sends, restored, seen)


async def _all_upserts(container: ContainerClient, stream: StreamOutput, writer: StagedJsonl) -> None:
    """Every line of the view as an upsert: copied a range at a time, each line's ``{`` replaced by the
    upsert head (``{"op":"upsert","stream":…,``), the same bytes as line by line."""
    head = _upsert_head(stream.name)
    at_line_start = True  # every line of a view starts with "{" and ends with a newline
    async for chunk in read_chunks(container, stream.view_file, size=COPY_CHUNK, ahead=2):
        lines = chunk.count(b"\n")
        # Every newline but a last one is followed by the next line's "{" (so the replace below meets
        # every line start), and a range that starts a line starts with "{".
        if (at_line_start and chunk[0] != 0x7B) or chunk.count(b"\n{") != lines - chunk.endswith(b"\n"):
            raise ValueError(f"{stream.view_file}: a line that is not a JSON object")
        data = chunk.replace(b"\n{", b"\n" + head)
        if at_line_start:
            data = head + data[1:]
        at_line_start = chunk.endswith(b"\n")
        await writer.write_lines(data, lines)
    if not at_line_start:  # the last line had no newline
        await writer.write_lines(b"\n", 1)


async def _some_upserts(
    container: ContainerClient, stream: StreamOutput, writer: StagedJsonl, plan: _Plan, view: DigestTable
) -> None:
    """The view's lines whose records are to be sent, in the view's order, read by range where the view's
    table says they are."""
    assert view.offsets is not None and view.lengths is not None  # a view's table has its lines' places
    offsets, lengths = view.offsets, view.lengths
    places = sorted(
        (offsets[at], lengths[at], hashed) for hashed in plan.sends for at in (view.find(hashed),)
    )
    ranges = _ranges_of(places)
    upsert = _upsert_head(stream.name)
    reads = read_ranges(container, stream.view_file, [(start, size) for start, size, _ in ranges], ahead=2)
    number = 0
    async for data in reads:
        start, _, lines = ranges[number]
        number += 1
        for offset, length, hashed in lines:
            line = data[offset - start : offset - start + length]
            if not line.startswith(b"{") or id_hash(line_id(line)) != hashed:  # the table and file disagree
                raise ValueError(f"{stream.view_file}: no record at {offset} where its digest table has one")
            if hashed in plan.restored:
                await writer.write_line(_restored_line(stream.name, line, stream.marking))
            else:
                await writer.write_parts(upsert, memoryview(line)[1:])


GAP = 64 * 1024  # lines closer than this are read in one range
MOST = 1024 * 1024  # bytes of one range, unless a line alone is longer (two download while one is used)

Place = tuple[int, int, int]  # a line's offset, length (without its newline), id hash


def _ranges_of(places: list[Place]) -> list[tuple[int, int, list[Place]]]:
    """Ranges (offset, length, the lines in it) covering lines at places sorted by offset, each line whole in
    one range; lines less than :data:`GAP` apart share a range of at most :data:`MOST` bytes."""
    ranges: list[tuple[int, int, list[Place]]] = []
    for place in places:
        offset, length, _ = place
        end = offset + length + 1  # with its newline
        if ranges:
            start, size, lines = ranges[-1]
            if offset - (start + size) <= GAP and end - start <= MOST:
                lines.append(place)
                ranges[-1] = (start, end - start, lines)
                continue
        ranges.append((offset, end - offset, [place]))
    return ranges


async def _ids_at(
    container: ContainerClient,
    view_file: str,
    table: DigestTable,
    positions: set[int],
    key_attribute: str | None = None,
) -> dict[str, tuple[str, Any] | None]:
    """The ids of the records at ``positions`` of ``table``, read from the view file the table describes,
    each with its key attribute's code and value (``key_attribute``; None for a task keyed by id)."""
    ids: dict[str, tuple[str, Any] | None] = {}
    async for line in read_lines(container, view_file):
        object_id = line_id(line)
        index = table.find(id_hash(object_id))
        if index in positions:
            key = None
            if key_attribute is not None:
                key = (key_attribute, (json.loads(line).get("attributes") or {}).get(key_attribute))
            ids[object_id] = key
            positions.discard(index)
            if not positions:
                break
    return ids
