"""Event tasks: what the workflow activities (``shared/activities``) write to a tenant, and how.

An event task names its connector, a mappings type (which mappings it holds), the mappings from the platform's
local attribute codes to Graph attributes for users, groups and custom objects, the password policy for new
users, the date and date-time formats of the values the workflow sends, a base path for generic REST calls
and the size limit for user photos. A request names its event task and passes values by local code; the
activities translate them through these mappings.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StringConstraints, field_validator, model_validator

from shared.config.fields import (
    ID_DESCRIPTION,
    PSEUDO_ATTRIBUTES,
    AttributePath,
    ConfigModel,
    EntityId,
    LocalCode,
    Name,
)
from shared.config.issues import ConfigIssue, raise_if_any
from shared.secrets import SecretRef

EventMappingsType = Literal["identity_and_access", "identity", "access", "generic"]
_HOLDS = {
    "identity_and_access": ("users", "groups"),
    "identity": ("users",),
    "access": ("groups",),
    "generic": ("objects",),
}
GRAPH_PATH_PATTERN = r"^/?[A-Za-z0-9$._~()'=,:@!*+;-]+(/[A-Za-z0-9$._~()'=,:@!*+;-]+)*/?$"
_DOT_SEGMENT = re.compile(r"(^|/)\.{1,2}(/|$)")


def _no_dot_segments(path: str) -> str:
    if path and not re.fullmatch(GRAPH_PATH_PATTERN, path):
        raise ValueError(
            "must be a Graph path such as users or deviceManagement/managedDevices: segments of letters, "
            "digits and $._~()'=,:@!*+;- joined by single '/', without a query string"
        )
    if _DOT_SEGMENT.search(path):
        raise ValueError("'.' and '..' segments are not allowed")
    return path.strip("/")


GraphPath = Annotated[str, StringConstraints(min_length=1), AfterValidator(_no_dot_segments)]
OptionalGraphPath = Annotated[str, AfterValidator(_no_dot_segments)]


class EventAttributeMapping(ConfigModel):
    """One local attribute code written to (and read back from) one Graph attribute."""

    local: LocalCode = Field(description="The platform's local attribute code.")
    external: AttributePath = Field(
        description=(
            "Graph attribute path: displayName, onPremisesExtensionAttributes.extensionAttribute1 (nested), "
            "extension_<appid>_<name> (directory extension)."
        )
    )
    format: Literal["value", "date", "datetime"] = Field(
        default="value",
        description=(
            "value: sent as given. date / datetime: the workflow's text in the task's date_format / "
            "datetime_format, sent to Graph as ISO 8601 (and read back in the task's format)."
        ),
    )

    @field_validator("external")
    @classmethod
    def _not_a_pseudo_attribute(cls, external: str) -> str:
        if external.split(".")[0] in PSEUDO_ATTRIBUTES:
            raise ValueError(
                f"{external} is computed from memberships and cannot be written; use the membership activities"
            )
        return external


class EventMappings(ConfigModel):
    """The mappings for one kind of object."""

    mappings: list[EventAttributeMapping] = Field(min_length=1)

    @field_validator("mappings")
    @classmethod
    def _one_to_one(cls, mappings: list[EventAttributeMapping]) -> list[EventAttributeMapping]:
        issues = []
        seen_local: dict[str, int] = {}
        seen_external: dict[str, int] = {}
        for index, mapping in enumerate(mappings):
            if mapping.local in seen_local:
                issues.append(
                    ConfigIssue(
                        f"[{index}].local",
                        f"{mapping.local} is already mapped by [{seen_local[mapping.local]}]",
                    )
                )
            seen_local.setdefault(mapping.local, index)
            key = mapping.external.lower()
            if key in seen_external:
                issues.append(
                    ConfigIssue(
                        f"[{index}].external",
                        f"{mapping.external} is already written by [{seen_external[key]}]",
                    )
                )
            seen_external.setdefault(key, index)
        raise_if_any(issues)
        return mappings

    def external_of(self) -> dict[str, EventAttributeMapping]:
        """Local code -> its mapping."""
        return {mapping.local: mapping for mapping in self.mappings}


class CustomObjects(EventMappings):
    """Mappings for the custom object activities, and the Graph collection they write."""

    object_class: GraphPath = Field(
        description=(
            "The Graph collection the custom object activities write, relative to /v1.0: applications, "
            "devices, contacts, directory/administrativeUnits, ..."
        )
    )


class PasswordPolicy(ConfigModel):
    """Where a new user's first password comes from."""

    source: Literal["default", "workflow"] = Field(
        description=(
            "default: the same default password for every new user, from default_password. workflow: the "
            "workflow generates one and passes it in the request's password."
        )
    )
    default_password: SecretRef | None = Field(
        default=None, description="Required for source default: a reference to the password, never the value."
    )

    @model_validator(mode="after")
    def _default_needs_a_reference(self) -> PasswordPolicy:
        if self.source == "default" and self.default_password is None:
            raise_if_any([ConfigIssue("default_password", "required because source is 'default'")])
        if self.source == "workflow" and self.default_password is not None:
            raise_if_any([ConfigIssue("default_password", "not allowed because source is 'workflow'")])
        return self


