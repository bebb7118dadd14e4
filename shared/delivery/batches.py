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
from pathlib import Path
from typing import Any, Literal

from azure.storage.blob import ContainerClient
from pydantic import BaseModel, ConfigDict, Field

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


# ------------------------------------------------------------------------------- the format, as models

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schema" / "delivery-batch.schema.json"
SCHEMA_ID = "https://github.com/entra-graph-connector/schema/delivery-batch.schema.json"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class StreamTarget(_Strict):
    """Where the platform stores one stream's records."""

    target_template: str = Field(description="The platform template of the stream's records.")
    target_folder: str = Field(description="The folder they are stored in.")
    key: str = Field(description="The Graph attribute that identifies a record (default id).")


class ChangeRecord(_Strict):
    """One change: a record to create or update, a deletion mark, or a failure record."""

    op: Literal["upsert", "mark", "failure"] = Field(
        description=(
            "upsert: a new or changed record (all its mapped attributes); mark: an object delivered before that "
            "is gone or out of scope, with the task's marking attribute(s) only (and a key other than id, as its "
            "upserts carried it); failure: a failed or held run."
        )
    )
    stream: str = Field(description="The stream the record belongs to (a key of streams): users, groups, ...")
    id: str = Field(description="The Graph object id (for failure records: task/run id).")
    attributes: dict[str, Any] = Field(
        description="Local attribute code -> value (null: Graph has no value)."
    )
    reason: Literal["deleted", "soft_deleted", "out_of_scope", "unknown"] | None = Field(
        default=None,
        description="mark only: why the object left the task's view (unknown: the lookup failed).",
    )
    restored: bool | None = Field(
        default=None, description="upsert only: the object was delivered as removed before and is back."
    )


class DeliveryBatch(_Strict):
    """A batch of changes POSTed to the platform's web API. The same batch id means the same batch: it is
    sent as the Idempotency-Key header, and a receiver that has applied it answers as it did the first time."""

    model_config = ConfigDict(extra="forbid", strict=True, title="Delivery batch")

    format: Literal["entra-graph-connector/delivery-batch-v1"]
    batch_id: str = Field(pattern=r"^[0-9a-f]{32}$", description="Stable id: equal for equal content.")
    task: str = Field(description="The scheduled task that produced the changes.")
    streams: dict[str, StreamTarget] = Field(description="stream name -> where its records go.")
    records: list[ChangeRecord] = Field(min_length=1)


def batch_json_schema() -> dict[str, Any]:
    schema = DeliveryBatch.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def render_batch_schema() -> str:
    return json.dumps(batch_json_schema(), indent=2, ensure_ascii=False) + "\n"
