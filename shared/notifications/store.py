"""Subscriptions as the connector keeps them: one row per connector and resource in the state table
(PartitionKey ``_subscriptions``; no task name starts with ``_``).

A row holds Graph's subscription id, its ``clientState`` (a random secret, compared in constant time on every
notification; stored like the rest of the state, never logged), when it expires, the tasks that watch it
(with their minimum interval between notification-started runs), the fingerprint of the notification URL it
was created with, and a pending reauthorization.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode
from pydantic import BaseModel, Field

from shared.storage import threads

PARTITION = "_subscriptions"


class SubscriptionRecord(BaseModel):
    connector: str
    resource: str  # users | groups
    client_state: str
    subscription_id: str | None = None
    expires_at: datetime | None = None
    tasks: dict[str, int] = Field(default_factory=dict)  # task -> min_interval_seconds
    url_fingerprint: str = ""
    reauthorize_requested_at: datetime | None = None  # a reauthorizationRequired not yet answered
    renewed_at: datetime | None = None  # last PATCH of expirationDateTime
    reauthorized_at: datetime | None = None  # last POST .../reauthorize
    last_error: str | None = None

    @property
    def key(self) -> str:
        return row_key(self.connector, self.resource)

    def to_entity(self) -> dict[str, Any]:
        entity = {
            "PartitionKey": PARTITION,
            "RowKey": self.key,
            **self.model_dump(exclude={"tasks"}),
            "tasks": json.dumps(self.tasks, sort_keys=True),
        }
        return {k: v for k, v in entity.items() if v is not None}

    @classmethod
    def from_entity(cls, entity: dict[str, Any]) -> SubscriptionRecord:
        data = {k: v for k, v in entity.items() if k in cls.model_fields}
        data["tasks"] = json.loads(entity.get("tasks") or "{}")
        return cls.model_validate(data)


def row_key(connector: str, resource: str) -> str:
    return f"{connector}|{resource}"


class SubscriptionStore:
    def __init__(self, table: TableClient) -> None:
        self.table = table

    async def list(self) -> dict[str, SubscriptionRecord]:
        def run() -> dict[str, SubscriptionRecord]:
            rows = self.table.query_entities("PartitionKey eq @p", parameters={"p": PARTITION})
            return {row["RowKey"]: SubscriptionRecord.from_entity(row) for row in rows}

        return await threads.call(run)

    async def by_subscription_id(self, subscription_id: str) -> SubscriptionRecord | None:
        def run() -> SubscriptionRecord | None:
            rows = self.table.query_entities(
                "PartitionKey eq @p and subscription_id eq @id",
                parameters={"p": PARTITION, "id": subscription_id},
            )
            for row in rows:
                return SubscriptionRecord.from_entity(row)
            return None

        return await threads.call(run)

    async def put(self, record: SubscriptionRecord) -> None:
        await threads.call(self.table.upsert_entity, record.to_entity(), mode=UpdateMode.REPLACE)

    async def delete(self, record: SubscriptionRecord) -> None:
        def run() -> None:
            try:
                self.table.delete_entity(PARTITION, record.key)
            except ResourceNotFoundError:
                pass

        await threads.call(run)
