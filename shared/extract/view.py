"""View lines parsed with their member id arrays packed (:class:`MemberIds`), for incremental runs that patch
a previous record's members. Reading view files and their digests is storage-level: :mod:`shared.storage.views`.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Iterable
from typing import Any

from shared import jsoncodec
from shared.extract.fanout import MemberIds
from shared.storage.views import parse

_NOT_HEX = b'",-'
_GUID_WIDTH = 39  # "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx",


def _id_array(line: bytes, start: int) -> tuple[int, bytes] | None:
    """The end of the JSON array of canonical GUID strings at ``start`` and its ids packed, or None if
    what is there is anything else. Checked with strided slices, not a regular expression (whose
    backtracking state for a million repetitions took 340 MB)."""
    if line[start : start + 1] != b"[":
        return None
    end = line.find(b"]", start)  # GUID strings hold no "]"
    if end < 0:
        return None
    body = line[start + 1 : end]
    if not body:
        return end + 1, b""
    n, rest = divmod(len(body) + 1, _GUID_WIDTH)
    if rest or body[-1:] != b'"':
        return None
    width = _GUID_WIDTH
    if body[0::width] != b'"' * n or body[37::width] != b'"' * n or body[38::width] != b"," * (n - 1):
        return None
    if any(body[at::width] != b"-" * n for at in (9, 14, 19, 24)):
        return None
    digits = body.translate(None, _NOT_HEX)
    if len(digits) != 32 * n or digits.lower() != digits:
        return None
    try:
        return end + 1, binascii.unhexlify(digits)
    except binascii.Error:
        return None


_PLACEHOLDER = "\x00packed-ids\x00"


def parse_packed(line: bytes, codes: Iterable[str]) -> dict[str, Any]:
    """:func:`shared.storage.views.parse`, with the id arrays of the attributes ``codes`` (members, memberOf) packed
    (:class:`MemberIds`) instead of lists of strings: a group of a million members takes 16 MB, not 120.
    Anything unexpected (another form of array, the key elsewhere) parses the plain way."""
    original = line
    packed: dict[str, MemberIds] = {}
    for code in codes:
        key = json.dumps(code, ensure_ascii=False).encode() + b":"
        at = line.find(key)
        if at < 0 or line.find(key, at + 1) >= 0:
            continue
        start = at + len(key)
        found = _id_array(line, start)
        if found is None:
            continue
        end, raw = found
        packed[code] = MemberIds.from_packed(raw)
        line = line[:start] + json.dumps(_PLACEHOLDER).encode() + line[end:]
    record = jsoncodec.loads(line)
    attributes = record.get("attributes") if isinstance(record, dict) else None
    for code, ids in packed.items():
        if not isinstance(attributes, dict) or attributes.get(code) != _PLACEHOLDER:
            return parse(original)  # the key was elsewhere (a nested value): the plain way
        attributes[code] = ids
    return record
