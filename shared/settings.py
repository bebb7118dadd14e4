"""App settings the connector reads (environment variables; in Azure, the Function App's app settings).

Every name here is also set by ``infra/`` (Bicep) and by ``local.settings.json`` for local runs; a test
checks that the two lists agree. Values are read once per process.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

STORAGE_SETTING = "AzureWebJobsStorage"  # connection string, or identity-based: AzureWebJobsStorage__*


@dataclass(frozen=True)
class Settings:
    storage_connection: str | None  # a connection string (local: Azurite); None: identity-based access
    blob_service_uri: str | None
    queue_service_uri: str | None
    table_service_uri: str | None
    storage_client_id: str | None  # user-assigned managed identity for storage (None: system-assigned)
    extracts_container: str
    leases_container: str
    runs_queue: str
    config_table: str
    history_table: str
    state_table: str
    tick_schedule: str  # NCRONTAB for the scheduler tick
    run_deadline_s: float  # a run stops retrying (and fails) after this long
    lease_s: int  # lock lease length; renewed while the run is alive
    graph_concurrency: int  # concurrent $batch calls per run
    block_size: int  # bytes per staged blob block
    graph_backoff_s: float = 1.0  # first retry wait when Graph gives no Retry-After (doubles per attempt)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        def get(name: str, default: str) -> str:
            value = environ.get(name, "").strip()
            return value or default

        prefix = f"{STORAGE_SETTING}__"
        connection = environ.get(STORAGE_SETTING, "").strip() or None
        account = environ.get(f"{prefix}accountName", "").strip()

        def service_uri(kind: str) -> str | None:
            value = environ.get(f"{prefix}{kind}ServiceUri", "").strip()
            if value:
                return value
            return f"https://{account}.{kind}.core.windows.net" if account else None

        return cls(
            storage_connection=connection,
            blob_service_uri=service_uri("blob"),
            queue_service_uri=service_uri("queue"),
            table_service_uri=service_uri("table"),
            storage_client_id=environ.get(f"{prefix}clientId", "").strip() or None,
            extracts_container=get("EXTRACTS_CONTAINER", "extracts"),
            leases_container=get("LEASES_CONTAINER", "task-leases"),
            runs_queue=get("RUNS_QUEUE", "task-runs"),
            config_table=get("CONFIG_TABLE", "connectorconfig"),
            history_table=get("HISTORY_TABLE", "runhistory"),
            state_table=get("STATE_TABLE", "taskstate"),
            tick_schedule=get("TICK_SCHEDULE", "0 * * * * *"),
            run_deadline_s=float(get("RUN_DEADLINE_SECONDS", "3600")),
            lease_s=int(get("LEASE_SECONDS", "60")),
            graph_concurrency=int(get("GRAPH_CONCURRENCY", "8")),
            block_size=int(get("BLOCK_SIZE_BYTES", str(4 * 1024 * 1024))),
            graph_backoff_s=float(get("GRAPH_BACKOFF_SECONDS", "1")),
        )


# The app settings this module reads, for the settings-agreement test and the README.
APP_SETTINGS = (
    STORAGE_SETTING,
    "EXTRACTS_CONTAINER",
    "LEASES_CONTAINER",
    "RUNS_QUEUE",
    "CONFIG_TABLE",
    "HISTORY_TABLE",
    "STATE_TABLE",
    "TICK_SCHEDULE",
    "RUN_DEADLINE_SECONDS",
    "LEASE_SECONDS",
    "GRAPH_CONCURRENCY",
    "BLOCK_SIZE_BYTES",
    "GRAPH_BACKOFF_SECONDS",
    "CONNECTOR_CA_BUNDLE",
    "AZURE_CLIENT_ID",  # the user-assigned managed identity that reads Key Vault secret references
)


@cache
def settings() -> Settings:
    return Settings.from_environ()
