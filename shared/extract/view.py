"""A task's view: the records of its last committed run, read back line by line.

Records are written as ``{"id":"<object id>","attributes":{...}}`` with a deterministic serialization, so a
line's bytes identify its content: the id is read from the line's start and the line's digest tells a
changed record from an unchanged one without parsing JSON.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from azure.storage.blob import ContainerClient

from shared.storage.blobs import read_lines

_PREFIX = b'{"id":"'


def line_id(line: bytes) -> str:
    if not line.startswith(_PREFIX):
        return json.loads(line)["id"]
    end = line.index(b'"', len(_PREFIX))
    return line[len(_PREFIX) : end].decode()


def line_digest(line: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(line.rstrip(b"\n"), digest_size=8).digest(), "big")


def parse(line: bytes) -> dict[str, Any]:
    return json.loads(line)


async def digests(container: ContainerClient, blob: str) -> dict[str, int]:
    """id -> digest of every record in a committed file (about 150 bytes per record in memory)."""
    result: dict[str, int] = {}
    async for line in read_lines(container, blob):
        result[line_id(line)] = line_digest(line)
    return result


async def compare(container: ContainerClient, blob: str, previous: dict[str, int]) -> tuple[int, int, int]:
    """(records, changed, removed) of a new file against the previous view's digests (consumed)."""
    records = changed = 0
    async for line in read_lines(container, blob):
        records += 1
        if previous.pop(line_id(line), None) != line_digest(line):
            changed += 1
    return records, changed, len(previous)
