"""Very long view lines (a group of a million members is one 37 MB line) are staged as they are and read
back whole, across download chunks."""

from __future__ import annotations

from azure.storage.blob import BlobServiceClient

from shared.storage.blobs import StagedJsonl, read_lines


async def test_long_lines_are_staged_whole_and_read_back_across_chunks(
    storage_environ: dict[str, str],
) -> None:
    service = BlobServiceClient.from_connection_string(storage_environ["AzureWebJobsStorage"])
    container = service.get_container_client(storage_environ["EXTRACTS_CONTAINER"])
    container.create_container()
    long_line = b'{"id":"g1","attributes":{"members":["' + b"a" * 9_000_000 + b'"]}}'  # three 4 MiB chunks
    lines = [b'{"id":"u1"}', long_line, b'{"id":"u2"}\n', long_line + b"\n", b'{"id":"u3"}']
    writer = StagedJsonl(container, "t/runs/r/groups.jsonl", block_size=64 * 1024)
    for line in lines:
        await writer.write_line(line)
    await writer.commit()
    assert writer.records == 5
    read = [line async for line in read_lines(container, "t/runs/r/groups.jsonl")]
    assert read == [line.rstrip(b"\n") for line in lines]
