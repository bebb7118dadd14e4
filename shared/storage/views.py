"""A task's view file: the records of its last committed run, read back line by line.

Records are written as ``{"id":"<object id>","attributes":{...}}`` with a deterministic serialization, so a
line's bytes identify its content: the id is read from the line's start and the line's digest
(shared/storage/digests.py) tells a changed record from an unchanged one without parsing JSON.
"""

from __future__ import annotations

from typing import Any

from shared import jsoncodec

_PREFIX = b'{"id":"'


def line_id(line: bytes) -> str:
    if not line.startswith(_PREFIX):
        return jsoncodec.loads(line)["id"]
    end = line.index(b'"', len(_PREFIX))
    return line[len(_PREFIX) : end].decode()


def parse(line: bytes) -> dict[str, Any]:
    return jsoncodec.loads(line)
