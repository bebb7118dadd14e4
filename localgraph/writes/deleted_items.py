"""Deleted items: restore and permanent deletion [Learn directory-deleteditems-restore]."""

from __future__ import annotations

from localgraph.context import ServerContext
from localgraph.errors import not_found
from localgraph.query import project
from localgraph.reads import ODATA_JSON
from localgraph.routing import GraphRequest, GraphResponse, Router
from localgraph.tenant import DirObject

router = Router()


def _deleted(ctx: ServerContext, req: GraphRequest, id: str) -> DirObject:
    obj = ctx.tenant.objects.get(id.lower())
    if obj is None or obj.deleted is None:
        raise not_found(id)
    return obj


@router.route("POST", "/directory/deletedItems/{id}/restore")
def restore_deleted_item(ctx: ServerContext, req: GraphRequest, id: str) -> GraphResponse:
    """200 with the restored object; it rejoins its groups [Learn directory-deleteditems-restore]."""
    obj = ctx.tenant.restore(_deleted(ctx, req, id).id)  # a taken UPN/mailNickname raises ObjectConflict
    body = {"@odata.context": f"{req.base_url}/$metadata#directoryObjects/$entity"}
    body.update(project(obj, None, with_type=True))
    return GraphResponse(200, body, content_type=ODATA_JSON)


@router.route("DELETE", "/directory/deletedItems/{id}")
def purge_deleted_item(ctx: ServerContext, req: GraphRequest, id: str) -> GraphResponse:
    """204: permanently deleted (delta reports ``@removed: deleted``)."""
    ctx.tenant.purge(_deleted(ctx, req, id).id)
    return GraphResponse(204)
