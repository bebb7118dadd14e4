"""Delivery's changes from digest tables (Azurite): a view's table is written with it, the first delivery
copies the view a range at a time, an unchanged view is not read, and a view without a table still works."""

from __future__ import annotations

import json

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from shared.delivery import changes
from shared.delivery.changes import StreamOutput, compute
from shared.storage import blobs, digests
from shared.storage.blobs import StagedJsonl, read_lines
from shared.storage.digests import MARKED, DigestBuilder, DigestTable, id_hash, line_digest


@pytest.fixture
def container(storage_environ: dict[str, str]) -> ContainerClient:
    service = BlobServiceClient.from_connection_string(storage_environ["AzureWebJobsStorage"])
    created = service.get_container_client(storage_environ["EXTRACTS_CONTAINER"])
    created.create_container()
    return created


def _lines(count: int, *, changed: dict[int, str] | None = None) -> list[bytes]:
    """View lines of varied length (one far longer than a read range), as the extract writes them."""
    lines = []
    for n in range(count):
        title = (changed or {}).get(n, f"title {n}")
        attributes = {"name": f"user {n}", "title": title, "notes": "x" * (n * 37 % 500)}
        if n == 3:
            attributes["members"] = [f"{m:08d}-0000-0000-0000-000000000000" for m in range(200)]  # 7.8 kB
        lines.append(
            blobs.encode_line({"id": f"{n:08d}-aaaa-bbbb-cccc-dddddddddddd", "attributes": attributes})
        )
    return lines


async def _view(container: ContainerClient, name: str, lines: list[bytes], *, table: bool = True) -> str:
    """A committed view file, with its table saved beside it (as the commit saves it)."""
    writer = StagedJsonl(container, name, block_size=4096, digests=DigestBuilder())
    for line in lines:
        await writer.write_line(line)
    await writer.commit()
    if table:
        assert isinstance(writer.digests, DigestBuilder)
        await digests.save(container, digests.table_name(name), writer.digests.table())
    return name


async def _no_reasons(ids: list[str], stream: StreamOutput) -> dict[str, str]:
    return {object_id: "deleted" for object_id in ids}


async def _compute(container: ContainerClient, run: str, view: str, delivered=None, **kwargs):
    stream = StreamOutput(name="users", view_file=view, target_template="account", target_folder="accounts")
    return await compute(
        container, f"t/runs/{run}", run, [stream], delivered, reasons=_no_reasons, block_size=4096,
        resend_all=kwargs.get("resend_all", False),
    )  # fmt: skip


async def _changes(container: ContainerClient, name: str) -> list[bytes]:
    return [line async for line in read_lines(container, name)]


