"""Storage calls two ways, under four concurrent runs: the sync Azure SDK clients in worker threads (one
executor owns the threading) against the SDKs' async clients (``azure.storage.blob.aio``,
``azure.data.tables.aio``; aiohttp underneath).

Each simulated run does what a run of the benchmark tenant does to storage, scaled down: stage 40 blocks of
256 KiB, commit them, read the blob back in 4 MiB ranges line by line, write 200 table rows (checkpoints,
history) and hold a blob lease renewed every few calls. Each variant runs in a fresh process (peak RSS is
per process) against one Azurite.

    python -m devtools.storage_calls            # both variants, three rounds each, medians printed
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import resource
import statistics
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

RUNS = 4
BLOCKS = 40
BLOCK_BYTES = 256 * 1024
ROWS = 200
LINE = b'{"id":"00000000-0000-0000-0000-000000000000","attributes":{"name":"' + b"x" * 180 + b'"}}\n'


def _block() -> bytes:
    return LINE * (BLOCK_BYTES // len(LINE))


def _block_id() -> str:
    return base64.b64encode(uuid.uuid4().hex.encode()).decode()


async def threads_variant(connection: str, tag: str) -> None:
    from azure.data.tables import TableServiceClient, UpdateMode
    from azure.storage.blob import BlobBlock, BlobLeaseClient, BlobServiceClient

    executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="storage")
    loop = asyncio.get_running_loop()

    async def call(fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await loop.run_in_executor(executor, lambda: fn(*args, **kwargs))

    blobs = BlobServiceClient.from_connection_string(
        connection, max_single_get_size=4 * 1024 * 1024, max_chunk_get_size=4 * 1024 * 1024
    )
    tables = TableServiceClient.from_connection_string(connection)
    container = blobs.get_container_client(f"bench{tag}")
    await call(container.create_container)
    table = tables.get_table_client(f"bench{tag}")
    await call(tables.create_table_if_not_exists, f"bench{tag}")

    async def run(number: int) -> None:
        lock = container.get_blob_client(f"run{number}.lock")
        await call(lock.upload_blob, b"", overwrite=True)
        lease = BlobLeaseClient(lock)
        await call(lease.acquire, lease_duration=60)
        blob = container.get_blob_client(f"run{number}.jsonl")
        data = _block()
        ids = []
        for index in range(BLOCKS):
            block_id = _block_id()
            await call(blob.stage_block, block_id, data)
            ids.append(block_id)
            if index % 10 == 0:
                await call(lease.renew)
        await call(blob.commit_block_list, [BlobBlock(block_id=i) for i in ids])
        chunks = await call(lambda: blob.download_blob().chunks())
        lines = 0
        while (chunk := await call(next, chunks, None)) is not None:
            lines += chunk.count(b"\n")
        for row in range(ROWS):
            entity = {"PartitionKey": f"run{number}", "RowKey": f"{row:05d}", "state": "x" * 500}
            await call(table.upsert_entity, entity, mode=UpdateMode.REPLACE)
        await call(lease.release)

    await asyncio.gather(*(run(n) for n in range(RUNS)))
    executor.shutdown()


async def aio_variant(connection: str, tag: str) -> None:
    from azure.data.tables import UpdateMode
    from azure.data.tables.aio import TableServiceClient
    from azure.storage.blob import BlobBlock
    from azure.storage.blob.aio import BlobLeaseClient, BlobServiceClient

    async with (
        BlobServiceClient.from_connection_string(
            connection, max_single_get_size=4 * 1024 * 1024, max_chunk_get_size=4 * 1024 * 1024
        ) as blobs,
        TableServiceClient.from_connection_string(connection) as tables,
    ):
        container = blobs.get_container_client(f"bench{tag}")
        await container.create_container()
        await tables.create_table_if_not_exists(f"bench{tag}")
        table = tables.get_table_client(f"bench{tag}")

        async def run(number: int) -> None:
            lock = container.get_blob_client(f"run{number}.lock")
            await lock.upload_blob(b"", overwrite=True)
            lease = BlobLeaseClient(lock)
            await lease.acquire(lease_duration=60)
            blob = container.get_blob_client(f"run{number}.jsonl")
            data = _block()
            ids = []
            for index in range(BLOCKS):
                block_id = _block_id()
                await blob.stage_block(block_id, data)
                ids.append(block_id)
                if index % 10 == 0:
                    await lease.renew()
            await blob.commit_block_list([BlobBlock(block_id=i) for i in ids])
            downloader = await blob.download_blob()
            lines = 0
            async for chunk in downloader.chunks():
                lines += chunk.count(b"\n")
            for row in range(ROWS):
                entity = {"PartitionKey": f"run{number}", "RowKey": f"{row:05d}", "state": "x" * 500}
                await table.upsert_entity(entity, mode=UpdateMode.REPLACE)
            await lease.release()

        await asyncio.gather(*(run(n) for n in range(RUNS)))
        await table.close()


def measure(variant: str, connection: str) -> dict[str, float]:
    tag = uuid.uuid4().hex[:10]
    chosen = threads_variant if variant == "threads" else aio_variant
    wall = time.perf_counter()
    cpu = time.process_time()
    asyncio.run(chosen(connection, tag))
    return {
        "wall_s": time.perf_counter() - wall,
        "cpu_s": time.process_time() - cpu,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.storage_calls", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--variant", choices=("threads", "aio"))
    parser.add_argument("--connection")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    if args.variant:  # one measurement, in this (fresh) process
        print(json.dumps(measure(args.variant, args.connection)))
        return 0

    from devtools.azurite import Azurite

    results: dict[str, list[dict[str, float]]] = {"threads": [], "aio": []}
    with Azurite() as azurite:
        for _ in range(args.rounds):
            for variant in results:
                output = subprocess.run(
                    [sys.executable, "-m", "devtools.storage_calls", "--variant", variant,
                     "--connection", azurite.connection_string],
                    check=True, capture_output=True, text=True,
                ).stdout  # fmt: skip
                results[variant].append(json.loads(output))
    volume = RUNS * BLOCKS * BLOCK_BYTES / 2**20
    print(f"{RUNS} concurrent runs, each: {BLOCKS} blocks of {BLOCK_BYTES // 1024} KiB staged, committed and read "
          f"back ({volume:.0f} MiB in all), {ROWS} table rows, a renewed lease; median of {args.rounds} rounds")  # fmt: skip
    print(f"  {'':<28}{'wall':>8}{'CPU':>8}{'peak RSS':>10}")
    for variant, rounds in results.items():
        label = "sync SDK, one thread pool" if variant == "threads" else "async SDK clients (aiohttp)"
        wall = statistics.median(r["wall_s"] for r in rounds)
        cpu = statistics.median(r["cpu_s"] for r in rounds)
        rss = statistics.median(r["peak_rss_mb"] for r in rounds)
        print(f"  {label:<28}{wall:>7.2f}s{cpu:>7.2f}s{rss:>8.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
