"""``Idempotency-Key``: a repeated call with the same key and body gets the first outcome, without calling Graph
again; the same key with another body is refused (422); keys expire (IETF draft "The Idempotency-Key HTTP Header
Field", https://datatracker.ietf.org/doc/draft-ietf-httpapi-idempotency-key-header/).

Records live in a table (``ACTIVITY_IDEMPOTENCY_TABLE``, default ``activityidempotency``): PartitionKey the
activity, RowKey a SHA-256 of the key (the key itself is the caller's and may be anything), the body's
SHA-256, and the stored answer. A call first *reserves* its key (an insert, which only one caller can win);
a second call with the key while the first is running gets 409 (the draft's "request is outstanding"). A
reservation left by a process that died is taken over after ``LOCK_SECONDS``. Only final outcomes are kept:
2xx answers, Graph's refusals, and 502 ``outcome-unknown`` (a write Graph may have done: a repeat with the key
must not send it again); invalid requests (nothing was done) and other upstream trouble (502/503: the caller
should try again, and creates resolve unknown outcomes by a lookup) release the key instead.

The answer's body is kept as binary properties of at most 64 KiB each (a table property holds at most 64 KiB,
an entity at most 1 MiB: https://learn.microsoft.com/rest/api/storageservices/understanding-the-table-service-data-model),
so at most ``MAX_KEPT_BODY_BYTES``. A larger answer (a generic GET of a big collection) is not kept: the key
is released, and a repeat runs again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.storage import threads

KEY_MAX_LENGTH = 255
TTL = timedelta(hours=24)
LOCK_SECONDS = 240  # longer than an HTTP-triggered function may run (230 s)
CHUNK_BYTES = 64 * 1024  # a table property's limit
MAX_CHUNKS = 10  # an entity holds at most 1 MiB (binary values count base64-encoded in the emulator)
MAX_KEPT_BODY_BYTES = CHUNK_BYTES * MAX_CHUNKS


class AnswerTooLarge(ValueError):
    """The answer is larger than a table entity can keep."""


@dataclass(frozen=True)
class StoredAnswer:
    status: int
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True)
class Reservation:
    """What the store says about a key: ``replay`` (the first answer), ``conflict`` (another body or still
    running: status and reason), or neither (the caller owns the key now)."""

    replay: StoredAnswer | None = None
    conflict: tuple[int, str] | None = None


def body_digest(body: bytes) -> str:
    """The body's digest, insensitive to JSON formatting (key order, spaces) when it is JSON."""
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except ValueError:
        canonical = body
    return hashlib.sha256(canonical).hexdigest()


class IdempotencyStore:
    def __init__(self, table: TableClient, ttl: timedelta = TTL) -> None:
        self.table = table
        self.ttl = ttl

    @staticmethod
    def _row(key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()

    async def reserve(self, activity: str, key: str, digest: str) -> Reservation:
        return await threads.call(self._reserve, activity, key, digest)

    def _reserve(self, activity: str, key: str, digest: str) -> Reservation:
        now = datetime.now(UTC)
        entity = {
            "PartitionKey": activity,
            "RowKey": self._row(key),
            "digest": digest,
            "state": "running",
            "locked_until": now + timedelta(seconds=LOCK_SECONDS),
            "expires_at": now + self.ttl,
        }
        for _ in range(3):
            try:
                self.table.create_entity(entity)
                return Reservation()
            except ResourceExistsError:
                pass
            try:
                stored = self.table.get_entity(activity, self._row(key))
            except ResourceNotFoundError:
                continue  # released meanwhile: try to reserve again
            expired = stored["expires_at"] <= now
            abandoned = stored.get("state") == "running" and stored["locked_until"] <= now
            if expired or abandoned:
                try:
                    self.table.update_entity(
                        entity,
                        mode=UpdateMode.REPLACE,
                        etag=stored.metadata["etag"],
                        match_condition=MatchConditions.IfNotModified,
                    )
                    return Reservation()
                except (ResourceModifiedError, ResourceNotFoundError):
                    continue
            if stored["digest"] != digest:
                return Reservation(
                    conflict=(422, "this Idempotency-Key was used with another request body; use a new key")
                )
            if stored.get("state") == "running":
                return Reservation(
                    conflict=(
                        409,
                        "a request with this Idempotency-Key is still being processed; retry later",
                    )
                )
            return Reservation(
                replay=StoredAnswer(
                    int(stored["status"]), _stored_body(stored), json.loads(stored.get("headers") or "{}")
                )
            )
        return Reservation(conflict=(409, "this Idempotency-Key is contended; retry later"))

    async def complete(self, activity: str, key: str, digest: str, answer: StoredAnswer) -> None:
        """Keep ``answer`` for the key; :class:`AnswerTooLarge` (nothing written) past ``MAX_KEPT_BODY_BYTES``."""
        if len(answer.body) > MAX_KEPT_BODY_BYTES:
            raise AnswerTooLarge(
                f"the answer has {len(answer.body):,} bytes; at most {MAX_KEPT_BODY_BYTES:,} can be kept"
            )
        now = datetime.now(UTC)
        chunks = [answer.body[at : at + CHUNK_BYTES] for at in range(0, len(answer.body), CHUNK_BYTES)]
        entity: dict[str, Any] = {
            "PartitionKey": activity,
            "RowKey": self._row(key),
            "digest": digest,
            "state": "done",
            "locked_until": now,
            "expires_at": now + self.ttl,
            "status": answer.status,
            "body_chunks": len(chunks),
            **{f"body_{index}": chunk for index, chunk in enumerate(chunks)},
            "headers": json.dumps(answer.headers),
        }
        await threads.call(self.table.upsert_entity, entity, mode=UpdateMode.REPLACE)

    async def release(self, activity: str, key: str) -> None:
        await threads.call(self.table.delete_entity, activity, self._row(key))

    async def purge_expired(self, now: datetime | None = None) -> int:
        """Delete expired records (an admin or timer task may call it; expired keys are also reused)."""

        def run() -> int:
            moment = now or datetime.now(UTC)
            removed = 0
            for entity in self.table.query_entities("expires_at lt @now", parameters={"now": moment}):
                self.table.delete_entity(entity["PartitionKey"], entity["RowKey"])
                removed += 1
            return removed

        return await threads.call(run)


def _stored_body(stored: Any) -> bytes:
    return b"".join(bytes(stored[f"body_{index}"]) for index in range(int(stored.get("body_chunks") or 0)))
