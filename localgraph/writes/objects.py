"""Helpers shared by the write handlers: the request body, looking objects up, the 201 answer, deletion."""

from __future__ import annotations

import re
import struct
import uuid
from typing import Any

from localgraph.context import ServerContext
from localgraph.errors import GraphError, bad_request
from localgraph.query import project
from localgraph.reads import ODATA_JSON
from localgraph.routing import GraphRequest, GraphResponse
from localgraph.tenant import KIND_TO_COLLECTION, DirObject

SYNC_MASTERED_MESSAGE = (
    "Unable to update the specified properties for on-premises mastered Directory Sync objects or objects "
    "currently undergoing migration."
)

GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def object_body(req: GraphRequest) -> dict[str, Any]:
    body = req.json()
    if not isinstance(body, dict):
        # UNCONFIRMED text: Graph's OData reader rejects a non-object entity payload with a 400.
        raise GraphError(400, "BadRequest", "The request body must be a JSON object.")
    return body


def lookup(ctx: ServerContext, kind: str, key: str) -> DirObject:
    """Users by id or userPrincipalName; other objects by id (a non-GUID key is a malformed identifier,
    400, as in the reads) [docs/graph-behaviour.md section 6]."""
    if kind == "user":
        return ctx.tenant.find_user(key)
    if not GUID.match(key):
        raise bad_request(f"Invalid object identifier '{key}'.")
    return ctx.tenant.get(key, kind)


def security_identifier(object_id: str) -> str:
    """A cloud object's SID: S-1-12-1 and the object id's GUID bytes as four little-endian uint32."""
    parts = struct.unpack("<4I", uuid.UUID(object_id).bytes_le)
    return "S-1-12-1-" + "-".join(str(part) for part in parts)


def _location(req: GraphRequest, ctx: ServerContext, obj: DirObject) -> dict[str, str]:
    """Graph's Location for a created directory object (the v2 directoryObjects URL it answers with).
    Shape from observed responses; UNCONFIRMED beyond that."""
    origin = req.base_url.rsplit("/v1.0", 1)[0]
    type_name = obj.kind[0].upper() + obj.kind[1:]
    path = f"/v2/{ctx.tenant.tenant_id}/directoryObjects/{obj.id}/Microsoft.DirectoryServices.{type_name}"
    return {"Location": origin + path}


def created_response(ctx: ServerContext, req: GraphRequest, obj: DirObject) -> GraphResponse:
    collection = KIND_TO_COLLECTION[obj.kind]
    body = {"@odata.context": f"{req.base_url}/$metadata#{collection}/$entity"}
    body.update(project(obj, None))
    return GraphResponse(201, body, headers=_location(req, ctx, obj), content_type=ODATA_JSON)


def synced(obj: DirObject) -> bool:
    return bool(obj.props.get("onPremisesSyncEnabled"))


def group_type(group: DirObject) -> str:
    props = group.props
    if "Unified" in (props.get("groupTypes") or []):
        return "m365"
    if props.get("mailEnabled"):
        return "mailsecurity" if props.get("securityEnabled") else "distribution"
    return "security"


def delete_object(ctx: ServerContext, obj: DirObject) -> None:
    """Soft delete (deleted items, restorable for 30 days), except distribution groups, which Graph deletes
    permanently (Learn group-delete)."""
    if synced(obj):
        # Deleting an AD-mastered object in the cloud: same refusal as its properties (UNCONFIRMED text).
        raise bad_request(SYNC_MASTERED_MESSAGE)
    if obj.kind == "group" and group_type(obj) == "distribution":
        ctx.tenant.purge(obj.id)
    else:
        ctx.tenant.delete(obj.id)
