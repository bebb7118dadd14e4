"""``POST /devices`` (delegated only) [docs/graph-behaviour.md section 7]."""

from __future__ import annotations

import uuid

from localgraph.context import ServerContext
from localgraph.routing import GraphRequest, GraphResponse, Router
from localgraph.tenant import utc_now
from localgraph.writes.objects import created_response, object_body
from localgraph.writes.properties import invalid_value, require_bool, require_text, validate

router = Router()


@router.route("POST", "/devices")
def create_device(ctx: ServerContext, req: GraphRequest) -> GraphResponse:
    """Delegated only: "Application: Not supported" [docs/graph-behaviour.md section 7]; the pipeline refuses app-only
    callers (localgraph.permissions.APP_ONLY_REFUSED)."""
    changes = validate(ctx, req, "device", object_body(req), creating=True)
    require_bool(changes, "accountEnabled", "device")
    for name in ("deviceId", "displayName", "operatingSystem", "operatingSystemVersion"):
        require_text(changes, name, "device")
    if not isinstance(changes.get("alternativeSecurityIds"), list):
        raise invalid_value("alternativeSecurityIds", "device")
    props = {"id": str(uuid.uuid4()), "registrationDateTime": utc_now(), "physicalIds": [], **changes}
    return created_response(ctx, req, ctx.tenant.create("device", props))
