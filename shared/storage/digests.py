"""Digest tables: what each record of a view looked like, in 16 bytes per record.

A table holds, sorted by id hash, an 8-byte hash of each record's id and an 8-byte digest of its line
(``MARKED`` for an object delivered as removed). 100,000 records take 1.6 MB in blob storage and in memory
(two ``array('Q')``). Lookups are binary searches (``bisect`` on the array).

Two kinds are kept: a view's own table, written at commit beside its file (``{view file}.digests``, built
while the view was written, so nothing reads the view back to learn it; it also keeps each line's offset and
length in the file, 12 bytes more), and the task cache's (the delivered view's table plus its marks,
``cache/{stream}.digests``). A full run compares its view with the previous one table to table; delivery
compares the run's view with the cache the same way, and reads from the view only the lines it sends.

Ids are hashed to 64 bits: among a million ids the chance that two share a hash is about 3 in 100 million.
"""

from __future__ import annotations

import hashlib
import itertools
import operator
import struct
import sys
from array import array
from bisect import bisect_left
from collections.abc import Iterable

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import ContainerClient, ContentSettings

from shared.storage import threads
from shared.storage.blobs import read_lines
from shared.storage.views import line_id

MAGIC = b"EGCDIG1\n"  # id hashes and digests
PLACED = b"EGCDIG2\n"  # and where each line is in its view file (a view's own table)
MARKED = 0  # the digest of an object delivered as removed (a real digest of 0 is stored as 1)
_BINARY = ContentSettings(content_type="application/octet-stream")


def id_hash(object_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(object_id.encode(), digest_size=8).digest(), "little")


def line_digest(line: bytes) -> int:
    value = int.from_bytes(hashlib.blake2b(line.rstrip(b"\n"), digest_size=8).digest(), "little")
    return value or 1


