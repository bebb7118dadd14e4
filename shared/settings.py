"""App settings the connector reads (environment variables; in Azure, the Function App's app settings).

:class:`Settings` is the one list of app settings: each field names the setting it reads (its alias), its
default, its bounds and where it is set (:class:`SetIn`: the Bicep in ``infra/`` for Azure, the
``local.settings.example.json`` for local runs, or both). :data:`APP_SETTINGS` is derived from it, and a test
checks that the Bicep and the local example set exactly these. Values are read once per process; an invalid
value fails with every bad setting named (:class:`SettingsError`), never with a default silently used.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any, Literal

import croniter
from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

STORAGE_SETTING = "AzureWebJobsStorage"  # connection string, or identity-based: AzureWebJobsStorage__*
_STORAGE = f"{STORAGE_SETTING}__"

EnvironmentType = Literal["test", "prod", "demo", "dev"]

_given_only: ContextVar[bool] = ContextVar("settings_given_only", default=False)


class SetIn(StrEnum):
    """Where a setting is set: by the Bicep (Azure), by ``local.settings.example.json`` (local runs)."""

    AZURE = "azure"
    LOCAL = "local"


_BOTH = (SetIn.AZURE, SetIn.LOCAL)


def _setting(name: str, default: Any, set_in: tuple[SetIn, ...] = _BOTH, **constraints: Any) -> Any:
    """A field read from the app setting ``name`` (exactly that spelling), recorded as set where ``set_in``."""
    return Field(
        default,
        validation_alias=AliasChoices(name),
        json_schema_extra={"app_setting": name, "set_in": [where.value for where in set_in]},
        **constraints,
    )


class SettingsError(ValueError):
    """Invalid app settings; the message names every bad setting and why, never echoes a value."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__(
            "invalid app settings: " + "; ".join(f"{name}: {message}" for name, message in problems)
        )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        frozen=True, extra="ignore", case_sensitive=True, env_ignore_empty=True, populate_by_name=False
    )

    # Storage. Locally a connection string (Azurite); in Azure identity-based, as the Functions host reads
    # AzureWebJobsStorage__*: https://learn.microsoft.com/azure/azure-functions/functions-reference#connecting-to-host-storage-with-an-identity
    storage_connection: str | None = _setting(STORAGE_SETTING, None, (SetIn.LOCAL,))
    storage_account: str | None = _setting(f"{_STORAGE}accountName", None, (SetIn.AZURE,))
    blob_service_uri: str | None = _setting(f"{_STORAGE}blobServiceUri", None, (SetIn.AZURE,))
    queue_service_uri: str | None = _setting(f"{_STORAGE}queueServiceUri", None, (SetIn.AZURE,))
    table_service_uri: str | None = _setting(f"{_STORAGE}tableServiceUri", None, (SetIn.AZURE,))
    # The user-assigned managed identity for storage (None: the system-assigned identity).
    storage_client_id: str | None = _setting(f"{_STORAGE}clientId", None, (SetIn.AZURE,))
    extracts_container: str = _setting("EXTRACTS_CONTAINER", "extracts", min_length=3, max_length=63)
    leases_container: str = _setting("LEASES_CONTAINER", "task-leases", min_length=3, max_length=63)
    runs_queue: str = _setting("RUNS_QUEUE", "task-runs", min_length=3, max_length=56)  # room for -poison
    config_table: str = _setting("CONFIG_TABLE", "connectorconfig", pattern=r"^[A-Za-z][A-Za-z0-9]{2,62}$")
    history_table: str = _setting("HISTORY_TABLE", "runhistory", pattern=r"^[A-Za-z][A-Za-z0-9]{2,62}$")
    state_table: str = _setting("STATE_TABLE", "taskstate", pattern=r"^[A-Za-z][A-Za-z0-9]{2,62}$")
    # Workflow activities (shared/activities): Idempotency-Key records, and call counts per event task and activity.
    idempotency_table: str = _setting(
        "ACTIVITY_IDEMPOTENCY_TABLE", "activityidempotency", pattern=r"^[A-Za-z][A-Za-z0-9]{2,62}$"
    )
    usage_table: str = _setting(
        "ACTIVITY_USAGE_TABLE", "activityusage", pattern=r"^[A-Za-z][A-Za-z0-9]{2,62}$"
    )
    tick_schedule: str = _setting("TICK_SCHEDULE", "0 * * * * *")  # NCRONTAB for the scheduler tick
    # NCRONTAB of the daily check of the Graph credentials' expiry (functions/monitoring.py)
    credential_check_schedule: str = _setting("CREDENTIAL_CHECK_SCHEDULE", "0 0 6 * * *")
    run_deadline_s: float = _setting("RUN_DEADLINE_SECONDS", 3600.0, gt=0)  # a run stops retrying after this
    lease_s: int = _setting("LEASE_SECONDS", 60, ge=15, le=60)  # blob leases last 15-60 s (or infinite)
    graph_concurrency: int = _setting("GRAPH_CONCURRENCY", 8, ge=1, le=64)  # concurrent $batch calls per run
    # Intune's budget per app and tenant (docs/graph-behaviour.md section 11): requests paced, not throttled.
    intune_requests: int = _setting("INTUNE_REQUESTS_PER_WINDOW", 2000, ge=1, le=100000)
    intune_window_s: float = _setting("INTUNE_WINDOW_SECONDS", 20.0, gt=0, le=3600)
    block_size: int = _setting("BLOCK_SIZE_BYTES", 1024 * 1024, ge=64 * 1024, le=4000 * 1024 * 1024)
    graph_backoff_s: float = _setting(
        "GRAPH_BACKOFF_SECONDS", 1.0, gt=0, le=60
    )  # first wait without Retry-After
    # A PEM file of CAs to trust for the login and Graph hosts instead of the system store.
    ca_bundle: str | None = _setting("CONNECTOR_CA_BUNDLE", None)
    # The user-assigned managed identity that reads Key Vault secret references and sends telemetry.
    azure_client_id: str | None = _setting("AZURE_CLIENT_ID", None)
    # What the instance is for; telemetry carries it and the alert rules' severities follow it.
    environment_type: EnvironmentType = _setting("ENVIRONMENT_TYPE", "dev")
    # Telemetry goes to Application Insights only when this is set (off in tests and local runs).
    appinsights_connection_string: str | None = _setting("APPLICATIONINSIGHTS_CONNECTION_STRING", None)
    # Graph change notifications (docs/graph-behaviour.md section 12): the upkeep timer that creates, renews and
    # deletes subscriptions; the lifetime asked for (Graph allows at most 41,760 minutes for users and groups);
    # the public host name Graph calls for local runs (in Azure the platform's WEBSITE_HOSTNAME is used); the
    # function key Graph's calls carry in the notification URL (a secret: a Key Vault reference in Azure).
    subscriptions_schedule: str = _setting("SUBSCRIPTIONS_SCHEDULE", "0 */10 * * * *")
    subscription_lifetime_min: int = _setting("SUBSCRIPTION_LIFETIME_MINUTES", 4320, ge=45, le=41_760)
    notification_host: str | None = _setting("NOTIFICATION_HOST", None, (SetIn.LOCAL,))
    notification_key: str | None = _setting("NOTIFICATION_FUNCTION_KEY", None)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Settings() reads the process environment (no .env or secrets files); from_environ() reads only
        # the mapping it is given (pydantic validates a BaseSettings through its __init__ and sources).
        return (init_settings,) if _given_only.get() else (init_settings, env_settings)

    @model_validator(mode="before")
    @classmethod
    def _service_uris_from_account(cls, data: Any) -> Any:
        # An account name alone stands for the public cloud's service URIs, as the Functions host reads it.
        if isinstance(data, Mapping):
            account = str(data.get(f"{_STORAGE}accountName") or "").strip()
            if account:
                data = dict(data)
                for kind in ("blob", "queue", "table"):
                    data.setdefault(
                        f"{_STORAGE}{kind}ServiceUri", f"https://{account}.{kind}.core.windows.net"
                    )
        return data

    @field_validator("tick_schedule", "subscriptions_schedule", "credential_check_schedule")
    @classmethod
    def _is_ncrontab(cls, value: str) -> str:
        fields = value.split()
        if len(fields) != 6:
            raise ValueError(
                f"an NCRONTAB schedule has six fields, seconds first; this one has {len(fields)}"
            )
        try:
            croniter.croniter(" ".join(fields), datetime(2000, 1, 1, tzinfo=UTC), second_at_beginning=True)
        except (ValueError, KeyError, TypeError, IndexError):
            raise ValueError("not a valid NCRONTAB schedule") from None
        return " ".join(fields)

    @field_validator("blob_service_uri", "queue_service_uri", "table_service_uri")
    @classmethod
    def _is_https_uri(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("https://"):
            raise ValueError("a storage service URI starts with https://")
        return value

    @field_validator("ca_bundle")
    @classmethod
    def _is_a_file(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_file():
            raise ValueError("no such file (a PEM file of CA certificates)")
        return value

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings in ``environ`` (default: the process environment) and nothing else; empty values are
        unset. Raises :class:`SettingsError` naming every invalid setting."""
        source = os.environ if environ is None else environ
        values = {name: value.strip() for name, value in source.items() if value and value.strip()}
        token = _given_only.set(True)
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise SettingsError(_problems(exc)) from None
        finally:
            _given_only.reset(token)


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    # The location is the alias (the app setting's name); the input value is never repeated (a setting
    # such as the storage connection string can hold a key).
    return [
        (
            ".".join(str(part) for part in error["loc"]) or "settings",
            error["msg"].removeprefix("Value error, "),
        )
        for error in exc.errors()
    ]


def app_settings(where: SetIn | None = None) -> tuple[str, ...]:
    """The names of the app settings the model reads, in field order; only those set in ``where`` if given."""
    names = []
    for field in Settings.model_fields.values():
        extra = field.json_schema_extra
        assert isinstance(extra, dict)
        if where is None or where.value in extra["set_in"]:  # type: ignore[operator]
            names.append(str(extra["app_setting"]))
    return tuple(names)


# The app settings this module reads, for the settings-agreement test and the README.
APP_SETTINGS = app_settings()


@cache
def settings() -> Settings:
    return Settings.from_environ()
