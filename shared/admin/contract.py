"""The admin API's request and response bodies (pydantic): the API validates requests with them and the
OpenAPI document (:mod:`shared.admin.openapi`, added to the activities' document) is generated from them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from shared.config import Connector
from shared.config.authentication_tasks import Realm, SignInProtocol
from shared.config.fields import NAME_PATTERN
from shared.config.tasks import AnyTask
from shared.runs import RunRecord


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)


class ConnectorBody(RootModel[Connector]):
    """A connector definition (``schema/config.schema.json``); ``id`` is given by the connector."""


class TaskBody(RootModel[AnyTask]):
    """A task definition of any kind (``schema/config.schema.json``); ``id`` is given by the connector."""


class CopyRequest(Request):
    name: str = Field(pattern=NAME_PATTERN, description="The copy's name.")
    usage: Literal["scheduled", "event", "authentication"] | None = Field(
        default=None,
        description="Tasks: the copy's kind; a scheduled task may become an authentication task.",
    )
    protocol: SignInProtocol | None = Field(default=None, description="For an authentication copy.")
    realm: Realm | None = Field(default=None, description="For an authentication copy.")


class SignInCheckRequest(Request):
    user: str = Field(
        min_length=1, max_length=200, description="The user's object id or user principal name."
    )


class ExportRequest(Request):
    connectors: list[str] = Field(
        min_length=1, description="Ids of the connectors to export, with their tasks."
    )
    password: str | None = Field(
        default=None, min_length=8, max_length=200, description="Seals the file; required for secret values."
    )
    include_secrets: bool = Field(
        default=False, description="Include secret values, encrypted with the password."
    )


class ImportRequest(Request):
    file: dict[str, Any] | str = Field(description="The export file: its JSON object, or its text.")
    password: str | None = Field(default=None, max_length=200, description="The export password, if sealed.")
    dry_run: bool = Field(default=True, description="Only say what would change (the default).")
    key_vault_url: str | None = Field(
        default=None, pattern=r"^https://[^/\s]+/?$", description="Where secret values from the file go."
    )


class Issue(BaseModel):
    path: str
    message: str


class AdminProblem(BaseModel):
    """RFC 9457 problem details; ``errors`` names every invalid field of a definition."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[Issue] | None = None


class DefinitionAnswer(BaseModel):
    id: str
    kind: Literal["connector", "task"]
    usage: str
    name: str
    etag: str = Field(description="Send it back in If-Match to change or delete this version.")
    definition: dict[str, Any]


class DefinitionList(BaseModel):
    value: list[DefinitionAnswer]


class RunList(BaseModel):
    value: list[RunRecord]


class TaskOverview(BaseModel):
    id: str
    name: str
    usage: str
    connector: str
    enabled: bool
    status: str = Field(
        description="ok, failed, running, waiting, held, stopped, never run or not scheduled."
    )
    schedule: str | None
    last_run: RunRecord | None
    calls: list[dict[str, Any]] = Field(description="Event tasks: per activity, calls and the last call.")


class ConnectorOverview(BaseModel):
    id: str
    name: str
    tenant_id: str
    status: str
    counts: dict[str, int]
    tasks: list[TaskOverview]


class SettingsAnswer(BaseModel):
    environment_type: str
    environment_types: list[str]
    version: str
    set_by: str
    how_to_change: str  # read-only at run time: the deployment changes it (README, Administration)


class OverviewAnswer(SettingsAnswer):
    value: list[ConnectorOverview]


class ConnectionTest(BaseModel):
    connector: str
    token: dict[str, Any] | None
    read: dict[str, Any] | None
    roles: list[str]
    features: list[dict[str, Any]] = Field(default_factory=list)


class SignInAnswer(BaseModel):
    allowed: bool
    reason: str | None
    user: dict[str, Any] | None
    task: str


class SignInConfiguration(BaseModel):
    model_config = ConfigDict(extra="allow")
    task: str
    protocol: str
    realm: str
    tenant_id: str
    cloud: str
    client_id: str | None
    issuer: str
    metadata_url: str


class ImportPlanAnswer(BaseModel):
    applied: bool
    changes: list[dict[str, str]]
    key_vault_secrets: list[str]
