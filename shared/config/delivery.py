"""Delivery settings of a scheduled task: the task cache, deletion marking and its guard, the load to the
platform's web API, and the failure record.

- :class:`DeletionMarking` sits on a selection (users, groups, later generic objects): the attribute and
  value an object the task delivered before receives once it is gone or out of scope, and optionally the
  attribute that receives why (``deleted``, ``soft_deleted``, ``out_of_scope``).
- :class:`Delivery` sits on the task: when the cache is cleared each day, the deletion guard, the optional
  HTTPS endpoint the changes are loaded to, and the optional failure record.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, field_validator, model_validator

from shared.config.fields import PATTERN_MESSAGES, ConfigModel, HeaderName, LocalCode
from shared.config.issues import ConfigIssue, raise_if_any
from shared.secrets import SecretRef

HTTPS_URL_PATTERN = (
    r"^https://([A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?(/[^\s?#]*)?$"
)
SCOPE_PATTERN = r"^\S+/\.default$"
PATTERN_MESSAGES.setdefault(
    HTTPS_URL_PATTERN, "must be an https:// URL (a host, an optional port and path; no query or fragment)"
)
PATTERN_MESSAGES.setdefault(
    SCOPE_PATTERN, "must be the receiving API's application ID URI followed by /.default"
)

MarkValue = Annotated[str, StringConstraints(max_length=1024)] | int | bool


class DeletionMarking(ConfigModel):
    """What an object the task delivered before receives, once, when it is gone or out of scope."""

    attribute: LocalCode = Field(
        description="Local attribute code set on a removed object, e.g. accountStatus."
    )
    value: MarkValue = Field(description="The value it is set to, e.g. 'Deleted' or '5 - Removed'.")
    reason_attribute: LocalCode | None = Field(
        default=None,
        description=(
            "Optional local attribute code receiving why: deleted (gone for good), soft_deleted (in Entra's "
            "deleted items, restorable for 30 days), out_of_scope (still in Entra, no longer selected) or "
            "unknown (the lookup failed)."
        ),
    )
    restored_value: MarkValue | None = Field(
        default=None,
        description=(
            "Optional value the attribute receives when a marked object comes back (restored, or in scope "
            "again); without it a returning object is delivered with its mapped attributes only."
        ),
    )

    @field_validator("value", "restored_value", mode="before")
    @classmethod
    def _is_scalar(cls, value: object) -> object:
        if value is not None and not isinstance(value, str | int | bool):
            raise ValueError("must be a string, a whole number or true/false")
        return value

    @model_validator(mode="after")
    def _attributes_differ(self) -> DeletionMarking:
        if self.reason_attribute is not None and self.reason_attribute == self.attribute:
            raise_if_any([ConfigIssue("reason_attribute", "must differ from attribute")])
        return self


class DeletionGuard(ConfigModel):
    """A run that would mark more objects than this delivers nothing of it and is held for approval."""

    max_marks: int = Field(
        default=500,
        ge=0,
        description="Most objects one run may mark as removed (default 500, Entra Connect's export threshold).",
    )
    max_share: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="Optional: most share (0-1] of the delivered objects one run may mark; both limits apply.",
    )


class EntraTokenAuth(ConfigModel):
    """A bearer token from Entra ID for ``scope``, obtained with the connector's own credential."""

    type: Literal["entra"]
    scope: Annotated[str, StringConstraints(pattern=SCOPE_PATTERN, max_length=512)] = Field(
        description="The receiving API's application ID URI with /.default, e.g. api://platform-api/.default."
    )


class ApiKeyAuth(ConfigModel):
    """An API key sent in a header; the key is a secret reference."""

    type: Literal["api_key"]
    header: HeaderName = Field(default="X-Api-Key", description="Header carrying the key.")
    key: SecretRef


class LoadEndpoint(ConfigModel):
    """Where the changes are delivered: batches of records POSTed as JSON (schema/delivery-batch.schema.json)."""

    url: Annotated[str, StringConstraints(pattern=HTTPS_URL_PATTERN, max_length=2048)] = Field(
        description="https:// URL the batches are POSTed to (no query or fragment)."
    )
    auth: EntraTokenAuth | ApiKeyAuth = Field(discriminator="type")
    batch_size: int = Field(default=500, ge=1, le=10_000, description="Most records per batch.")
    max_batch_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=16 * 1024,
        le=64 * 1024 * 1024,
        description="Most bytes of records per batch (a larger single record goes alone).",
    )
    timeout_s: float = Field(default=60.0, gt=0, le=600, description="Seconds to wait for one answer.")


class FailureRecord(ConfigModel):
    """A record delivered to the platform when a run fails or is held, carrying the error text."""

    target_template: str = Field(min_length=1, description="The platform template of the failure record.")
    target_folder: str = Field(min_length=1, description="The folder it is stored in.")
    attribute: LocalCode = Field(description="Local attribute code (text) receiving the error text.")


class Delivery(ConfigModel):
    """How a task's changes reach the platform."""

    cache_clear_hours: list[Annotated[int, Field(ge=0, le=23)]] = Field(
        default_factory=lambda: [0],
        description=(
            "UTC hours at which the task cache is cleared each day (default [0], midnight UTC); the first run "
            "after a clear delivers every record once. Delta links are kept. [] never clears it."
        ),
    )
    deletion_guard: DeletionGuard = Field(default_factory=DeletionGuard)
    endpoint: LoadEndpoint | None = Field(
        default=None, description="The platform's web API; absent: changes are written to blob only."
    )
    failure: FailureRecord | None = Field(
        default=None, description="Optional failure record delivered when a run fails or is held."
    )
    keep_runs: int = Field(
        default=10,
        ge=1,
        le=1000,
        description=(
            "Committed runs kept per task; older run folders are deleted after a commit, except those the "
            "task's state still refers to (the latest view, the delivered view, a held run)."
        ),
    )

    @field_validator("cache_clear_hours")
    @classmethod
    def _hours_are_distinct(cls, hours: list[int]) -> list[int]:
        raise_if_any(
            [
                ConfigIssue(f"[{index}]", f"hour {hour} is listed twice")
                for index, hour in enumerate(hours)
                if hours.index(hour) != index
            ]
        )
        return sorted(hours)
