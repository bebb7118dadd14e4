"""The one ``$batch`` fan-out: a request per item, 20 items a call, a bounded number of calls in flight.

Group members, ``memberOf``, objects fetched by id for delta joins, and later sub-queries all go through
:class:`FanOut`. Throttled steps are retried by the client (docs/graph-behaviour.md sections 4 and 5); an item
whose object no longer exists answers ``None``; a collection with more than one page continues on its own
chain of ``@odata.nextLink`` pages, concurrently with everything else, so a very large group does not hold the
rest back.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import quote

from shared.graph.client import MAX_BATCH_STEPS, BatchStep, GraphClient, decode_body

PAGE_QUERY = "$select=id&$top=999"  # member and memberOf pages: ids only, Graph's largest page
SORT_AT_ONCE = 65536  # MemberIds.json_bytes sorts groups up to this size in one step


class MemberIds:
    """Object ids, packed 16 bytes each (directory object ids are GUIDs).

    A group of 100,000 members costs 1.6 MB here instead of about 10 MB of Python strings, and, more
    important, no long-lived small objects are left scattered between the short-lived ones a page's
    JSON creates, so the memory a very large group took returns to the system once its record is written.
    """

    __slots__ = ("_json", "_other", "_packed")

    def __init__(self, ids: Iterable[str] = ()) -> None:
        self._packed = bytearray()
        self._other: list[str] = []
        self._json: bytes | bytearray | None = None  # built ahead by prepare_json
        self.extend(ids)

    def extend(self, ids: Iterable[str]) -> None:
        self._json = None
        ids = ids if isinstance(ids, list) else list(ids)
        if ids and self._extend_guids(ids):
            return
        for object_id in ids:
            raw = object_id.replace("-", "")
            if len(raw) == 32:
                try:
                    self._packed += bytes.fromhex(raw)
                    continue
                except ValueError:
                    pass
            self._other.append(object_id)

    def _extend_guids(self, ids: list[str]) -> bool:
        """A page of ids in one conversion when every one is a GUID in the usual form (Graph's are): the
        same bytes as one by one, without a Python step per id (ten million of them at a million users)."""
        n = len(ids)
        joined = "".join(ids)
        if len(joined) != 36 * n or set(map(len, ids)) != {36} or joined.count("-") != 4 * n:
            return False
        dashes = "-" * n
        if any(joined[at::36] != dashes for at in (8, 13, 18, 23)):
            return False
        try:
            packed = bytes.fromhex(joined.replace("-", ""))
        except ValueError:
            return False
        if len(packed) != 16 * n:  # fromhex skips whitespace
            return False
        self._packed += packed
        return True

    def __len__(self) -> int:
        return len(self._packed) // 16 + len(self._other)

    def __iter__(self) -> Iterator[str]:
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

    @classmethod
    def from_packed(cls, packed: bytes | bytearray, other: Iterable[str] = ()) -> MemberIds:
        ids = cls()
        ids._packed = bytearray(packed)
        ids._other = list(other)
        return ids

    def patched(self, gained: Iterable[str] = (), removed: Iterable[str] = ()) -> MemberIds:
        """These ids less ``removed``, plus ``gained``, each once and sorted (as ``sorted(set(...))`` of the
        strings), still packed: patching the members of a very large group needs no string per member."""
        lost, won = MemberIds(removed), MemberIds(gained)
        if not (self._other or lost._other or won._other) and self._sorted_unique():
            # A view's ids (written sorted, each once): each change is a binary search and a splice.
            ids = bytearray(self._packed)
            for key in _keys(lost._packed):
                at, found = _search(ids, key)
                if found:
                    del ids[at : at + 16]
            for key in _keys(won._packed):
                at, found = _search(ids, key)
                if not found:
                    ids[at:at] = key
            return MemberIds.from_packed(ids)
        packed = bytes(self._packed)
        keys = {packed[i : i + 16] for i in range(0, len(packed), 16)}
        keys.difference_update(bytes(lost._packed[i : i + 16]) for i in range(0, len(lost._packed), 16))
        keys.update(bytes(won._packed[i : i + 16]) for i in range(0, len(won._packed), 16))
        other = (set(self._other) - set(lost._other)) | set(won._other)
        return MemberIds.from_packed(b"".join(sorted(keys)), sorted(other))

    def _sorted_unique(self) -> bool:
        packed = self._packed
        return all(packed[i - 16 : i] < packed[i : i + 16] for i in range(16, len(packed), 16))

    def json_bytes(self) -> bytes | bytearray:
        """``json.dumps(self.sorted())`` (compact), built from the packed bytes without a string per id.

        The members of a group of a million take their 39 MB of JSON plus about 30 MB while sorting, not a
        list of a million strings (about 120 MB) and copies of its JSON. Ids are sorted a first byte at a
        time; hex digits sort as their bytes do, so the order is that of the strings.
        """
        prepared = self._json
        if prepared is not None:
            self._json = None  # handed over once: the caller writes it, this object does not keep it
            return prepared
        steps = self._json_steps()
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return done.value

    async def prepare_json(self) -> None:
        """Build :meth:`json_bytes` ahead, letting the event loop run between first bytes: for a group of a
        million, the second of work it takes would otherwise hold back every page in flight (the users
        chain's above all). Smaller groups are left to :meth:`json_bytes`."""
        if len(self._packed) // 16 <= SORT_AT_ONCE or self._other:
            return
        steps = self._json_steps()
        while True:
            try:
                next(steps)
            except StopIteration as done:
                self._json = done.value
                return
            await asyncio.sleep(0)

    def _json_steps(self) -> Generator[None, None, bytes | bytearray]:
        """:meth:`json_bytes`, pausing after each bucket of ids that share a first byte."""
        if self._other:
            return json.dumps(self.sorted(), ensure_ascii=False, separators=(",", ":")).encode()
        packed = self._packed
        count = len(packed) // 16
        if not count:
            return b"[]"
        # Small groups are sorted at once: per-bucket steps would cost more than they save.
        if count <= SORT_AT_ONCE:
            buckets = [bytearray(packed)]
        else:  # a first byte at a time: a very large group is never all in 16-byte objects at once
            buckets = [bytearray() for _ in range(256)]
            for i in range(0, len(packed), 16):
                buckets[packed[i]] += packed[i : i + 16]
        width = 39  # "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx",
        out = bytearray(1 + width * count)
        out[0] = ord("[")
        position = 1
        for bucket in buckets:
            n = len(bucket) // 16
            if not n:
                continue
            # Sorted as hex strings (their order is the bytes' order): string slices sort faster than
            # bytearray slices, and the sorted digits are the ones written.
            text = bucket.hex()
            bucket.clear()
            keys = [text[i : i + 32] for i in range(0, len(text), 32)]
            del text
            keys.sort()
            digits = "".join(keys).encode("ascii")
            del keys
            region = memoryview(out)[position : position + width * n]
            region[0::width] = b'"' * n
            source = 0
            for start, length in ((1, 8), (10, 4), (15, 4), (20, 4), (25, 12)):
                for k in range(length):  # every id's k-th digit of this group, in one strided copy
                    region[start + k :: width] = digits[source + k :: 32]
                source += length
                if start != 25:
                    region[start + length :: width] = b"-" * n
            region[37::width] = b'"' * n
            region[38::width] = b"," * n
            region.release()
            position += width * n
            yield
        out[-1] = ord("]")
        return out


def _keys(packed: bytes | bytearray) -> list[bytes]:
    return [bytes(packed[i : i + 16]) for i in range(0, len(packed), 16)]


def _search(ids: bytearray, key: bytes) -> tuple[int, bool]:
    """Where ``key`` is or would go among sorted 16-byte ids (a byte offset), and whether it is there."""
    low, high = 0, len(ids) // 16
    while low < high:
        middle = (low + high) // 2
        if ids[middle * 16 : middle * 16 + 16] < key:
            low = middle + 1
        else:
            high = middle
    return low * 16, ids[low * 16 : low * 16 + 16] == key


class Collector(Protocol):
    """Accumulates the items of one item's sub-collection, page by page."""

    def add(self, items: list[dict[str, Any]]) -> None: ...


C = TypeVar("C", bound=Collector)


@dataclass
class IdCollector:
    """Ids of a sub-collection (members, memberOf), optionally only those of one ``@odata.type``."""

    only_type: str | None = None
    ids: MemberIds = field(default_factory=MemberIds)

    def add(self, items: list[dict[str, Any]]) -> None:
        only = self.only_type
        if only is None:
            self.ids.extend([item["id"] for item in items])
        else:
            self.ids.extend([item["id"] for item in items if item.get("@odata.type", only) == only])


@dataclass
class ObjectCollector:
    """The objects of a sub-collection, as Graph sent them (a sub-query's rows)."""

    objects: list[dict[str, Any]] = field(default_factory=list)

    def add(self, items: list[dict[str, Any]]) -> None:
        self.objects.extend(items)


@dataclass(frozen=True)
class SubQuery(Generic[C]):
    """A request per item: ``path`` with ``{id}`` for the item's id (relative to the version root), and what
    to gather from its pages."""

    path: str
    collector: Callable[[], C]


@dataclass
class FanOut:
    client: GraphClient
    concurrency: int = 8
    _gate: asyncio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        self._gate = asyncio.Semaphore(self.concurrency)

    async def collections(self, ids: Iterable[str], query: SubQuery[C]) -> dict[str, C | None]:
        """Every page of ``query`` for each id; ``None`` for an item that no longer exists."""
        results: dict[str, C | None] = {}

        async def chunk(chunk_ids: list[str]) -> None:
            follow = []
            for object_id, body in (await self._batch(chunk_ids, query.path)).items():
                if body is None:
                    results[object_id] = None
                    continue
                collector = query.collector()
                collector.add(list(body.get("value") or ()))
                results[object_id] = collector
                if body.get("@odata.nextLink"):
                    follow.append((collector, body["@odata.nextLink"]))
            await asyncio.gather(*(self._rest(collector, link) for collector, link in follow))

        await asyncio.gather(*(chunk(c) for c in _chunks(ids)))
        return results

    async def objects(self, ids: Iterable[str], path: str) -> dict[str, dict[str, Any] | None]:
        """One object per id (``path`` with ``{id}``, e.g. ``/users/{id}?$select=...``); ``None`` if gone.
        OData annotations (``@odata.context``...) are dropped."""
        results: dict[str, dict[str, Any] | None] = {}

        async def chunk(chunk_ids: list[str]) -> None:
            for object_id, body in (await self._batch(chunk_ids, path)).items():
                results[object_id] = (
                    None if body is None else {k: v for k, v in body.items() if not k.startswith("@odata")}
                )

        await asyncio.gather(*(chunk(c) for c in _chunks(ids)))
        return results

    async def results(self, ids: Iterable[str], path: str) -> dict[str, Any]:
        """The answer to ``path`` for each id as Graph gives it (a sub-query's): an object without its OData
        annotations, or a collection's items over all its pages (a list); ``None`` if not found."""
        return await self._results(ids, lambda object_id: _fill(path, object_id))

    async def answers(self, paths: Iterable[str]) -> dict[str, Any]:
        """Like :meth:`results`, for requests whose paths are complete already (placeholders filled and
        percent-encoded by the caller: shared/extract/subqueries.py), keyed by path."""
        return await self._results(paths, lambda path: path)

    async def _results(self, keys: Iterable[str], make_path: Callable[[str], str]) -> dict[str, Any]:
        results: dict[str, Any] = {}

        async def chunk(chunk_ids: list[str]) -> None:
            follow = []
            for object_id, body in (await self._steps(chunk_ids, make_path)).items():
                if body is None:
                    results[object_id] = None
                elif _is_collection(body):
                    collector = ObjectCollector(list(body["value"]))
                    results[object_id] = collector.objects
                    if body.get("@odata.nextLink"):
                        follow.append((collector, body["@odata.nextLink"]))
                else:
                    results[object_id] = {k: v for k, v in body.items() if not k.startswith("@odata")}
            await asyncio.gather(*(self._rest(collector, link) for collector, link in follow))

        await asyncio.gather(*(chunk(c) for c in _chunks(keys)))
        return results

    async def _batch(self, ids: list[str], path: str) -> dict[str, dict[str, Any] | None]:
        return await self._steps(ids, lambda object_id: _fill(path, object_id))

    async def _steps(
        self, ids: list[str], make_path: Callable[[str], str]
    ) -> dict[str, dict[str, Any] | None]:
        steps = [BatchStep(str(i), make_path(object_id)) for i, object_id in enumerate(ids)]
        async with self._gate:
            answers = await self.client.batch(steps)
        bodies: dict[str, dict[str, Any] | None] = {}
        for step, object_id in zip(steps, ids, strict=True):
            answer = answers[step.id]
            if answer.missing:
                bodies[object_id] = None
            elif not answer.ok:
                raise answer.error(step)
            else:
                bodies[object_id] = decode_body(answer)
        return bodies

    async def _rest(self, collector: Collector, link: str) -> None:
        async for page in self.client.pages(link):
            collector.add(page.items)


def _fill(path: str, object_id: str) -> str:
    """``path`` with ``{id}`` replaced by the percent-encoded id: a generic collection's key need not be a
    GUID, and a ``/``, ``?`` or ``#`` in it must not add a path segment or a query."""
    return path.replace("{id}", quote(object_id, safe=""))


def _is_collection(body: Any) -> bool:
    """A collection's page (``value`` and a context without ``$entity``), not an entity."""
    if not isinstance(body, dict) or not isinstance(body.get("value"), list):
        return False
    return not str(body.get("@odata.context", "")).endswith("$entity")


def _chunks(ids: Iterable[str]) -> list[list[str]]:
    unique = list(dict.fromkeys(ids))
    return [unique[i : i + MAX_BATCH_STEPS] for i in range(0, len(unique), MAX_BATCH_STEPS)]
