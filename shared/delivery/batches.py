"""Delivery batches: a run's changes cut into JSON documents (schema/delivery-batch.schema.json).

A batch holds at most ``batch_size`` changes and ``max_batch_bytes`` of them (a single larger change goes
alone). The cut depends only on the changes file, and the batch id is a digest of the task, the delivered
view the changes were computed against, and the batch's bytes. So a run that offers the same changes again
(its previous load failed, the cache did not advance) sends the same batches under the same ids, which
the receiver recognises (``Idempotency-Key``); once the cache advances, equal content gets a new id.

The body is assembled from the changes file's lines as they are (no JSON round trip)::

    {"format":"entra-graph-connector/delivery-batch-v1","batch_id":"…","task":"…",
     "streams":{"users":{"target_template":"…","target_folder":"…","key":"id"}},"records":[…]}
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from azure.storage.blob import ContainerClient

from shared.storage.blobs import read_lines

FORMAT = "entra-graph-connector/delivery-batch-v1"


@dataclass(frozen=True)
class Batch:
    id: str
    sequence: int  # 1-based position in this run's delivery (informational; not part of the id)
    records: int
    body: bytes


@dataclass(frozen=True)
class BatchHeader:
    task: str
    base: str  # the delivered view the changes were computed against ("" for none)
    streams: dict[str, dict[str, Any]]  # stream -> target_template, target_folder, key

    def build(self, lines: list[bytes], sequence: int) -> Batch:
        records = b",".join(line.rstrip(b"\n") for line in lines)
        streams = json.dumps(self.streams, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        digest = hashlib.sha256()
        for part in (self.task.encode(), self.base.encode(), streams.encode(), records):
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
        batch_id = digest.hexdigest()[:32]
        task = json.dumps(self.task, ensure_ascii=False)
        head = f'{{"format":{json.dumps(FORMAT)},"batch_id":"{batch_id}","task":{task},"streams":{streams},"records":['
        return Batch(batch_id, sequence, len(lines), head.encode() + records + b"]}")


async def cut(
    container: ContainerClient, changes_file: str, header: BatchHeader, *, size: int, max_bytes: int
) -> AsyncIterator[Batch]:
    """The batches of a changes file, in order."""
    lines: list[bytes] = []
    held = 0
    sequence = 0
    async for line in read_lines(container, changes_file):
        if lines and (len(lines) >= size or held + len(line) > max_bytes):
            sequence += 1
            yield header.build(lines, sequence)
            lines, held = [], 0
        lines.append(line)
        held += len(line)
    if lines:
        yield header.build(lines, sequence + 1)
