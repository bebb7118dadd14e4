"""The task cache's pure parts: when a daily clear is due, the digest tables, batch cuts and ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.delivery.batches import BatchHeader, DeliveryBatch
from shared.delivery.cache import daily_clear_due, last_clear_moment
from shared.storage.delivery import DeliveredView, DeliveryState
from shared.storage.digests import MARKED, DigestBuilder, DigestTable, id_hash, line_digest

AT = datetime(2026, 11, 30, 5, 30, tzinfo=UTC)


def test_last_clear_moment_is_the_latest_configured_hour_not_after_now():
    assert last_clear_moment([0], AT) == datetime(2026, 11, 30, 0, 0, tzinfo=UTC)
    assert last_clear_moment([6, 12], AT) == datetime(2026, 11, 29, 12, 0, tzinfo=UTC)  # none yet today
    assert last_clear_moment([5], AT) == datetime(2026, 11, 30, 5, 0, tzinfo=UTC)
    assert last_clear_moment([], AT) is None


def test_a_daily_clear_is_due_once_per_configured_hour():
    delivered = DeliveredView(run_id="r", delivered_at=AT - timedelta(hours=7))  # 22:30 yesterday
    state = DeliveryState(delivered=delivered)
    assert daily_clear_due(state, [0], AT)  # midnight passed since the cache was built
    cleared = state.model_copy(update={"cleared_at": AT - timedelta(minutes=1)})
    assert not daily_clear_due(cleared, [0], AT)  # already cleared after midnight
    assert not daily_clear_due(state, [], AT)  # never
    assert not daily_clear_due(DeliveryState(), [0], AT)  # nothing cached: everything goes anyway


def test_digest_tables_find_every_id_and_survive_a_round_trip():
    builder = DigestBuilder()
    ids = [f"00000000-0000-0000-0000-{n:012d}" for n in range(1000)]
    for n, object_id in enumerate(ids):
        builder.add(id_hash(object_id), MARKED if n % 10 == 0 else line_digest(object_id.encode()))
    table = DigestTable.from_bytes(builder.table().to_bytes())
    assert len(table) == 1000 and table.live() == 900
    assert list(table.hashes) == sorted(table.hashes)
    for object_id in ids[:50]:
        assert table.find(id_hash(object_id)) >= 0
    assert table.find(id_hash("not-there")) == -1
    assert line_digest(b"") != MARKED  # a digest never collides with the mark


def test_batch_ids_depend_on_content_and_base_only():
    header = BatchHeader(
        task="people",
        base="run1|",
        streams={"users": {"target_template": "a", "target_folder": "b", "key": "id"}},
    )
    lines = [b'{"op":"upsert","stream":"users","id":"1","attributes":{"n":1}}\n']
    one, again = header.build(lines, 1), header.build(lines, 7)
    assert one.id == again.id and one.body == again.body  # the position is not part of it
    other_base = BatchHeader(task="people", base="run2|", streams=header.streams).build(lines, 1)
    assert other_base.id != one.id
    parsed = DeliveryBatch.model_validate_json(one.body)
    assert parsed.batch_id == one.id and parsed.records[0].attributes == {"n": 1}


def test_many_runs_clear_the_cache_once_at_each_configured_hour():
    from shared.delivery.cache import cleared

    start = datetime(2026, 11, 30, 0, 0, tzinfo=UTC)
    state = DeliveryState(delivered=DeliveredView(run_id="r", delivered_at=start), cleared_at=start)
    clears = []
    for minute in range(7, 2 * 24 * 60, 7):  # a run every 7 minutes for two days
        now = start + timedelta(minutes=minute)
        if daily_clear_due(state, [6, 12], now):
            clears.append(now)
            state = cleared(state, now)
    assert [(c.day, c.hour) for c in clears] == [(30, 6), (30, 12), (1, 6), (1, 12)]
    assert all(c.minute < 7 for c in clears)  # the first run after the hour


def test_the_guard_holds_above_its_count_or_its_share_never_at_them():
    from shared.config.delivery import DeletionGuard
    from shared.delivery.changes import ChangeSet, StreamChanges
    from shared.delivery.release import guard_reason

    def changes(users: int, groups: int, live: int) -> ChangeSet:
        streams = {
            "users": StreamChanges(marks={"deleted": users}),
            "groups": StreamChanges(marks={"out_of_scope": groups}),
        }
        return ChangeSet("changes.jsonl", streams, DeliveredView(run_id="r", delivered_at=AT), live)

    by_count = DeletionGuard(max_marks=5)
    assert guard_reason(by_count, changes(3, 2, 10)) is None  # 5 marks: at the limit
    assert "mark 6 objects" in (guard_reason(by_count, changes(3, 3, 10)) or "")  # streams add up
    by_share = DeletionGuard(max_marks=500, max_share=0.1)
    assert guard_reason(by_share, changes(10, 0, 100)) is None  # 10 of 100: at 10 %
    assert "11 of 100" in (guard_reason(by_share, changes(10, 1, 100)) or "")
    at_share = DeletionGuard(max_share=0.29)  # 0.29 * 100 is 28.999999999999996 in floats
    assert guard_reason(at_share, changes(29, 0, 100)) is None
    assert guard_reason(DeletionGuard(max_marks=0), changes(0, 0, 0)) is None
    assert guard_reason(DeletionGuard(max_marks=0), changes(1, 0, 1)) is not None


def test_a_table_is_sorted_by_hash_then_position_and_read_back_from_pieces_of_any_size():
    builder, offset = DigestBuilder(), 0
    expected = []
    for n in range(3000):
        object_id = f"id-{n % 2900}"  # a hundred ids twice: equal hashes keep their order of writing
        line = f'{{"id":"{object_id}","attributes":{{"n":{n}}}}}\n'.encode()
        builder.add_line(line, offset)
        expected.append((id_hash(object_id), n, line_digest(line), offset, len(line) - 1))
        offset += len(line)
    expected.sort()
    table = builder.table()
    assert list(table.hashes) == [e[0] for e in expected] and list(table.digests) == [e[2] for e in expected]
    assert table.offsets is not None and table.lengths is not None
    assert list(table.offsets) == [e[3] for e in expected] and list(table.lengths) == [e[4] for e in expected]
    plain = DigestBuilder()
    plain.add(id_hash("a"), 1)
    for data in (
        table.to_bytes(),
        plain.table().to_bytes(),
    ):  # with places (a view's) and without (the cache's)
        whole = DigestTable.from_bytes(data)
        for size in (1, 7, 8, 9, 1000, len(data)):
            parts = DigestTable.from_chunks(data[i : i + size] for i in range(0, len(data), size))
            assert (parts.hashes, parts.digests, parts.offsets, parts.lengths) == (
                whole.hashes, whole.digests, whole.offsets, whole.lengths
            )  # fmt: skip
        with pytest.raises(ValueError, match="cut short"):
            DigestTable.from_bytes(data[:-1])
    with pytest.raises(ValueError, match="not a digest table"):
        DigestTable.from_bytes(b"EGCDIG9\n" + bytes(8))
