"""The hot-path JSON codec writes what the standard library writes, so line digests of earlier runs match."""

from __future__ import annotations

import json

import pytest

from shared import jsoncodec
from shared.extract.fanout import MemberIds
from shared.storage.blobs import encode_line

RECORDS = [
    {"id": "0f8fad5b-d9cb-469f-a165-70867728950e", "attributes": {"name": "Zoë O'Brien", "enabled": True}},
    {"id": "x", "attributes": {"escapes": 'a"b\\c/d\n\t\b\f\r\x01\x1f\x7f\u2028', "none": None, "n": -0.0}},
    {"id": "y", "attributes": {"list": [1, 2.5, "三", {"nested": []}], "big": 9223372036854775807}},
    {"id": "z", "attributes": {"emoji": "🙂", "float": 1e16, "small": 0.1, "ordered": {"b": 1, "a": 2}}},
]


@pytest.mark.parametrize("record", RECORDS)
def test_dumps_writes_the_standard_librarys_bytes(record):
    expected = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()
    assert jsoncodec.dumps(record) == expected
    assert encode_line(record) == expected + b"\n"


def test_what_orjson_refuses_falls_back_to_the_standard_library():
    value = {"huge": 2**80, 3: "non-string key"}
    assert jsoncodec.dumps(value) == json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    # A lone UTF-16 surrogate escape is valid JSON that a directory string can hold; orjson refuses it.
    assert jsoncodec.loads(b'{"name":"a\\ud800b"}') == {"name": "a\ud800b"}
    with pytest.raises(ValueError):
        jsoncodec.loads(b'{"name":')


def test_packed_member_ids_still_write_their_own_json():
    ids = MemberIds(["0f8fad5b-d9cb-469f-a165-70867728950e", "00000000-0000-0000-0000-000000000001"])
    record = {"id": "g", "attributes": {"members": ids, "name": "G"}}
    line = encode_line(record)
    assert json.loads(line) == {"id": "g", "attributes": {"members": ids.sorted(), "name": "G"}}
