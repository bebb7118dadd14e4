"""Packed member ids are written as the JSON of their sorted strings, byte for byte."""

from __future__ import annotations

import json
import random
import uuid

import pytest

from shared.extract.fanout import MemberIds
from shared.extract.view import parse_packed
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


def test_patching_packed_ids_equals_patching_the_strings() -> None:
    ids = _ids(3000, 7)
    lost = set(ids[:40]) | {"00000000-0000-0000-0000-00000000000a"}  # one that is not there
    gained = set(_ids(25, 8)) | {ids[100]}  # one already there
    patched = MemberIds(ids + ids[:5]).patched(gained, lost)  # duplicates in the view: each id once
    assert encode_line({"m": patched}) == encode_line({"m": sorted((set(ids) - lost) | gained)})


def test_a_view_line_parses_with_its_member_ids_packed() -> None:
    ids = sorted(_ids(2000, 9))
    record = {"id": "g1", "attributes": {"name": 'a "members":[ b', "members": ids, "owners": ids[:3]}}
    line = encode_line(record)
    parsed = parse_packed(line, ["members"])
    assert isinstance(parsed["attributes"]["members"], MemberIds)
    assert parsed["attributes"]["owners"] == ids[:3] and parsed["attributes"]["name"] == 'a "members":[ b'
    assert encode_line(parsed) == line
    # Another form than the connector writes (not ids, a nested key of the same name): parsed the plain way.
    odd = encode_line({"id": "g2", "attributes": {"members": ["x"], "other": {"members": ids[:2]}}})
    assert parse_packed(odd, ["members"]) == json.loads(odd)


@pytest.mark.parametrize(
    "odd",
    [
        [],
        ["not-a-guid"],
        ["0123456789abcdef0123456789abcdef"],  # no dashes
        ["01234567-89ab-cdef-0123-456789abcde", "01234567-89ab-cdef-0123-456789abcdef0"],  # 35 and 37
        ["01234567-89ab-cdef-0123-456789abcd f"],  # whitespace
        ["0123456789-ab-cdef-0123-456789abcdef"],  # dashes elsewhere
    ],
)
def test_a_page_of_ids_packs_as_its_ids_one_by_one(odd: list[str]) -> None:
    ids = _ids(50, 4) + [i.upper() for i in _ids(3, 5)] + odd
    one_by_one = MemberIds()
    for object_id in ids:
        one_by_one.extend([object_id])
    at_once = MemberIds(ids)
    assert (at_once._packed, at_once._other) == (one_by_one._packed, one_by_one._other)


def test_patching_a_sorted_view_splices_and_equals_patching_the_strings() -> None:
    ids = sorted(_ids(3000, 11))
    view_ids = MemberIds.from_packed(MemberIds(ids)._packed)
    lost = set(ids[:40]) | set(ids[-3:]) | {"00000000-0000-0000-0000-00000000000a"}
    gained = set(_ids(25, 12)) | {
        ids[100],
        "00000000-0000-0000-0000-000000000000",
        "ffffffff-ffff-ffff-ffff-ffffffffffff",
    }
    patched = view_ids.patched(gained, lost)
    assert encode_line({"m": patched}) == encode_line({"m": sorted((set(ids) - lost) | gained)})


async def test_json_built_ahead_for_a_huge_group_is_the_same_and_lets_the_loop_run():
    import asyncio

    from shared.extract.fanout import SORT_AT_ONCE

    rng = random.Random(11)
    ids = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(SORT_AT_ONCE + 5000)]
    expected = json.dumps(sorted(ids), separators=(",", ":")).encode()
    turns = 0

    async def other_work() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    packed = MemberIds(ids)
    ticker = asyncio.ensure_future(other_work())
    await packed.prepare_json()
    ticker.cancel()
    assert turns > 10  # the loop ran other work while the JSON was built (a step per first byte)
    assert bytes(packed.json_bytes()) == expected
    assert bytes(packed.json_bytes()) == expected  # built anew once the prepared bytes were handed over
    small = MemberIds(ids[:100])
    await small.prepare_json()  # small groups are left to json_bytes
    assert bytes(small.json_bytes()) == json.dumps(sorted(ids[:100]), separators=(",", ":")).encode()
