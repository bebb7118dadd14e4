"""A task's state outgrows one table property: a checkpoint of a million-user read names over a thousand
staged blocks (about 50,000 characters of JSON; a string property holds 64 KiB of UTF-16)."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime

from azure.data.tables import TableServiceClient

from shared.runs import Checkpoint, StreamCheckpoint, TaskState
from shared.settings import Settings
from shared.storage.tables import StateStore


def _block() -> str:
    return base64.b64encode(uuid.uuid4().hex.encode()).decode()


async def test_a_checkpoint_of_thousands_of_blocks_is_stored_and_read_back(
    storage_environ: dict[str, str],
) -> None:
    settings = Settings.from_environ(storage_environ)
    service = TableServiceClient.from_connection_string(storage_environ["AzureWebJobsStorage"])
    table = service.create_table_if_not_exists(settings.state_table)
    store = StateStore(table)
    blocks = [_block() for _ in range(2500)]  # 115,000 characters: eight properties
    state = TaskState(
        checkpoint=Checkpoint(
            run_id="r1",
            mode="full",
            fingerprint="f",
            saved_at=datetime.now(UTC),
            streams={
                "users": StreamCheckpoint(blocks=blocks, records=2_497_500, read=2_497_500, next_link="n")
            },
            delta_links={"users": "https://graph.example/v1.0/users/delta?$deltatoken=ü" + "x" * 100},
        )
    )
    await store.put("big", state)
    assert await store.get("big") == state

    # A smaller state replaces it whole: no part of the larger one is left behind.
    small = TaskState(delta_links={"users": "link"})
    await store.put("big", small)
    assert await store.get("big") == small
    entity = table.get_entity("big", "state")
    assert not any(name.startswith("state_") for name in entity)