def _check_format(kind: str, sample: datetime, pattern: str) -> str:
    try:
        text = sample.strftime(pattern)
        parsed = datetime.strptime(text, pattern)
    except ValueError as exc:
        raise ValueError(f"not a usable {kind} format: {exc}") from None
    if parsed.strftime(pattern) != text or (kind == "date" and parsed.date() != sample.date()):
        raise ValueError(f"a {kind} written with {pattern!r} does not read back as the same {kind}")
    return pattern


_SAMPLE = datetime(2031, 12, 24, 18, 45, 59, tzinfo=UTC)
DateFormat = Annotated[str, AfterValidator(lambda p: _check_format("date", _SAMPLE, p))]
DateTimeFormat = Annotated[str, AfterValidator(lambda p: _check_format("date-time", _SAMPLE, p))]


class EventTask(ConfigModel):
    """Writes to one tenant, called by the platform's workflow activities over HTTPS."""

    usage: Literal["event"] = Field(description="The task's kind: event-based writes (workflow activities).")
    id: EntityId | None = Field(default=None, description=ID_DESCRIPTION)
    name: Name = Field(description="Unique task name; requests name it.")
    connector: Name = Field(description="Name of the connector to write through.")
    enabled: bool = Field(default=True, description="false: every activity naming the task is refused.")
    description: str | None = None
    mappings_type: EventMappingsType = Field(
        description=(
            "identity_and_access (users and groups), identity (users), access (groups), generic (custom "
            "objects and generic REST calls)."
        )
    )
    users: EventMappings | None = Field(default=None, description="User mappings (identity types).")
    groups: EventMappings | None = Field(default=None, description="Group mappings (access types).")
    objects: CustomObjects | None = Field(
        default=None, description="Custom object class and mappings (generic type; optional there)."
    )
    password: PasswordPolicy | None = Field(
        default=None, description="Password policy for user creation and password resets."
    )
    date_format: DateFormat = Field(
        default="%Y-%m-%d", description="strftime format of date values the workflow sends, e.g. %d.%m.%Y."
    )
    datetime_format: DateTimeFormat = Field(
        default="%Y-%m-%dT%H:%M:%SZ",
        description="strftime format of date-time values the workflow sends (read as UTC without a zone).",
    )
    base_query: OptionalGraphPath = Field(
        default="",
        description=(
            "Generic REST calls: a Graph path put between the connector's Graph URL (/v1.0) and the node's "
            "relative URL, e.g. users."
        ),
    )
    photo_max_bytes: int = Field(
        default=100_000,
        ge=1_000,
        le=4 * 1024 * 1024,
        description="User photos are converted to a JPEG of at most this many bytes.",
    )

    @model_validator(mode="after")
    def _mappings_match_type(self) -> EventTask:
        holds = _HOLDS[self.mappings_type]
        issues = []
        for part in ("users", "groups", "objects"):
            given = getattr(self, part) is not None
            if part in holds and not given and part != "objects":
                issues.append(ConfigIssue(part, f"required because mappings_type is '{self.mappings_type}'"))
            elif given and part not in holds:
                issues.append(
                    ConfigIssue(
                        part, f"not allowed because mappings_type '{self.mappings_type}' has no {part}"
                    )
                )
        raise_if_any(issues)
        return self
