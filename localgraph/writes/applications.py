"""Applications, their directory extension properties, and service principals [docs/graph-behaviour.md sections 7, 8]."""

from __future__ import annotations

import re
import uuid
from typing import Any

from localgraph import schema
from localgraph.context import ServerContext
from localgraph.errors import bad_request, conflict, not_found
from localgraph.reads import ODATA_JSON
from localgraph.routing import GraphRequest, GraphResponse, Router
from localgraph.tenant import DirObject
from localgraph.writes.objects import GUID, created_response, lookup, object_body
from localgraph.writes.properties import (
    EXTENSION_DATA_TYPES,
    EXTENSION_TARGET_NAMES,
    invalid_value,
    require_text,
    unknown_property,
    validate,
)

router = Router()


@router.route("POST", "/applications")
def create_application(ctx: ServerContext, req: GraphRequest) -> GraphResponse:
    """Only displayName is required; appId is generated [docs/graph-behaviour.md section 7]."""
    changes = validate(ctx, req, "application", object_body(req), creating=True)
    require_text(changes, "displayName", "application", max_length=256)
    props: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "appId": str(uuid.uuid4()),
        "signInAudience": "AzureADMyOrg",
        "publisherDomain": ctx.tenant.domain,
        "identifierUris": [],
        "tags": [],
        "keyCredentials": [],
        "passwordCredentials": [],
        "appRoles": [],
        "requiredResourceAccess": [],
        "addIns": [],
        **changes,
    }
    return created_response(ctx, req, ctx.tenant.create("application", props))


def _extension_property_json(definition: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": definition["id"],
        "deletedDateTime": None,
        "appDisplayName": definition.get("appDisplayName"),
        "dataType": definition.get("dataType"),
        "isMultiValued": bool(definition.get("isMultiValued")),
        "isSyncedFromOnPremises": bool(definition.get("isSyncedFromOnPremises")),
        "name": definition["name"],
        "targetObjects": list(definition.get("targetObjects", [])),
    }


def _app_extensions(ctx: ServerContext, app: DirObject) -> list[dict[str, Any]]:
    prefix = f"extension_{app.props['appId'].replace('-', '').lower()}_"
    return [d for name, d in ctx.tenant.extension_properties.items() if name.lower().startswith(prefix)]


@router.route("POST", "/applications/{id}/extensionProperties")
def create_extension_property(ctx: ServerContext, req: GraphRequest, id: str) -> GraphResponse:
    """``{"name","dataType","targetObjects"}`` -> 201 with ``name`` = ``extension_{appId without
    hyphens}_{name}`` [docs/graph-behaviour.md section 8]. Validation texts are UNCONFIRMED."""
    app = lookup(ctx, "application", id)
    body = object_body(req)
    for key in body:
        if "@" not in key and key not in schema.structural_properties("extensionProperty"):
            raise unknown_property(key)
    name = body.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_]{1,120}", name):
        raise invalid_value("name", "extensionProperty")
    if body.get("dataType") not in EXTENSION_DATA_TYPES:
        raise invalid_value("dataType", "extensionProperty")
    targets = body.get("targetObjects")
    if not isinstance(targets, list) or not targets or any(t not in EXTENSION_TARGET_NAMES for t in targets):
        raise invalid_value("targetObjects", "extensionProperty")
    multi = body.get("isMultiValued", False)
    if not isinstance(multi, bool):
        raise invalid_value("isMultiValued", "extensionProperty")
    full_name = f"extension_{app.props['appId'].replace('-', '').lower()}_{name}"
    if any(existing.lower() == full_name.lower() for existing in ctx.tenant.extension_properties):
        raise conflict("name")  # UNCONFIRMED: the duplicate-name error shape
    definition = {
        "id": str(uuid.uuid4()),
        "name": full_name,
        "appDisplayName": app.props.get("displayName"),
        "dataType": body["dataType"],
        "isMultiValued": multi,
        "isSyncedFromOnPremises": False,
        "targetObjects": list(targets),
    }
    ctx.tenant.extension_properties[full_name] = definition
    body = {
        "@odata.context": f"{req.base_url}/$metadata#applications('{app.id}')/extensionProperties/$entity"
    }
    body.update(_extension_property_json(definition))
    return GraphResponse(201, body, content_type=ODATA_JSON)


@router.route("GET", "/applications/{id}/extensionProperties")
def list_extension_properties(ctx: ServerContext, req: GraphRequest, id: str) -> GraphResponse:
    app = lookup(ctx, "application", id)
    body = {
        "@odata.context": f"{req.base_url}/$metadata#applications('{app.id}')/extensionProperties",
        "value": [_extension_property_json(d) for d in _app_extensions(ctx, app)],
    }
    return GraphResponse(200, body, content_type=ODATA_JSON)


@router.route("DELETE", "/applications/{id}/extensionProperties/{propertyId}")
def delete_extension_property(
    ctx: ServerContext, req: GraphRequest, id: str, propertyId: str
) -> GraphResponse:
    app = lookup(ctx, "application", id)
    for definition in _app_extensions(ctx, app):
        if definition["id"].lower() == propertyId.lower():
            del ctx.tenant.extension_properties[definition["name"]]
            return GraphResponse(204)
    raise not_found(propertyId)


@router.route("POST", "/servicePrincipals")
def create_service_principal(ctx: ServerContext, req: GraphRequest) -> GraphResponse:
    """``{"appId"}`` of an application in the tenant -> 201. Errors for an unknown appId and for a second
    principal of the same app are UNCONFIRMED (the latter follows docs/graph-behaviour.md rule 7, ObjectConflict)."""
    tenant = ctx.tenant
    changes = validate(ctx, req, "servicePrincipal", object_body(req), creating=True)
    app_id = changes.get("appId")
    if not isinstance(app_id, str) or not GUID.match(app_id):
        raise invalid_value("appId", "servicePrincipal")
    app = next(
        (a for a in tenant.live("application") if a.props.get("appId", "").lower() == app_id.lower()), None
    )
    if app is None:
        raise bad_request(
            f"The appId '{app_id}' of the service principal does not reference a valid application object."
        )
    if any(sp.props.get("appId", "").lower() == app_id.lower() for sp in tenant.live("servicePrincipal")):
        raise conflict("appId")
    props: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "displayName": app.props.get("displayName"),
        "appDisplayName": app.props.get("displayName"),
        "accountEnabled": True,
        "servicePrincipalType": "Application",
        "appOwnerOrganizationId": tenant.tenant_id,
        "appRoleAssignmentRequired": False,
        "signInAudience": app.props.get("signInAudience", "AzureADMyOrg"),
        "servicePrincipalNames": [app.props["appId"]],
        "alternativeNames": [],
        "tags": [],
        "replyUrls": [],
        "keyCredentials": [],
        "passwordCredentials": [],
        "notificationEmailAddresses": [],
        "appRoles": [],
        "oauth2PermissionScopes": [],
        "addIns": [],
        **changes,
        "appId": app.props["appId"],
    }
    return created_response(ctx, req, tenant.create("servicePrincipal", props))
