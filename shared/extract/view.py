"""View lines parsed with their member id arrays packed (:class:`MemberIds`), for incremental runs that patch
a previous record's members. Reading view files and their digests is storage-level: :mod:`shared.storage.views`.
"""

from __future__ import annotations

import binascii
import json
import re
from collections.abc import Iterable
from typing import Any

from shared.extract.fanout import MemberIds

_ID_ARRAY = re.compile(rb'\[(?:"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",?)*\]')
_NOT_HEX = b'[]",-'
_PLACEHOLDER = "\x00packed-ids\x00"


def parse_packed(line: bytes, codes: Iterable[str]) -> dict[str, Any]:
    """:func:`shared.storage.views.parse`, with the id arrays of the attributes ``codes`` (members, memberOf) packed
    (:class:`MemberIds`) instead of lists of strings: a group of a million members takes 16 MB, not 120.
    Anything unexpected (another form of array, the key elsewhere) parses the plain way."""
    record = None
    packed: dict[str, MemberIds] = {}
    for code in codes:
        key = json.dumps(code, ensure_ascii=False).encode() + b":"
        at = line.find(key)
        if at < 0 or line.find(key, at + 1) >= 0:
            continue
        found = _ID_ARRAY.match(line, at + len(key))
        if found is None:
            continue
        digits = found.group().translate(None, _NOT_HEX)
        packed[code] = MemberIds.from_packed(binascii.unhexlify(digits))
        line = line[: found.start()] + json.dumps(_PLACEHOLDER).encode() + line[found.end() :]
    record = json.loads(line)
    attributes = record.get("attributes") if isinstance(record, dict) else None
    for code, ids in packed.items():
        if not isinstance(attributes, dict) or attributes.get(code) != _PLACEHOLDER:
            raise ValueError(
                f"attribute {code!r} not where it was expected"
            )  # never for the connector's views
        attributes[code] = ids
    return record
