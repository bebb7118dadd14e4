"""Who may use the admin API and the management page: administrators only.

Three ways in, one per way the app is hosted (:class:`Access`, chosen where the app is built):

- ``function_key``: the ``mgmt/{*path}`` route of the Function App has auth level ADMIN, so the Functions
  host lets a request through only with the app's master (admin-level) key; the app trusts that check and
  reads no header. For automation.
- ``app_service``: the ``manage/{*path}`` route (auth level ANONYMOUS) behind App Service authentication
  (Entra ID). The platform authenticates the browser user and passes the principal in
  ``X-MS-CLIENT-PRINCIPAL`` (base64 JSON with ``claims``), replacing whatever a client sent; the caller must
  hold the administrators' app role (:data:`ADMIN_ROLE`), else 403. The header is trusted only when the
  platform says authentication is on (``WEBSITE_AUTH_ENABLED=True``); otherwise every request is refused,
  because anyone could forge it. See
  https://learn.microsoft.com/azure/app-service/configure-authentication-user-identities and
  https://learn.microsoft.com/azure/app-service/reference-app-settings (WEBSITE_AUTH_ENABLED). Functions' key
  levels and App Service authentication do not combine on one route (azure-functions-host issue #11394),
  hence two routes.
- ``development``: local runs under uvicorn (``make ui``), every caller an administrator. It refuses to start
  when it finds itself in Azure (``WEBSITE_INSTANCE_ID`` or ``WEBSITE_SITE_NAME`` set).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

ADMIN_ROLE = "Connector.Administrator"
"""The app role (of the Function App's Entra app registration) that administrators are assigned."""

AccessMode = Literal["function_key", "app_service", "development"]
AZURE_MARKERS = ("WEBSITE_INSTANCE_ID", "WEBSITE_SITE_NAME")


class AccessDenied(Exception):
    """``sign_in``: App Service authentication is on and the caller has not signed in yet, so a browser can
    be sent to its sign-in (``/.auth/login/aad``): it is not required globally (``infra/``), so the
    platform lets an anonymous request through to the app."""

    def __init__(self, status: int, detail: str, *, sign_in: bool = False) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.sign_in = sign_in


@dataclass(frozen=True)
class Caller:
    name: str
    how: AccessMode


class DevelopmentInAzure(RuntimeError):
    """The development access mode was asked for on an Azure host."""


@dataclass(frozen=True)
class Access:
    mode: AccessMode
    environ: Mapping[str, str]

    def __post_init__(self) -> None:
        if self.mode == "development":
            found = [name for name in AZURE_MARKERS if self.environ.get(name)]
            if found:
                raise DevelopmentInAzure(
                    f"development mode lets anyone administer the connector and is refused here: "
                    f"{', '.join(found)} say this is an Azure host"
                )

    def caller(self, headers: Mapping[str, str]) -> Caller:
        """The administrator making the request; :class:`AccessDenied` (401 or 403) otherwise."""
        if self.mode == "development":
            return Caller("developer (local development mode)", "development")
        if self.mode == "function_key":
            return Caller("admin key", "function_key")
        principal = headers.get("x-ms-client-principal")
        if (self.environ.get("WEBSITE_AUTH_ENABLED") or "").lower() != "true":
            raise AccessDenied(
                401,
                "App Service authentication is not enabled for this app, so a client principal header "
                "cannot be trusted; sign-in is required",
            )
        if not principal:
            raise AccessDenied(401, "not signed in", sign_in=True)
        try:
            data = json.loads(base64.b64decode(principal, validate=True))
            claims = data.get("claims") or []
            role_type = data.get("role_typ") or "roles"
            roles = {c.get("val") for c in claims if c.get("typ") in (role_type, "roles")}
            name_type = data.get("name_typ") or "name"
            name = next((c.get("val") for c in claims if c.get("typ") == name_type), None) or "unknown"
        except (ValueError, TypeError, AttributeError):
            raise AccessDenied(401, "the client principal header is not readable") from None
        if ADMIN_ROLE not in roles:
            raise AccessDenied(403, f"{name} does not have the {ADMIN_ROLE} app role")
        return Caller(str(name), "app_service")