class DigestTable:
    """An immutable, sorted table of (id hash, digest); a view's own table also says where each record's line
    is in the view file (``offsets``, and ``lengths`` without the newline: 12 bytes more a record), so the
    lines of a few changed records are read by range rather than by reading the file."""

    def __init__(
        self, hashes: array, digests: array, offsets: array | None = None, lengths: array | None = None
    ) -> None:
        self.hashes = hashes
        self.digests = digests
        self.offsets = offsets
        self.lengths = lengths

    def __len__(self) -> int:
        return len(self.hashes)

    def find(self, hashed: int) -> int:
        """The position of ``hashed``, or -1."""
        index = bisect_left(self.hashes, hashed)
        return index if index < len(self.hashes) and self.hashes[index] == hashed else -1

    def live(self) -> int:
        """Records delivered and not marked."""
        return len(self.digests) - self.digests.count(MARKED)

    def to_bytes(self) -> bytes:
        columns = [self.hashes, self.digests]
        if self.offsets is not None and self.lengths is not None:
            columns += [self.offsets, self.lengths]
        if sys.byteorder != "little":
            columns = [array(column.typecode, column) for column in columns]
            for column in columns:
                column.byteswap()
        magic = PLACED if len(columns) == 4 else MAGIC
        # One copy of the columns (joined from their buffers), not one per column and another joining them.
        return b"".join(
            [magic, struct.pack("<Q", len(self.hashes)), *(memoryview(column) for column in columns)]
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> DigestTable:
        return cls.from_chunks([data])

    @classmethod
    def from_chunks(cls, chunks: Iterable[bytes]) -> DigestTable:
        """A table from its bytes in pieces of any size (a download's chunks), each column filled as they
        come: the whole is never held at once besides the columns."""
        parts = iter(chunks)
        head = b""
        while len(head) < len(MAGIC) + 8:
            part = next(parts, None)
            if part is None:
                raise ValueError("not a digest table")
            head += part
        if head.startswith(MAGIC):
            typecodes = "QQ"
        elif head.startswith(PLACED):
            typecodes = "QQQI"
        else:
            raise ValueError("not a digest table")
        (count,) = struct.unpack_from("<Q", head, len(MAGIC))
        columns = [array(typecode) for typecode in typecodes]
        sizes = [column.itemsize * count for column in columns]
        index, carry = 0, b""  # the column being filled, and bytes short of a whole item

        def filled() -> bool:
            return len(columns[index]) * columns[index].itemsize == sizes[index]

        for part in itertools.chain([head[len(MAGIC) + 8 :]], parts):
            view = memoryview(carry + part) if carry else memoryview(part)
            carry = b""
            while index < len(columns):
                if filled():
                    index += 1
                    continue
                if not view:
                    break
                column = columns[index]
                room = sizes[index] - len(column) * column.itemsize
                take = room if len(view) >= room else len(view) - len(view) % column.itemsize
                if not take:  # less than an item left: it waits for the next part
                    carry = bytes(view)
                    break
                column.frombytes(view[:take])
                view = view[take:]
        while index < len(columns) and filled():
            index += 1
        if index < len(columns):
            raise ValueError("a digest table cut short")
        if sys.byteorder != "little":
            for column in columns:
                column.byteswap()
        return cls(*columns)


class DigestBuilder:
    """Collects (id hash, digest) pairs in any order, with each line's place in its file when every line
    has one; :meth:`table` sorts them."""

    def __init__(self) -> None:
        self._pairs = array("Q")  # hash, digest, hash, digest, ...
        self._offsets: array | None = array("Q")  # None once a line came without its place
        self._lengths = array("I")

    def __len__(self) -> int:
        return len(self._pairs) // 2

    def add(self, hashed: int, digest: int) -> None:
        self._pairs.append(hashed)
        self._pairs.append(digest)
        self._offsets = None

    def add_line(self, line: bytes, offset: int | None = None) -> None:
        """A view line (``{"id":...,"attributes":...}``, with or without its newline), and where it starts in
        its file (a writer knows; a reader of the file need not say)."""
        self._pairs.append(id_hash(line_id(line)))
        self._pairs.append(line_digest(line))
        if offset is None:
            self._offsets = None
        elif self._offsets is not None:
            self._offsets.append(offset)
            self._lengths.append(len(line) - line.endswith(b"\n"))

    def table(self) -> DigestTable:
        pairs, offsets, lengths = self._pairs, self._offsets, self._lengths
        self._pairs, self._offsets, self._lengths = array("Q"), array("Q"), array("I")
        keys, values = pairs[0::2], pairs[1::2]
        del pairs
        # Sorted by (hash, position) a first byte of the hash at a time: the records' positions in 256 arrays
        # (4 bytes each), then each bucket sorted on its own, so sorting a million-record view holds a few
        # thousand Python ints at a time, not a million (about 55 MB).
        buckets = [array("I") for _ in range(256)]
        for position, hashed in enumerate(keys):
            buckets[hashed >> 56].append(position)
        columns = [(keys, array("Q")), (values, array("Q"))]
        if offsets is not None:
            columns += [(offsets, array("Q")), (lengths, array("I"))]
        for number in range(256):
            # Stable: equal hashes stay in position order.
            order = sorted(buckets[number], key=keys.__getitem__)
            buckets[number] = array("I")
            for source, target in columns:
                target.extend(map(source.__getitem__, order))
        return DigestTable(*(target for _, target in columns))


def with_marks(table: DigestTable, marked: list[int]) -> DigestTable:
    """``table`` with ``marked`` id hashes added as ``MARKED`` (objects delivered as removed): a few
    entries spliced in, not the whole table sorted again."""
    if not marked:
        return table
    hashes, digests = array("Q"), array("Q")
    start = 0
    for hashed in sorted(marked):
        at = bisect_left(table.hashes, hashed, start)
        hashes += table.hashes[start:at]
        digests += table.digests[start:at]
        hashes.append(hashed)
        digests.append(MARKED)
        start = at
    hashes += table.hashes[start:]
    digests += table.digests[start:]
    return DigestTable(hashes, digests)


def table_name(view_file: str) -> str:
    """Where a view's own table is kept: beside its file."""
    return f"{view_file}.digests"


async def of_view(container: ContainerClient, view_file: str) -> DigestTable:
    """A committed view's table: the one written with it, or (a view committed without one: by an earlier
    version, or by a run resumed from a checkpoint) built from its lines, with their places (a view's lines
    each end in one newline, none empty: the writer's; delivery checks each line it takes by its id hash)."""
    saved = await load(container, table_name(view_file))
    if saved is not None:
        return saved
    builder, offset = DigestBuilder(), 0
    async for line in read_lines(container, view_file):
        builder.add_line(line, offset)
        offset += len(line) + 1
    return builder.table()


def compare(new: DigestTable, old: DigestTable | None) -> tuple[int, int, int]:
    """(records, changed, removed) of a view against the previous view's table (None: no previous view):
    a record is changed if its id is new or its line differs; removed if its id is no longer there."""
    records = len(new)
    if old is None:
        return records, records, 0
    if new.hashes == old.hashes:  # the same ids (the usual case): compared digest by digest, in C
        return records, sum(map(operator.ne, new.digests, old.digests)), 0
    changed = matched = 0
    find, before = old.find, old.digests
    for hashed, digest in zip(new.hashes, new.digests, strict=True):
        index = find(hashed)
        if index < 0:
            changed += 1
        else:
            matched += 1
            changed += before[index] != digest
    return records, changed, len(old) - matched


def marked_bytes(table: DigestTable, marked: list[int]) -> bytes:
    """``with_marks(table, marked).to_bytes()`` without its places, built from slices of the table's columns:
    the only copy of a million-record table is the bytes themselves."""
    if sys.byteorder != "little":
        return with_marks(DigestTable(table.hashes, table.digests), marked).to_bytes()
    points, start = [], 0
    for hashed in sorted(marked):
        start = bisect_left(table.hashes, hashed, start)
        points.append((start, hashed))
    parts: list[bytes | memoryview] = [MAGIC, struct.pack("<Q", len(table) + len(marked))]
    for values, is_hashes in ((table.hashes, True), (table.digests, False)):
        view, start = memoryview(values), 0
        for at, hashed in points:
            parts += [view[start:at], struct.pack("<Q", hashed if is_hashes else MARKED)]
            start = at
        parts.append(view[start:])
    return b"".join(parts)


async def save(
    container: ContainerClient, name: str, table: DigestTable, marked: list[int] | None = None
) -> None:
    """Save ``table`` (with its places, if it has them); with ``marked``: the cache's table, those id hashes
    spliced in as ``MARKED`` and no places."""
    data = table.to_bytes() if marked is None else marked_bytes(table, marked)
    await threads.call(
        container.get_blob_client(name).upload_blob, data, overwrite=True, content_settings=_BINARY
    )


async def load(container: ContainerClient, name: str) -> DigestTable | None:
    """A saved table, or None; read a download chunk at a time into its columns (a million-record view's
    31 MB are not held twice)."""

    def read() -> DigestTable | None:
        try:
            return DigestTable.from_chunks(container.get_blob_client(name).download_blob().chunks())
        except ResourceNotFoundError:
            return None

    return await threads.call(read)
