"""JSON for the hot paths (Graph responses in, JSON Lines out): orjson, with the standard library behind it.

orjson parses and writes JSON several times faster than the ``json`` module (on the benchmark's full read of
100,000 users: Graph pages and batches decoded, 110,000 records encoded). Its output is byte for byte what
``json.dumps(value, ensure_ascii=False, separators=(",", ":"))`` writes for the values a record holds
(strings with every escape, integers, ``true``/``false``/``null``, lists, objects in insertion order, floats
other than those with a small negative exponent: ``1e-07`` is written ``1e-7``), so the digests of
earlier runs' lines (shared/storage/digests.py) still match after the switch. The standard library takes
over where orjson refuses what ``json`` accepts: integers beyond 64 bits, non-string keys, and an escaped
lone UTF-16 surrogate in a document (valid JSON, which a directory string can hold).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """Parse a JSON document (bytes are UTF-8)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        if isinstance(data, memoryview):
            data = data.tobytes()
        return json.loads(data)  # a lone surrogate escape parses here; invalid JSON still raises


def dumps(value: Any, *, default: Callable[[Any], Any] | None = None) -> bytes:
    """Compact UTF-8 JSON, as ``json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()``."""
    try:
        return orjson.dumps(value, default=default)
    except TypeError:  # orjson.JSONEncodeError is a TypeError: a big integer, a non-string key
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=default).encode()
