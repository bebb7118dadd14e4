"""The activities API's request and response bodies. The OpenAPI document (``schema/openapi.json``) is
generated from these models (:mod:`shared.activities.openapi`, assembled by :mod:`shared.openapi`), so the
code and the document cannot drift.

Every successful answer carries ``status: "Completed"``, the result values by local attribute code, and
``exception: null``. Every failure is an RFC 9457 problem (:class:`Problem`): there ``status`` is the HTTP
status, as RFC 9457 defines it, and ``outcome: "Exception"`` with ``exception`` (the text the workflow writes
to its provisioning-exception attribute) says the same thing the workflow way. Both kinds carry ``outcome``,
so a workflow can always read ``outcome`` and ``exception``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, SecretStr, StringConstraints

from shared.config.fields import GUID_PATTERN, LOCAL_CODE_PATTERN, NAME_PATTERN

TaskName = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
LocalCode = Annotated[str, StringConstraints(pattern=LOCAL_CODE_PATTERN)]
ObjectId = Annotated[str, StringConstraints(pattern=GUID_PATTERN)]
# A user by object id or user principal name (UPN characters: A-Z a-z 0-9 ' . - _ ! # ^ ~ and '@', plus the
# '#EXT#' of guests); docs/graph-behaviour.md section 7.
USER_KEY_PATTERN = rf"^({GUID_PATTERN[1:-1]}|[A-Za-z0-9'._!#^~+-]{{1,113}}@[A-Za-z0-9.-]{{1,255}})$"
UserKey = Annotated[str, StringConstraints(pattern=USER_KEY_PATTERN)]
Values = dict[LocalCode, JsonValue]
ReferenceValues = dict[
    Annotated[str, StringConstraints(pattern=rf"^{LOCAL_CODE_PATTERN[1:-1]}(:{LOCAL_CODE_PATTERN[1:-1]})?$")],
    JsonValue,
]


class RequestModel(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    task: TaskName = Field(description="The event task to act through (its connector and mappings).")


# ------------------------------------------------------------------------------------------ requests


class UserCreateRequest(RequestModel):
    values: Values = Field(
        min_length=1,
        description=(
            "The data card's values by local attribute code; the event task's user mappings must cover "
            "displayName, mailNickname and userPrincipalName."
        ),
    )
    password: SecretStr | None = Field(
        default=None,
        description="The first password, when the event task's password policy is 'workflow'; never logged.",
    )
    force_change_password: bool = Field(
        default=True, description="Must the user change the password at the next sign-in."
    )
    groups: list[ObjectId] = Field(
        default_factory=list,
        max_length=50,
        description="Groups to add the new user to once it exists (retried while Graph replicates it).",
    )


class UserUpdateRequest(RequestModel):
    user: UserKey = Field(description="The user's object id or user principal name.")
    values: Values = Field(min_length=1, description="Values to write, by local attribute code.")


class UserRequest(RequestModel):
    user: UserKey = Field(description="The user's object id or user principal name.")


class PasswordResetRequest(RequestModel):
    user: UserKey = Field(description="The user's object id or user principal name.")
    password: SecretStr | None = Field(
        default=None,
        description="The new password when the policy is 'workflow' (else the default password is used).",
    )
    force_change_password: bool = Field(
        default=True, description="Must the user change the password at the next sign-in."
    )


class PhotoRequest(RequestModel):
    user: UserKey = Field(description="The user's object id or user principal name.")
    photo: str = Field(
        min_length=4,
        max_length=5_600_000,
        description="The photo, base64: a JPEG or PNG of at most 4 MB (converted to a JPEG within the limit).",
    )


class Condition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: LocalCode = Field(description="A local attribute code mapped in the event task.")
    operator: Literal["equal", "not_equal"] = "equal"
    value: str | bool | int | float | None = Field(description="The data card's value to compare.")


class VerifyRequest(RequestModel):
    conditions: list[Condition] = Field(
        min_length=1,
        max_length=20,
        description="The IF expression: comparisons joined by AND.",
    )


class GroupCreateRequest(RequestModel):
    values: Values = Field(
        min_length=1,
        description=(
            "Values by local attribute code; the event task's group mappings must cover displayName, "
            "mailEnabled, mailNickname and securityEnabled."
        ),
    )
    members: list[ObjectId] = Field(
        default_factory=list,
        max_length=50,
        description="Members to add once the group exists (retried while Graph replicates the new group).",
    )


class GroupUpdateRequest(RequestModel):
    group: ObjectId = Field(description="The group's object id.")
    values: Values = Field(min_length=1, description="Values to write, by local attribute code.")


class GroupRequest(RequestModel):
    group: ObjectId = Field(description="The group's object id.")


class MembershipRequest(RequestModel):
    user: ObjectId = Field(description="The user's object id.")
    groups: list[ObjectId] = Field(min_length=1, max_length=100, description="The groups' object ids.")
    strict: bool = Field(
        default=False,
        description=(
            "false: 'already a member' (add) and 'not a member' (remove) count as done, so a retried call "
            "is safe. true: they fail, as the reference connector does."
        ),
    )


class MembershipVerifyRequest(RequestModel):
    user: ObjectId = Field(description="The user's object id.")
    group: ObjectId = Field(description="The group's object id.")


class CustomCreateRequest(RequestModel):
    values: Values = Field(
        min_length=1, description="Values by local attribute code (custom object mappings)."
    )


class CustomUpdateRequest(RequestModel):
    object: ObjectId = Field(description="The object's id.")
    values: Values = Field(
        min_length=1, description="Values by local attribute code (custom object mappings)."
    )


class CustomObjectRequest(RequestModel):
    object: ObjectId = Field(description="The object's id.")


class RunTaskRequest(RequestModel):
    task: TaskName = Field(description="The scheduled task to run now.")
    wait_seconds: int = Field(
        default=0,
        ge=0,
        le=200,
        description="How long to wait for the run to finish (0: answer 202 at once with where to poll).",
    )
    full_resync: bool = Field(default=False, description="Incremental tasks: read everything this time.")


class GenericCallRequest(RequestModel):
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
    url: str = Field(
        min_length=0,
        max_length=4096,
        description=(
            "An https URL on the connector's Graph host, or a suffix joined as connector Graph URL + task "
            "base_query + url. Templates $code$ and $reference:code$ (values URL-encoded)."
        ),
    )
    body: str | None = Field(
        default=None,
        max_length=4_000_000,
        description=(
            "A JSON template with $code$ placeholders (values JSON-encoded), or one placeholder holding the "
            "whole body."
        ),
    )
    values: ReferenceValues = Field(
        default_factory=dict, description="Values for the templates, by code or reference:code."
    )


# ----------------------------------------------------------------------------------------- responses


class ActivityResponse(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["Completed"] = "Completed"
    outcome: Literal["Completed"] = "Completed"
    activity: str = Field(description="The activity, e.g. users.create.")
    task: str = Field(description="The task the request named.")
    object_id: str | None = Field(default=None, description="The object acted on or created.")
    result: dict[str, Any] = Field(
        default_factory=dict, description="Result values, by local attribute code."
    )
    exception: None = None
    graph_request_ids: list[str] = Field(
        default_factory=list, description="Graph's request-id of each call made (for support cases)."
    )


class VerifyResponse(ActivityResponse):
    found: bool = Field(description="The verify outcome: true if the object or membership exists.")


class MembershipOutcome(BaseModel):
    group: str
    outcome: Literal["done", "already", "failed"]
    error: str | None = None
    graph_code: str | None = None


class MembershipResponse(ActivityResponse):
    groups: list[MembershipOutcome]


class RunStatusResponse(ActivityResponse):
    run_id: str
    run_status: str = Field(description="queued | running | succeeded | failed | skipped")
    poll: str | None = Field(default=None, description="Where to ask for the run's status.")


class FieldProblem(BaseModel):
    field: str = Field(description="Where in the request: values.login, conditions[0].code, ...")
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem (application/problem+json) with the workflow's outcome and exception text."""

    model_config = ConfigDict(extra="forbid")

    type: str
    title: str
    status: int = Field(description="The HTTP status code (RFC 9457).")
    detail: str
    instance: str | None = None
    outcome: Literal["Exception"] = "Exception"
    exception: str = Field(description="The text for the workflow's provisioning-exception attribute.")
    activity: str | None = None
    task: str | None = None
    errors: list[FieldProblem] = Field(default_factory=list, description="Every invalid field, named.")
    graph_status: int | None = None
    graph_code: str | None = None
    graph_request_id: str | None = None
    groups: list[MembershipOutcome] | None = None
    result: dict[str, Any] | None = None
