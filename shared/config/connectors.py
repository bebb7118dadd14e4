"""Connectors: how to reach one Entra tenant through Microsoft Graph (cloud, hosts, credential)."""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, model_validator

from shared.config.credentials import CredentialConfig
from shared.config.fields import ID_DESCRIPTION, ConfigModel, EntityId, Guid, HttpsRoot, Name, TenantId
from shared.config.issues import ConfigIssue, raise_if_any

Cloud = Literal["global", "usgov", "usgovdod", "china"]


@dataclass(frozen=True)
class CloudEndpoints:
    login_url: str
    graph_url: str


CLOUD_ENDPOINTS: Mapping[str, CloudEndpoints] = types.MappingProxyType(
    {
        "global": CloudEndpoints("https://login.microsoftonline.com", "https://graph.microsoft.com"),
        "usgov": CloudEndpoints("https://login.microsoftonline.us", "https://graph.microsoft.us"),
        "usgovdod": CloudEndpoints("https://login.microsoftonline.us", "https://dod-graph.microsoft.us"),
        "china": CloudEndpoints("https://login.chinacloudapi.cn", "https://microsoftgraph.chinacloudapi.cn"),
    }
)


class Connector(ConfigModel):
    """How to reach one Entra tenant through Microsoft Graph."""

    id: EntityId | None = Field(default=None, description=ID_DESCRIPTION)
    name: Name = Field(description="Unique name; used in table keys and blob paths.")
    tenant_id: TenantId = Field(description="Tenant GUID or a domain name such as contoso.onmicrosoft.com.")
    client_id: Guid | None = Field(
        default=None,
        description="Application (client) id of the app registration; may be omitted for managed identity.",
    )
    cloud: Cloud = "global"
    login_url: HttpsRoot | None = Field(default=None, description="Authority host; defaults from cloud.")
    graph_url: HttpsRoot | None = Field(default=None, description="Graph endpoint; defaults from cloud.")
    disable_instance_discovery: bool = Field(
        default=False, description="Set for authority hosts unknown to MSAL (private or local endpoints)."
    )
    credential: CredentialConfig

    @model_validator(mode="before")
    @classmethod
    def _default_endpoints_from_cloud(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        cloud = data.get("cloud", "global")
        endpoints = CLOUD_ENDPOINTS.get(cloud) if isinstance(cloud, str) else None
        if endpoints is None:
            return data
        data = dict(data)
        if data.get("login_url") is None:
            data["login_url"] = endpoints.login_url
        if data.get("graph_url") is None:
            data["graph_url"] = endpoints.graph_url
        return data

    @model_validator(mode="after")
    def _app_credentials_need_client_id(self) -> Connector:
        if self.client_id is None and self.credential.type in ("client_secret", "certificate"):
            raise_if_any(
                [
                    ConfigIssue(
                        "client_id",
                        f"required for {self.credential.type} credentials "
                        "(the app registration's application id)",
                    )
                ]
            )
        return self

    @property
    def authority(self) -> str:
        """The login host for azure-identity's ``authority``."""
        return self.login_url or CLOUD_ENDPOINTS[self.cloud].login_url

    @property
    def graph_root(self) -> str:
        """Graph's base URL, without a trailing slash or version."""
        return self.graph_url or CLOUD_ENDPOINTS[self.cloud].graph_url

    @property
    def scope(self) -> str:
        """The token scope for Graph application permissions."""
        return f"{self.graph_root}/.default"
