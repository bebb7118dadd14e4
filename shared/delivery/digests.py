"""Digest tables: what each record of a delivered view looked like, in 16 bytes per record.

A table holds, sorted by id hash, an 8-byte hash of each record's id and an 8-byte digest of its line
(``MARKED`` for an object delivered as removed). 100,000 records take 1.6 MB in blob storage and in memory
(two ``array('Q')``), so a run compares its view with the delivered one while streaming only its own file.
Lookups are binary searches (``bisect`` on the array).

Ids are hashed to 64 bits: among a million ids the chance that two share a hash is about 3 in 100 million.
"""

from __future__ import annotations

import hashlib
import struct
import sys
from array import array
from bisect import bisect_left

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import ContainerClient, ContentSettings

from shared.storage import threads

MAGIC = b"EGCDIG1\n"
MARKED = 0  # the digest of an object delivered as removed (a real digest of 0 is stored as 1)
_BINARY = ContentSettings(content_type="application/octet-stream")


def id_hash(object_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(object_id.encode(), digest_size=8).digest(), "little")


def line_digest(line: bytes) -> int:
    value = int.from_bytes(hashlib.blake2b(line.rstrip(b"\n"), digest_size=8).digest(), "little")
    return value or 1


class DigestTable:
    """An immutable, sorted table of (id hash, digest)."""

    def __init__(self, hashes: array, digests: array) -> None:
        self.hashes = hashes
        self.digests = digests

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
        hashes, digests = self.hashes, self.digests
        if sys.byteorder != "little":
            hashes, digests = array("Q", hashes), array("Q", digests)
            hashes.byteswap()
            digests.byteswap()
        return MAGIC + struct.pack("<Q", len(hashes)) + hashes.tobytes() + digests.tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> DigestTable:
        if not data.startswith(MAGIC):
            raise ValueError("not a digest table")
        (count,) = struct.unpack_from("<Q", data, len(MAGIC))
        start = len(MAGIC) + 8
        hashes, digests = array("Q"), array("Q")
        hashes.frombytes(data[start : start + 8 * count])
        digests.frombytes(data[start + 8 * count : start + 16 * count])
        if sys.byteorder != "little":
            hashes.byteswap()
            digests.byteswap()
        return cls(hashes, digests)


class DigestBuilder:
    """Collects (id hash, digest) pairs in any order; :meth:`table` sorts them."""

    def __init__(self) -> None:
        self._pairs = array("Q")  # hash, digest, hash, digest, ...

    def add(self, hashed: int, digest: int) -> None:
        self._pairs.append(hashed)
        self._pairs.append(digest)

    def table(self) -> DigestTable:
        pairs = self._pairs
        # Sorted by (hash, position): one int per record while sorting (about 50 bytes), not a position and
        # a key (about 90): a million-record view's table is built in 60 MB less.
        order = [pairs[i] << 64 | i for i in range(0, len(pairs), 2)]
        order.sort()
        mask = (1 << 64) - 1
        hashes = array("Q", (key >> 64 for key in order))
        digests = array("Q", (pairs[(key & mask) + 1] for key in order))
        self._pairs = array("Q")
        return DigestTable(hashes, digests)


async def save(container: ContainerClient, name: str, table: DigestTable) -> None:
    data = table.to_bytes()
    await threads.call(
        container.get_blob_client(name).upload_blob, data, overwrite=True, content_settings=_BINARY
    )


async def load(container: ContainerClient, name: str) -> DigestTable | None:
    def read() -> bytes | None:
        try:
            return container.get_blob_client(name).download_blob().readall()
        except ResourceNotFoundError:
            return None

    data = await threads.call(read)
    return None if data is None else DigestTable.from_bytes(data)