async def test_a_first_delivery_copies_the_view_a_range_at_a_time_with_the_same_bytes(
    container: ContainerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(changes, "COPY_CHUNK", 1000)  # ranges end mid-line, at line ends, inside a long line
    lines = _lines(120)
    view = await _view(container, "t/runs/r1/users.jsonl", lines)
    result = await _compute(container, "r1", view)
    counts = result.streams["users"]
    assert (counts.new, counts.changed, counts.unchanged, counts.records) == (120, 0, 0, 120)
    head = b'{"op":"upsert","stream":"users",'
    assert await _changes(container, result.changes_file) == [head + line[1:].rstrip(b"\n") for line in lines]
    first = json.loads((await _changes(container, result.changes_file))[3])
    assert first["op"] == "upsert" and len(first["attributes"]["members"]) == 200
    cache = await digests.load(container, result.view.digests["users"])
    view_table = await digests.load(container, digests.table_name(view))
    assert cache is not None and view_table is not None
    assert (cache.hashes, cache.digests) == (view_table.hashes, view_table.digests)
    assert cache.offsets is None and view_table.offsets is not None  # the cache keeps 16 bytes a record


async def test_only_changed_records_are_read_by_range_and_an_unchanged_view_is_not_read_at_all(
    container: ContainerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await _compute(container, "r1", await _view(container, "t/runs/r1/users.jsonl", _lines(50)))
    changed = _lines(52, changed={7: "boss", 40: "deputy"})  # two changed, two new
    view = await _view(container, "t/runs/r2/users.jsonl", changed)

    def unread(*args: object, **kwargs: object) -> None:
        raise AssertionError("the view was read whole")

    ranges: list[list[tuple[int, int]]] = []
    read_ranges = changes.read_ranges

    def ranged(container: ContainerClient, name: str, places: list[tuple[int, int]], ahead: int):  # type: ignore[no-untyped-def]
        ranges.append(places)
        return read_ranges(container, name, places, ahead=ahead)

    monkeypatch.setattr(changes, "read_lines", unread)
    monkeypatch.setattr(changes, "read_chunks", unread)
    monkeypatch.setattr(changes, "read_ranges", ranged)
    second = await _compute(container, "r2", view, first.view)
    counts = second.streams["users"]
    assert (counts.new, counts.changed, counts.unchanged) == (2, 2, 48)
    sent = await _changes(container, second.changes_file)
    assert [json.loads(line)["id"][:8] for line in sent] == ["00000007", "00000040", "00000050", "00000051"]
    head = b'{"op":"upsert","stream":"users",'
    assert sent == [head + changed[n][1:].rstrip(b"\n") for n in (7, 40, 50, 51)]  # the view's bytes
    size = sum(len(line) for line in changed)
    assert (
        len(ranges) == 1 and sum(length for _, length in ranges[0]) < size
    )  # the changed lines' ranges only
    ranges.clear()
    third = await _compute(
        container, "r3", await _view(container, "t/runs/r3/users.jsonl", changed), second.view
    )
    assert third.streams["users"].unchanged == 52 and third.total == 0
    assert await _changes(container, third.changes_file) == [] and ranges == []


async def test_a_view_without_its_table_gives_the_same_changes(container: ContainerClient) -> None:
    first = await _compute(container, "r1", await _view(container, "t/runs/r1/users.jsonl", _lines(30)))
    lines = _lines(29, changed={4: "new title"})  # one changed, one gone (marked)
    with_table = await _compute(
        container, "r2", await _view(container, "t/runs/r2/users.jsonl", lines), first.view
    )
    without = await _compute(
        container, "r3", await _view(container, "t/runs/r3/users.jsonl", lines, table=False), first.view
    )
    assert with_table.streams["users"].as_dict() == without.streams["users"].as_dict()
    assert with_table.streams["users"].changed == 1
    assert await _changes(container, with_table.changes_file) == await _changes(
        container, without.changes_file
    )
    # a first delivery too: the copy path builds its table from the lines
    fresh = await _compute(
        container, "r4", await _view(container, "t/runs/r4/users.jsonl", lines, table=False)
    )
    assert fresh.streams["users"].new == 29


async def test_a_cleared_cache_sends_every_record_again_by_the_copy(container: ContainerClient) -> None:
    lines = _lines(10)
    first = await _compute(container, "r1", await _view(container, "t/runs/r1/users.jsonl", lines))
    view = await _view(container, "t/runs/r2/users.jsonl", lines)
    second = await _compute(container, "r2", view, first.view, resend_all=True)
    assert second.streams["users"].changed == 10 and second.upserts == 10
    head = b'{"op":"upsert","stream":"users",'
    assert await _changes(container, second.changes_file) == [head + line[1:].rstrip(b"\n") for line in lines]


async def test_a_view_line_that_is_not_an_object_is_refused(container: ContainerClient) -> None:
    view = "t/runs/r1/users.jsonl"
    writer = StagedJsonl(container, view, block_size=4096)
    await writer.write_line(b'{"id":"a","attributes":{}}')
    await writer.write_line(b'["not", "a", "record"]')
    await writer.commit()
    table = DigestBuilder()
    table.add(id_hash("a"), 5)
    table.add(id_hash("b"), 6)
    await digests.save(container, digests.table_name(view), table.table())
    with pytest.raises(ValueError, match=r"users\.jsonl: a line that is not a JSON object"):
        await _compute(container, "r1", view)


def test_marks_are_spliced_into_a_table_in_order() -> None:
    builder = DigestBuilder()
    for n in range(1000):
        builder.add(id_hash(str(n)), line_digest(str(n).encode()))
    table = builder.table()
    marked = [id_hash(f"gone {n}") for n in range(25)]
    merged = digests.with_marks(table, marked)
    everything = DigestBuilder()
    for hashed, digest in zip(table.hashes, table.digests, strict=True):
        everything.add(hashed, digest)
    for hashed in marked:
        everything.add(hashed, MARKED)
    expected = everything.table()
    assert (merged.hashes, merged.digests) == (expected.hashes, expected.digests)
    assert digests.with_marks(table, []) is table
    # The cache's bytes are built from slices: the same as the table with marks, without places.
    edges = [0, (1 << 64) - 1, *marked]  # before the first hash and after the last too
    assert digests.marked_bytes(table, edges) == digests.with_marks(table, edges).to_bytes()
    assert digests.marked_bytes(table, []) == table.to_bytes()
    placed = DigestBuilder()
    placed.add_line(b'{"id":"x","attributes":{}}', 0)
    with_places = placed.table()
    assert with_places.offsets is not None
    plain = DigestTable.from_bytes(digests.marked_bytes(with_places, [5]))
    assert plain.offsets is None and list(plain.digests).count(MARKED) == 1 and len(plain) == 2


def test_tables_compare_by_id_and_digest() -> None:
    def table(entries: dict[str, str]) -> DigestTable:
        builder = DigestBuilder()
        for object_id, content in entries.items():
            builder.add(id_hash(object_id), line_digest(content.encode()))
        return builder.table()

    old = table({"a": "1", "b": "2", "c": "3"})
    assert digests.compare(table({"a": "1", "b": "2", "c": "3"}), old) == (3, 0, 0)
    assert digests.compare(table({"a": "1", "b": "9", "c": "3"}), old) == (3, 1, 0)  # same ids: one differs
    assert digests.compare(table({"a": "1", "c": "4", "d": "5"}), old) == (
        3,
        2,
        1,
    )  # c changed, d new, b gone
    assert digests.compare(table({"a": "1"}), None) == (1, 1, 0)


async def test_ranges_read_ahead_come_in_order_and_a_reader_may_stop_early(
    container: ContainerClient,
) -> None:
    data = bytes(range(256)) * 400  # 102,400 bytes
    container.upload_blob("t/blob", data)
    chunks = [chunk async for chunk in blobs.read_chunks(container, "t/blob", size=10_000, ahead=3)]
    assert [len(chunk) for chunk in chunks] == [10_000] * 10 + [2_400] and b"".join(chunks) == data
    reader = blobs.read_chunks(container, "t/blob", size=10_000, ahead=3)
    assert await anext(reader) == data[:10_000]
    await reader.aclose()  # three ranges in flight are dropped without an unretrieved error


async def test_a_views_table_says_where_each_line_is_however_it_was_written(
    container: ContainerClient,
) -> None:
    """Pages staged concurrently (each its own block, in the order they finish), lines longer than a block,
    and buffered lines: each line's offset and length in the committed file are the table's."""
    import asyncio

    builder = DigestBuilder()
    writer = StagedJsonl(container, "t/runs/r1/groups.jsonl", block_size=2048, digests=builder)
    pages = [
        [{"id": f"p{page}-{n}", "attributes": {"x": "y" * (n * 97 % 900)}} for n in range(12)]
        for page in range(6)
    ]
    await asyncio.gather(*(writer.stage(records) for records in pages))
    await writer.write_line(blobs.encode_line({"id": "long", "attributes": {"m": "z" * 5000}}))
    for n in range(30):
        await writer.write({"id": f"b{n}", "attributes": {"n": n}})
    await writer.commit()
    table = builder.table()
    assert table.offsets is not None and table.lengths is not None
    data = container.download_blob("t/runs/r1/groups.jsonl").readall()
    offset, seen = 0, 0
    for line in data.split(b"\n")[:-1]:
        at = table.find(id_hash(json.loads(line)["id"]))
        assert (table.offsets[at], table.lengths[at]) == (offset, len(line))
        offset += len(line) + 1
        seen += 1
    assert seen == len(table) == 6 * 12 + 31
    again = DigestTable.from_bytes(
        table.to_bytes()
    )  # the places survive a round trip; a cache table has none
    assert (again.offsets, again.lengths) == (table.offsets, table.lengths)
    plain = DigestTable.from_bytes(digests.with_marks(table, [1]).to_bytes())
    assert plain.offsets is None and len(plain) == len(table) + 1


async def test_a_table_that_disagrees_with_its_file_sends_nothing_wrong(container: ContainerClient) -> None:
    first = await _compute(container, "r1", await _view(container, "t/runs/r1/users.jsonl", _lines(20)))
    lines = _lines(20, changed={5: "changed"})
    view = await _view(container, "t/runs/r2/users.jsonl", lines)
    table = await digests.load(container, digests.table_name(view))
    assert table is not None and table.offsets is not None
    for at in range(len(table)):
        table.offsets[at] += 3  # every place off by three bytes
    await digests.save(container, digests.table_name(view), table)
    with pytest.raises(ValueError, match="no record at"):
        await _compute(container, "r2", view, first.view)


async def test_a_block_that_fails_to_stage_leaves_the_list_and_the_table(container: ContainerClient) -> None:
    builder = DigestBuilder()
    writer = StagedJsonl(container, "t/runs/r1/users.jsonl", block_size=2048, digests=builder)
    await writer.stage([{"id": "a", "attributes": {}}])

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError("storage is down")

    writer._blob.stage_block = fail  # type: ignore[method-assign]
    with pytest.raises(OSError, match="storage is down"):
        await writer.stage([{"id": "b", "attributes": {}}])
    assert len(writer.blocks) == 1 and writer.records == 1 and writer.digests is None
