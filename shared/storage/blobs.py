"""Run output in blob storage: JSON Lines written as staged blocks, visible only once committed.

A block blob's staged blocks are invisible until ``commit_block_list``; a run stages its files while it
reads and commits them at the end, then writes ``manifest.json`` last. A crashed run leaves only
uncommitted blocks (never visible, discarded by the service after a week), so the previous run's output is
untouched. The block ids staged so far are part of a run's checkpoint: a restarted invocation commits them
together with what it stages after resuming.

Layout (container ``EXTRACTS_CONTAINER``, default ``extracts``)::

    {task}/runs/{run_id}/users.jsonl      one record per line
    {task}/runs/{run_id}/groups.jsonl
    {task}/runs/{run_id}/users.jsonl.digests  its digest table (shared/storage/digests.py), with the file
    {task}/runs/{run_id}/manifest.json    written last: a run folder without it did not commit
    {task}/latest.json                    the last committed run's manifest (the current view)
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterable
from typing import Any, Protocol

from azure.core import MatchConditions
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobBlock, BlobClient, ContainerClient, ContentSettings

from shared import jsoncodec
from shared.storage import threads

JSONL = ContentSettings(content_type="application/x-ndjson")
JSON = ContentSettings(content_type="application/json")


def run_prefix(task: str, run_id: str) -> str:
    return f"{task}/runs/{run_id}"


def latest_name(task: str) -> str:
    return f"{task}/latest.json"


_RAW = f"\x00raw-json-{secrets.token_hex(8)}-"  # a placeholder no Graph value holds


def encode_line(record: dict[str, Any]) -> bytes:
    """One JSON line. A value with a ``json_bytes()`` method (packed member ids) writes its own JSON, so a very
    large list needs no Python object per item."""
    raw: list[Any] = []

    def placeholder(value: Any) -> str:
        if not hasattr(value, "json_bytes"):
            raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
        raw.append(value)
        return f"{_RAW}{len(raw) - 1}\x00"

    text = jsoncodec.dumps(record, default=placeholder)
    if not raw:
        return text + b"\n"
    parts = []
    for number, value in enumerate(raw):
        marker = json.dumps(f"{_RAW}{number}\x00").encode()
        head, text = text.split(marker, 1)
        parts += [head, value.json_bytes()]
    parts += [text, b"\n"]
    return b"".join(parts)


class LineDigests(Protocol):
    """What a writer tells about each line it writes (shared.storage.digests.DigestBuilder)."""

    def add_line(self, line: bytes, offset: int | None = None) -> None: ...


STAGING_AHEAD = 1  # blocks of a buffered writer staged in the background at once (memory: block size each)


def _retrieve(future: asyncio.Future[Any]) -> None:
    """An upload nobody awaits any more (its writer failed elsewhere) must not warn "never retrieved"."""
    if not future.cancelled():
        future.exception()


class StagedJsonl:
    """One JSON Lines blob being written. ``blocks`` (staged ids, in order) is what a checkpoint keeps."""

    def __init__(
        self,
        container: ContainerClient,
        name: str,
        *,
        block_size: int,
        blocks: Iterable[str] = (),
        records: int = 0,
        digests: LineDigests | None = None,
        staging_ahead: int = STAGING_AHEAD,
    ) -> None:
        """``digests``: given every line written (a view's writer: its digest table is built while it is
        written, not read back later). ``staging_ahead``: blocks staged in the background at once."""
        self.name = name
        self.digests = digests
        self._ahead = staging_ahead
        self._blob = container.get_blob_client(name)
        self._block_size = block_size
        self._buffer = bytearray()
        self.blocks: list[str] = list(blocks)
        self.records = records  # records in staged blocks (and in blocks being staged, until flush())
        self._buffered = 0
        self._staging: list[asyncio.Future[Any]] = []  # blocks being staged while writing goes on
        self._position = 0  # bytes in the blocks listed so far (a new file's: what digests' offsets count)

    @staticmethod
    def _block_id() -> str:
        # All ids of one blob must have the same length; random so a resumed run never reuses one.
        return base64.b64encode(uuid.uuid4().hex.encode()).decode()

    async def write(self, record: dict[str, Any]) -> None:
        line = encode_line(record)
        if self.digests is not None:
            self.digests.add_line(line, self._position + len(self._buffer))
        self._buffer += line
        self._buffered += 1
        if len(self._buffer) >= self._block_size:
            await self._send_buffer()

    async def write_line(self, line: bytes) -> None:
        """A line already encoded (kept unchanged from a previous run's file)."""
        if self.digests is not None:
            self.digests.add_line(line, self._position + len(self._buffer))
        if len(line) >= self._block_size:
            # A very long line (a group of a million members: 37 MB) is staged as it is, after what is
            # buffered, rather than copied into the buffer and out again.
            await self._send_buffer()
            await self._send(line)
            if not line.endswith(b"\n"):
                await self._send(b"\n")
            self.records += 1
            return
        self._buffer += line if line.endswith(b"\n") else line + b"\n"
        self._buffered += 1
        if len(self._buffer) >= self._block_size:
            await self._send_buffer()

    async def write_parts(self, head: bytes, rest: bytes | memoryview) -> None:
        """One line given as a prefix and the rest of an encoded line (a view line after its ``{``), written
        without joining them first; a newline is added."""
        if len(head) + len(rest) >= self._block_size:
            await self.write_line(head + bytes(rest))  # a very long line: its own block, as write_line does
            return
        if self.digests is not None:
            self.digests.add_line(head + bytes(rest), self._position + len(self._buffer))
        self._buffer += head
        self._buffer += rest
        self._buffer += b"\n"
        self._buffered += 1
        if len(self._buffer) >= self._block_size:
            await self._send_buffer()

    async def stage(self, records: list[dict[str, Any]]) -> str | None:
        """Stage ``records`` as block(s) of their own (not mixed with the buffer); returns the last id.

        Used where a checkpoint must say exactly which records a set of blocks holds: the block is staged
        when this returns. Its place among ``blocks`` is taken when it is called (so the offsets its lines
        are given hold in the committed file); a failed upload takes it out again.
        """
        lines = [encode_line(r) for r in records]
        if not lines:
            return None
        await self._send_buffer()  # what is buffered comes first (a writer that stages does not buffer)
        if self.digests is not None:
            offset = self._position
            for line in lines:
                self.digests.add_line(line, offset)
                offset += len(line)
        data = b"".join(lines)
        block_id = self._block_id()
        self.blocks.append(block_id)
        self._position += len(data)
        try:
            await threads.call(self._blob.stage_block, block_id, data)
        except BaseException:
            self.blocks.remove(block_id)
            self.digests = None  # its offsets no longer hold: readers build the table from the file
            raise
        self.records += len(records)
        return block_id

    async def write_lines(self, data: bytes, lines: int) -> None:
        """Whole lines already encoded, each ending in a newline (``lines`` of them), written as they are."""
        if self.digests is not None:
            offset = self._position + len(self._buffer)
            for line in data.splitlines(keepends=True):
                self.digests.add_line(line, offset)
                offset += len(line)
        if not self._buffer and len(data) >= self._block_size:  # a block as it is: no copy into the buffer
            await self._send(data)
            self.records += lines
            return
        self._buffer += data
        self._buffered += lines
        if len(self._buffer) >= self._block_size:
            await self._send_buffer()

    async def flush(self) -> None:
        """Stage what is buffered; when this returns, every block in ``blocks`` is staged."""
        await self._send_buffer()
        await self._settle(0)

    async def _send_buffer(self) -> None:
        if not self._buffer:
            return
        data, self._buffer = bytes(self._buffer), bytearray()
        await self._send(data)
        self.records += self._buffered
        self._buffered = 0

    async def _send(self, data: bytes) -> None:
        """Stage a block in the background: the writer goes on filling the next block (or reading what it
        copies) meanwhile. The block's place in ``blocks`` is taken now, so the order of the blob's blocks is
        the order of writing, whichever upload ends first; at most ``staging_ahead`` blocks are in flight."""
        block_id = self._block_id()
        self.blocks.append(block_id)
        self._position += len(data)
        await self._settle(self._ahead - 1)
        staging = asyncio.ensure_future(threads.call(self._blob.stage_block, block_id, data))
        staging.add_done_callback(_retrieve)
        self._staging.append(staging)

    async def _settle(self, keep: int) -> None:
        """Wait until at most ``keep`` blocks are still being staged (a failed upload raises here)."""
        while len(self._staging) > keep:
            await self._staging.pop(0)

    async def commit(self) -> None:
        await self.flush()
        await threads.call(
            self._blob.commit_block_list, [BlobBlock(block_id=b) for b in self.blocks], content_settings=JSONL
        )


async def put_json(container: ContainerClient, name: str, data: Any) -> None:
    body = json.dumps(data, ensure_ascii=False, indent=2).encode()
    await threads.call(
        container.get_blob_client(name).upload_blob, body, overwrite=True, content_settings=JSON
    )


async def get_json(container: ContainerClient, name: str) -> Any | None:
    def read() -> bytes | None:
        try:
            return container.get_blob_client(name).download_blob().readall()
        except ResourceNotFoundError:
            return None

    raw = await threads.call(read)
    return None if raw is None else json.loads(raw)


READ_CHUNK = 1024 * 1024  # bytes per ranged read of a committed file


async def read_lines(container: ContainerClient, name: str) -> AsyncIterator[bytes]:
    """The lines of a committed JSON Lines blob, read in ranges of :data:`READ_CHUNK` (memory stays flat)."""
    pending: list[bytes] = []  # the start of a line that continues in the next range(s)
    async for chunk in read_chunks(container, name):
        for line in _split(chunk, pending):
            yield line
    if pending:
        yield b"".join(pending)


async def read_chunks(
    container: ContainerClient, name: str, *, size: int | None = None, ahead: int = 1
) -> AsyncIterator[bytes]:
    """A committed blob's bytes in ranges of ``size`` (:data:`READ_CHUNK` by default; lines may span ranges).

    The next ``ahead`` ranges download while the caller works through this one, so reading a view back (the
    delivery's changes, an incremental merge) waits on storage once, not per range.
    """
    blob = container.get_blob_client(name)
    properties = await threads.call(blob.get_blob_properties)
    total, step = properties.size, size or READ_CHUNK
    ranges = ((offset, min(step, total - offset)) for offset in range(0, total, step))
    async for chunk in _ranges(blob, properties.etag, ranges, ahead):
        yield chunk


async def read_ranges(
    container: ContainerClient, name: str, ranges: Iterable[tuple[int, int]], *, ahead: int = 3
) -> AsyncIterator[bytes]:
    """The bytes of a committed blob at each (offset, length) of ``ranges``, in order, ``ahead`` of them
    downloading while the caller works through one."""
    blob = container.get_blob_client(name)
    properties = await threads.call(blob.get_blob_properties)
    async for chunk in _ranges(blob, properties.etag, ranges, ahead):
        yield chunk


async def _ranges(
    blob: BlobClient, etag: str, ranges: Iterable[tuple[int, int]], ahead: int
) -> AsyncIterator[bytes]:
    """Each range is one GET pinned to the blob's ETag: a blob replaced under the reader fails the read
    rather than mixing two versions."""

    def download(offset: int, length: int) -> bytes:
        return blob.download_blob(
            offset=offset, length=length, etag=etag, match_condition=MatchConditions.IfNotModified
        ).readall()

    todo = iter(ranges)
    pending: deque[asyncio.Future[bytes]] = deque()
    try:
        while True:
            while len(pending) <= ahead:
                place = next(todo, None)
                if place is None:
                    break
                pending.append(asyncio.ensure_future(threads.call(download, *place)))
            if not pending:
                return
            yield await pending.popleft()
    finally:
        for future in pending:  # the caller stopped reading early
            future.cancel()
            future.add_done_callback(_retrieve)


def _split(chunk: bytes, pending: list[bytes]) -> list[bytes]:
    """The complete lines of ``chunk``; the start of a line that continues in the next chunk(s) is left in
    ``pending`` (a long line is joined once at its end, not copied chunk after chunk)."""
    lines = chunk.split(b"\n")
    if len(lines) == 1:
        pending.append(chunk)
        return []
    if pending:
        pending.append(lines[0])
        lines[0] = b"".join(pending)
        pending.clear()
    rest = lines.pop()
    if rest:
        pending.append(rest)
    return [line for line in lines if line]
