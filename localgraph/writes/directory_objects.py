"""Routes common to directory objects: ``DELETE`` and ``PATCH`` by id, ``getByIds``."""

from __future__ import annotations

from localgraph.context import ServerContext
from localgraph.errors import bad_request
from localgraph.query import project
from localgraph.reads import ODATA_JSON
from localgraph.routing import GraphRequest, GraphResponse, Router
from localgraph.tenant import COLLECTIONS
from localgraph.writes.objects import GUID, delete_object, lookup, object_body
from localgraph.writes.properties import drop_null_keys, merge_complex, require_bool, require_text, validate

router = Router()

MAX_GET_BY_IDS = 1000  # Learn directoryobject-getbyids: "up to 1000 ids"


def _register_delete(collection: str, kind: str) -> None:
    @router.route("DELETE", f"/{collection}/{{id}}")
    def delete_by_id(ctx: ServerContext, req: GraphRequest, id: str) -> GraphResponse:
        delete_object(ctx, lookup(ctx, kind, id))
        return GraphResponse(204)


for _collection, _kind in COLLECTIONS.items():
    if (
        _kind != "orgContact"
    ):  # org contacts are read-only in Graph [docs/graph-behaviour.md section 7]: the router answers 405
        _register_delete(_collection, _kind)


def _register_patch(collection: str, kind: str) -> None:
    @router.route("PATCH", f"/{collection}/{{id}}")
    def update_object(ctx: ServerContext, req: GraphRequest, id: str) -> GraphResponse:
        obj = lookup(ctx, kind, id)
        changes = validate(ctx, req, kind, object_body(req), creating=False)
        if "displayName" in changes:
            require_text(changes, "displayName", kind, max_length=256)
        if "accountEnabled" in changes:
            require_bool(changes, "accountEnabled", kind)
        merge_complex(obj, changes)
        ctx.tenant.update(obj.id, changes)
        drop_null_keys(obj)
        return GraphResponse(204)


for _collection, _kind in (
    ("applications", "application"),
    ("servicePrincipals", "servicePrincipal"),
    ("devices", "device"),
):
    _register_patch(_collection, _kind)


_TYPE_NAMES = {kind.lower(): kind for kind in COLLECTIONS.values()}


@router.route("POST", "/directoryObjects/getByIds")
def get_by_ids(ctx: ServerContext, req: GraphRequest) -> GraphResponse:
    """``{"ids": [...], "types": [...]}`` -> 200, a directoryObjects collection with ``@odata.type`` on each
    item; unknown ids are left out. Costs 5 RU (the pipeline's cost table) [docs/graph-behaviour.md section 5]."""
    body = object_body(req)
    ids = body.get("ids")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise bad_request("Invalid value specified for property 'ids' of resource 'DirectoryObject'.")
    if len(ids) > MAX_GET_BY_IDS:
        raise bad_request(f"Too many ids: at most {MAX_GET_BY_IDS} are allowed.")  # UNCONFIRMED text
    kinds = None
    if body.get("types") is not None:
        types = body["types"]
        if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
            raise bad_request("Invalid value specified for property 'types' of resource 'DirectoryObject'.")
        kinds = set()
        for name in types:
            kind = _TYPE_NAMES.get(name.lower().removeprefix("#").removeprefix("microsoft.graph."))
            if kind is None:
                raise bad_request(
                    "Invalid value specified for property 'types' of resource 'DirectoryObject'."
                )
            kinds.add(kind)
    for object_id in ids:
        if not GUID.match(object_id):
            raise bad_request(f"Invalid object identifier '{object_id}'.")
    items = []
    seen: set[str] = set()
    for object_id in ids:
        obj = ctx.tenant.objects.get(object_id.lower())
        if (
            obj is None
            or obj.deleted is not None
            or obj.id in seen
            or (kinds is not None and obj.kind not in kinds)
        ):
            continue
        seen.add(obj.id)
        items.append(project(obj, None, with_type=True))
    body = {"@odata.context": f"{req.base_url}/$metadata#directoryObjects", "value": items}
    return GraphResponse(200, body, content_type=ODATA_JSON)
