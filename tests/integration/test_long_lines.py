"""Very long view lines (a group of a million members is one 37 MB line) are staged as they are and read
back whole, across download chunks."""

from __future__ import annotations

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient

from shared.storage.blobs import STAGING_AHEAD, StagedJsonl, read_lines


@pytest.fixture
def service(storage_environ: dict[str, str]) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(storage_environ["AzureWebJobsStorage"])


@pytest.fixture
def container(service: BlobServiceClient, storage_environ: dict[str, str]) -> ContainerClient:
    created = service.get_container_client(storage_environ["EXTRACTS_CONTAINER"])
    created.create_container()
    return created


async def test_long_lines_are_staged_whole_and_read_back_across_chunks(container: ContainerClient) -> None:
    # Nine ranges of READ_CHUNK, so the line crosses several.
    long_line = b'{"id":"g1","attributes":{"members":["' + b"a" * 9_000_000 + b'"]}}'
    lines = [b'{"id":"u1"}', long_line, b'{"id":"u2"}\n', long_line + b"\n", b'{"id":"u3"}']
    writer = StagedJsonl(container, "t/runs/r/groups.jsonl", block_size=64 * 1024)
    for line in lines:
        await writer.write_line(line)
    await writer.commit()
    assert writer.records == 5
    read = [line async for line in read_lines(container, "t/runs/r/groups.jsonl")]
    assert read == [line.rstrip(b"\n") for line in lines]


async def test_blocks_staged_in_the_background_keep_their_order_and_a_failed_upload_is_not_lost(
    service: BlobServiceClient, container: ContainerClient
) -> None:
    lines = [f'{{"id":"u{n}","attributes":{{"pad":"{"x" * (n % 900)}"}}}}'.encode() for n in range(3000)]
    writer = StagedJsonl(container, "t/runs/r/users.jsonl", block_size=64 * 1024)
    for line in lines:
        await writer.write_line(line)
    await writer.flush()
    assert len(writer.blocks) > 2 * STAGING_AHEAD and writer.records == len(lines)
    # After flush() every listed block is staged: the uncommitted block list names them all, in order.
    staged = container.get_blob_client("t/runs/r/users.jsonl").get_block_list("uncommitted")[1]
    assert sorted(b.id for b in staged) == sorted(writer.blocks)
    await writer.commit()
    read = [line async for line in read_lines(container, "t/runs/r/users.jsonl")]
    assert read == lines

    # A reader that stops early leaves no download behind it.
    async for first in read_lines(container, "t/runs/r/users.jsonl"):
        assert first == lines[0]
        break

    # Uploads that fail in the background fail the writer (here: its container does not exist).
    missing = service.get_container_client("no-such-container")
    failing = StagedJsonl(missing, "t/runs/r/users.jsonl", block_size=64 * 1024)
    with pytest.raises(ResourceNotFoundError):
        for line in lines:
            await failing.write_line(line)
        await failing.commit()
