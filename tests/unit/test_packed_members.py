"""Packed member ids are written as the JSON of their sorted strings, byte for byte."""

from __future__ import annotations

import json
import random
import uuid

import pytest

from shared.extract.fanout import MemberIds
from shared.storage.blobs import encode_line


def _ids(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(count)]


@pytest.mark.parametrize("count", [0, 1, 2, 17, 5000])
def test_packed_members_encode_as_their_sorted_list(count: int) -> None:
    ids = _ids(count, count)
    packed = MemberIds(ids)
    record = {"id": "g1", "attributes": {"name": "Ünïcode ' \" \x00", "members": packed, "n": [1, None]}}
    plain = {"id": "g1", "attributes": {"name": "Ünïcode ' \" \x00", "members": sorted(ids), "n": [1, None]}}
    assert encode_line(record) == encode_line(plain)
    assert json.loads(encode_line(record))["attributes"]["members"] == sorted(ids)


def test_upper_case_and_non_guid_ids_are_canonical_or_kept() -> None:
    ids = [i.upper() for i in _ids(3, 1)] + ["not-a-guid", "0000"]
    record = {"members": MemberIds(ids)}
    expected = sorted([i.lower() for i in ids[:3]] + ["not-a-guid", "0000"])
    assert json.loads(encode_line(record))["members"] == expected


def test_a_value_that_looks_like_the_placeholder_is_written_as_it_is() -> None:
    record = {"a": "\x00raw-json-0\x00", "members": MemberIds(_ids(2, 3)), "b": "x"}
    decoded = json.loads(encode_line(record))
    assert decoded["a"] == "\x00raw-json-0\x00" and decoded["b"] == "x" and len(decoded["members"]) == 2


def test_other_objects_are_still_refused() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        encode_line({"a": object()})
