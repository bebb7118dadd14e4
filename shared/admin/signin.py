"""Authentication tasks at work: may this user sign in (and if not, why), and the sign-in configuration the
platform's sign-in component needs for the tenant and its cloud.

The user is read with ``GET /users/{id or UPN}?$select=...`` (the properties the task's filter tests); the
filter is evaluated with the same OData evaluator the connector uses for delta results; group conditions use
``GET /users/{id}/transitiveMemberOf/microsoft.graph.group?$select=id`` (nested groups included), see
https://learn.microsoft.com/graph/api/user-list-transitivememberof and docs/graph-behaviour.md section 1 ($select);
hosts per cloud: docs/graph-behaviour.md section 9. Endpoints of the identity platform:
https://learn.microsoft.com/entra/identity-platform/v2-protocols-oidc (issuer, metadata document) and
https://learn.microsoft.com/entra/identity-platform/federation-metadata (SAML federation metadata).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from shared.admin.errors import Conflict
from shared.admin.service import AdminService
from shared.config import Connector
from shared.config.authentication_tasks import AuthenticationTask
from shared.graph.errors import GraphError
from shared.odata import analyze, compile_filter, parse_filter

_ALWAYS = ("id", "userPrincipalName", "displayName")


async def _task(admin: AdminService, id: str) -> tuple[AuthenticationTask, Connector]:
    definition = await admin.store.get("task", id)
    if definition.usage != "authentication":
        raise Conflict(f"{definition.name!r} is a {definition.usage} task, not an authentication task")
    config = await admin.config()
    task = config.task_of(AuthenticationTask, definition.name)
    return task, config.connector(task.connector)


async def may_sign_in(admin: AdminService, id: str, user: str) -> dict[str, Any]:
    """``{"allowed": bool, "reason": str | None, "user": {...}}`` for a user id or UPN."""
    task, connector = await _task(admin, id)
    select = set(_ALWAYS)
    if task.users.filter:
        select |= {path.split("/")[0] for path in analyze(parse_filter(task.users.filter)).paths}
    client = admin.services.graph(connector)

    def refused(reason: str, found: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"allowed": False, "reason": reason, "user": _summary(found), "task": task.name}

    async with client.context():
        try:
            found = await client.get_json(
                f"users/{quote(user, safe='@')}", params={"$select": ",".join(sorted(select))}
            )
        except GraphError as exc:
            if exc.status == 404:
                return refused(f"no user {user!r} in the tenant")
            raise
        if not task.enabled:
            return refused(f"the authentication task {task.name!r} is disabled", found)
        if found.get("id") in task.users.excluded_ids:
            return refused("the user is in the task's excluded users", found)
        if task.users.filter and not compile_filter(task.users.filter)(found):
            return refused(f"the user does not match the user filter: {task.users.filter}", found)
        if task.groups.member_of or task.groups.excluded_member_of:
            groups: set[str] = set()
            path = f"users/{found['id']}/transitiveMemberOf/microsoft.graph.group"
            async for page in client.pages(path, params={"$select": "id"}):
                groups |= {item["id"] for item in page.items}
            excluded = groups & set(task.groups.excluded_member_of)
            if excluded:
                return refused(
                    f"the user is a member of an excluded group ({', '.join(sorted(excluded))})", found
                )
            if task.groups.member_of and not groups & set(task.groups.member_of):
                return refused(
                    "the user is not a member (directly or through nested groups) of any allowed group", found
                )
    return {"allowed": True, "reason": None, "user": _summary(found), "task": task.name}


def _summary(user: dict[str, Any] | None) -> dict[str, Any] | None:
    if user is None:
        return None
    return {key: user.get(key) for key in _ALWAYS}


async def sign_in_configuration(admin: AdminService, id: str) -> dict[str, Any]:
    """What the platform's sign-in component needs for this tenant, cloud and protocol."""
    task, connector = await _task(admin, id)
    login = connector.authority.rstrip("/")
    tenant = connector.tenant_id
    result: dict[str, Any] = {
        "task": task.name,
        "protocol": task.protocol,
        "realm": task.realm,
        "tenant_id": tenant,
        "cloud": connector.cloud,
        "client_id": connector.client_id,
    }
    if task.protocol == "openid_connect":
        result |= {
            "issuer": f"{login}/{tenant}/v2.0",
            "metadata_url": f"{login}/{tenant}/v2.0/.well-known/openid-configuration",
            "authorization_endpoint": f"{login}/{tenant}/oauth2/v2.0/authorize",
            "token_endpoint": f"{login}/{tenant}/oauth2/v2.0/token",
        }
    else:
        # The SAML issuer of the global cloud is sts.windows.net; national clouds use their login host.
        issuer_host = "https://sts.windows.net" if connector.cloud == "global" else login
        result |= {
            "issuer": f"{issuer_host}/{tenant}/",
            "metadata_url": f"{login}/{tenant}/federationmetadata/2007-06/federationmetadata.xml",
            "sign_on_url": f"{login}/{tenant}/saml2",
        }
    return result
