"""Task kinds. Every task has a ``usage`` that says its kind; files written before kinds existed hold
scheduled tasks only, so a task without ``usage`` is a scheduled task.

To add a kind: a module defining a model with ``usage: Literal["<kind>"]`` (its name and connector fields as
here), and one line in :data:`TASK_KINDS` below. The union the configuration validates against is built from
that tuple.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union, get_args

from pydantic import BaseModel, Discriminator, Field, Tag, model_validator

from shared.config.authentication_tasks import AuthenticationTask
from shared.config.delivery import Delivery
from shared.config.event_tasks import EventTask
from shared.config.fields import ID_DESCRIPTION, ConfigModel, EntityId, Name, NcrontabExpression
from shared.config.generic import GenericSelection
from shared.config.issues import ConfigIssue, raise_if_any
from shared.config.notifications import ChangeNotifications
from shared.config.selections import GroupSelection, UserSelection

SyncMode = Literal["full", "incremental"]
MappingsType = Literal["identity_and_access", "identity", "access", "generic"]
READS = {
    "identity_and_access": ("users", "groups"),
    "identity": ("users",),
    "access": ("groups",),
    "generic": ("generic",),
}
SELECTIONS = ("users", "groups", "generic")


def selection_issues(mappings_type: str, given: Iterable[str]) -> list[ConfigIssue]:
    """``users`` is required iff mappings_type includes identity, ``groups`` iff it includes access,
    ``generic`` iff it is generic."""
    needed = READS[mappings_type]
    given = set(given)
    issues = []
    for selection in SELECTIONS:
        if selection in needed and selection not in given:
            issues.append(ConfigIssue(selection, f"required because mappings_type is '{mappings_type}'"))
        elif selection in given and selection not in needed:
            hint = "'generic'" if selection == "generic" else "'identity_and_access'"
            issues.append(
                ConfigIssue(
                    selection,
                    f"not allowed because mappings_type '{mappings_type}' reads {needed[0]} only; "
                    f"remove {selection} or set mappings_type to {hint}",
                )
            )
    return issues


class ScheduledTask(ConfigModel):
    """A read of one tenant's users and/or groups, on a schedule or on demand."""

    usage: Literal["scheduled"] = Field(
        default="scheduled", description="The task's kind: a scheduled (or on-demand) read."
    )
    id: EntityId | None = Field(default=None, description=ID_DESCRIPTION)
    name: Name = Field(description="Unique task name.")
    connector: Name = Field(description="Name of the connector to read through.")
    enabled: bool = True
    description: str | None = None
    schedule: NcrontabExpression | None = Field(
        default=None,
        description=(
            "NCRONTAB with six fields {second} {minute} {hour} {day} {month} {day-of-week}, "
            "e.g. '0 */15 * * * *'; null for on demand only."
        ),
    )
    mode: SyncMode
    mappings_type: MappingsType
    users: UserSelection | None = None
    groups: GroupSelection | None = None
    generic: GenericSelection | None = Field(
        default=None, description="Any Graph collection with sub-queries (mappings_type generic)."
    )
    change_notifications: ChangeNotifications | None = Field(
        default=None,
        description="Graph change notifications: a change starts the task's run within seconds.",
    )
    delivery: Delivery = Field(
        default_factory=Delivery, description="Task cache, deletion guard, load endpoint, failure record."
    )

    @model_validator(mode="after")
    def _selections_match_mappings_type(self) -> ScheduledTask:
        given = [name for name in SELECTIONS if getattr(self, name) is not None]
        raise_if_any(selection_issues(self.mappings_type, given))
        return self

    @property
    def storage_key(self) -> str:
        """What the task's history, state, output and lease should be keyed by: its stable id (a file's task
        gets its name as id when first stored), so a rename keeps them. The runner keys by name today."""
        return self.id or self.name

    def stream_selections(self) -> dict[str, UserSelection | GroupSelection | GenericSelection]:
        """The task's selections by the name of the stream each is read as (``users``, ``groups``, or a generic
        selection's :attr:`~GenericSelection.stream_name`), in the order the runner reads them."""
        selections: dict[str, UserSelection | GroupSelection | GenericSelection] = {}
        if self.generic is not None:
            selections[self.generic.stream_name] = self.generic
        if self.users is not None:
            selections["users"] = self.users
        if self.groups is not None:
            selections["groups"] = self.groups
        return selections

    @property
    def reads_users(self) -> bool:
        return "users" in READS[self.mappings_type]

    @property
    def reads_groups(self) -> bool:
        return "groups" in READS[self.mappings_type]


# ------------------------------------------------------------------------------------------ task kinds

TASK_KINDS: tuple[type[BaseModel], ...] = (
    ScheduledTask,
    EventTask,
    AuthenticationTask,
)
"""Every task kind the configuration accepts, told apart by their ``usage``."""


def usage_of(kind: type[BaseModel]) -> str:
    """The ``usage`` value a task kind is tagged with (its ``Literal``)."""
    return str(get_args(kind.model_fields["usage"].annotation)[0])


def _task_usage(value: Any) -> str:
    """The discriminator: ``usage`` as given, ``scheduled`` when absent (files from before task kinds)."""
    if isinstance(value, BaseModel):
        return str(getattr(value, "usage", "scheduled"))
    if isinstance(value, dict):
        usage = value.get("usage", "scheduled")
        return usage if isinstance(usage, str) else ""
    return ""


def _task_union(kinds: Iterable[type[BaseModel]]) -> Any:
    members = tuple(Annotated[kind, Tag(usage_of(kind))] for kind in kinds)
    if len(members) == 1:
        return members[0]  # pydantic wants two or more members for a discriminated union
    return Annotated[Union[members], Discriminator(_task_usage)]  # noqa: UP007


if TYPE_CHECKING:  # the same union, spelled out for type checkers (keep it in step with TASK_KINDS)
    AnyTask = ScheduledTask | EventTask | AuthenticationTask
else:
    AnyTask = _task_union(TASK_KINDS)
