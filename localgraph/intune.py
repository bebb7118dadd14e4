"""Intune devices under ``/deviceManagement`` as Graph v1.0 serves them [docs/graph-behaviour.md section 11].

- ``managedDevices``: list (pages of ``intune_page_size``, 1,000, with an absolute nextLink carrying
  ``$skiptoken``: "There's a default limit of 1000 items in the response", a Microsoft maintainer in
  powershell-intune-samples#2), get, and the ``syncDevice`` action; ``windowsProtectionState`` for Windows
  devices only (404 for others, observed in secmgmt-insights-connector#145).
- ``detectedApps``: tenant-wide, one per discovered app, with the ``managedDevices`` it was found on
  [Learn: graph/api/intune-devices-detectedapp-get]. ``/managedDevices/{id}/detectedApps`` is beta only
  (v1.0's managedDevice has no such relationship) and answers as any unknown segment does.
- ``$filter`` on managedDevices: "Only properties whose descriptions mention support for $filter may be
  used, and combinations of those filtered properties must use 'and', not 'or'." (the v1.0 CSDL's
  description of managedDevice); the operators per property come from the same descriptions (the committed
  extract, :func:`localgraph.schema.filterable_properties`). A clause Intune does not support is silently
  ignored, as observed (graph-explorer-v4#3125, microsoft-graph-docs-contrib#235: "It does not return a bad
  request, it just ignores the filter query parameter"), or, with ``intune_unsupported_filter="reject"``,
  refused with 400 (that error's text is UNCONFIRMED). ``in`` answers 500 (msgraph-sdk-powershell#2766).
- No delta: v1.0 binds no ``delta`` function to managedDevice and declares no change tracking (CSDL), so
  ``managedDevices/delta`` is a segment Graph cannot resolve (400 "Resource not found for the segment";
  the exact answer is UNCONFIRMED: a parser reading ``delta`` as a key would give Intune's 404 instead).
- Intune's own errors carry a JSON text as ``message`` (IntuneDocumentation#39, docs-contrib#4603).
- Some managedDevice properties hold their real value only on a GET of one device that names them in
  ``$select``; lists (and a GET without them in ``$select``) show a default: "To retrieve actual values GET
  call needs to be made, with device id and included in select parameter." (the properties' descriptions in
  the v1.0 CSDL) [docs/graph-behaviour.md section 11].
- ``$count=true`` gives ``@odata.count`` on the first page without ``ConsistencyLevel`` (observed on beta,
  msgraph-sdk-powershell#1819; UNCONFIRMED for v1.0). ``$orderby`` is ignored (msgraph-sdk-dotnet#1322).

Intune's own request budget is applied by :class:`localgraph.throttling.Throttle`.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from localgraph import schema
from localgraph.context import ServerContext
from localgraph.errors import GraphError, bad_request
from localgraph.query import context_url, project_props
from localgraph.reads import ODATA_JSON, next_link
from localgraph.routing import GraphRequest, GraphResponse, Router
from localgraph.tenant import utc_now
from shared import odata

router = Router()

# managedDevice properties whose descriptions say a list shows a default and only a GET of the device with
# the property in $select shows the value, with that default ("Default, is Null", "Default is an empty string",
# "Default is 0", "Default is null") [v1.0 CSDL descriptions of managedDevice].
SELECT_ON_GET_ONLY = {
    "activationLockBypassCode": None,
    "ethernetMacAddress": None,
    "iccid": "",
    "notes": None,
    "physicalMemoryInBytes": 0,
    "remoteAssistanceSessionUrl": "",
    "udid": "",
}

_DELTA = re.compile(r"^(?:(?:microsoft\.)?graph\.)?delta(?:\(\))?$", re.IGNORECASE)


def intune_error(req: GraphRequest, status: int, code: str) -> GraphError:
    """An error as Intune's service answers it: ``message`` is a JSON text with Intune's operation and
    activity ids [IntuneDocumentation#39, microsoft-graph-docs-contrib#4603]. Fields beyond ``_version``,
    ``Message`` and ``RetryAfter`` follow those captures; their values are UNCONFIRMED."""
    message = {
        "_version": 3,
        "Message": f"An error has occurred - Operation ID (for customer support): {uuid.uuid4()} - "
        f"Activity ID: {req.request_id or uuid.uuid4()} - Url: {req.base_url}{req.path}",
        "CustomApiErrorPhrase": "",
        "RetryAfter": None,
        "ErrorSourceService": "",
        "HttpHeaders": "{}",
    }
    return GraphError(status, code, json.dumps(message, separators=(",", ":")))


def _select(req: GraphRequest, kind: str) -> list[str] | None:
    """``$select`` on an Intune entity; an unknown property is a 400 (Intune types are not open)."""
    raw = req.query.get("$select")
    if raw is None:
        return None
    names = [name.strip() for name in raw.split(",") if name.strip()]
    declared = schema.structural_properties(kind)
    for name in names:
        if name not in declared:
            raise bad_request(
                f"Could not find a property named '{name}' on type 'microsoft.graph.{kind}'.",
                code="BadRequest",
            )
    return names


def _top(ctx: ServerContext, req: GraphRequest) -> int:
    raw = req.query.get("$top")
    try:
        top = int(raw) if raw is not None else ctx.settings.intune_page_size
    except ValueError:
        top = 0
    if top < 1:
        raise bad_request(f"Invalid $top value '{raw}'.", code="BadRequest")
    # UNCONFIRMED: Intune's largest $top; a larger one is served in pages of the default size.
    return min(top, ctx.settings.intune_page_size)


def _listed(kind: str, props: dict[str, Any]) -> dict[str, Any]:
    """An entity as a list shows it: managedDevice's get-only properties at their defaults."""
    return {**props, **SELECT_ON_GET_ONLY} if kind == "managedDevice" else props


def _page(ctx, req, items: list[dict[str, Any]], kind: str, entity_set: str) -> GraphResponse:
    """One page of an Intune list: ``items`` in a stable order, ``$top`` and an opaque ``$skiptoken``."""
    select = _select(req, kind)
    top = _top(ctx, req)
    cursor = ctx.read_page_token(req.path, req.query)
    start = int(cursor or 0)
    page = items[start : start + top]
    body: dict[str, Any] = {"@odata.context": context_url(req.base_url, entity_set, select)}
    if cursor is None and req.query.get("$count", "").lower() == "true":
        body["@odata.count"] = len(items)
    if start + top < len(items):
        body["@odata.nextLink"] = next_link(req, ctx.page_token(req.path, req.query, start + top))
    body["value"] = [project_props(kind, props["id"], _listed(kind, props), select) for props in page]
    return GraphResponse(200, body, content_type=ODATA_JSON)


# ------------------------------------------------------------------------------------------- $filter


def _clause(node: odata.Node) -> tuple[str, str] | None:
    """(property, operator) of a simple clause: ``p eq 'x'``, ``contains(p, 'x')``; None otherwise."""
    if (
        isinstance(node, odata.Compare)
        and len(node.property.segments) == 1
        and node.property.variable is None
    ):
        return node.property.segments[0], node.op
    if isinstance(node, odata.Call) and len(node.property.segments) == 1 and node.property.variable is None:
        return node.property.segments[0], node.function.lower()
    return None


def _supported(node: odata.Node, filterable: dict[str, tuple[str, ...]]) -> bool:
    """Whether Intune honours one ``and``-operand: a clause on a property whose description names the
    operator, or an ``or`` of such clauses on one property that also names ``or``."""
    if isinstance(node, odata.Or):
        clauses = [_clause(operand) for operand in node.operands]
        if any(c is None for c in clauses) or len({c[0] for c in clauses}) != 1:
            return False  # "combinations of those filtered properties must use 'and', not 'or'"
        prop = clauses[0][0]
        return "or" in filterable.get(prop, ()) and all(_supported(o, filterable) for o in node.operands)
    clause = _clause(node)
    if clause is None:
        return False
    prop, op = clause
    return op in {o.lower() for o in filterable.get(prop, ())}


def _contains_in(node: odata.Node) -> bool:
    if isinstance(node, odata.In):
        return True
    if isinstance(node, odata.And | odata.Or):
        return any(_contains_in(operand) for operand in node.operands)
    if isinstance(node, odata.Not):
        return _contains_in(node.operand)
    return False


def managed_device_filter(ctx: ServerContext, req: GraphRequest, text: str):
    """The predicate Intune applies for ``$filter=text`` on managedDevices (None: no filtering)."""
    try:
        tree = odata.parse_filter(text)
    except odata.FilterError as exc:
        raise bad_request(str(exc), code="BadRequest") from None
    if _contains_in(tree):
        # Observed: `in` fails with 500 (msgraph-sdk-powershell#2766); the error code is UNCONFIRMED.
        raise intune_error(req, 500, "InternalError")
    filterable = schema.filterable_properties("managedDevice")
    operands = list(tree.operands) if isinstance(tree, odata.And) else [tree]
    kept = [operand for operand in operands if _supported(operand, filterable)]
    if len(kept) != len(operands) and ctx.settings.intune_unsupported_filter == "reject":
        # UNCONFIRMED: Intune is observed to ignore such clauses; this strict mode's text is ours.
        raise bad_request(
            "Invalid filter clause: only properties that support $filter, combined with 'and', may be used.",
            code="BadRequest",
        )
    if not kept:
        return None
    return lambda props: all(odata.evaluate(operand, props) for operand in kept)


# ------------------------------------------------------------------------------------ managed devices


@router.route("GET", "/deviceManagement/managedDevices")
def list_managed_devices(ctx: ServerContext, req: GraphRequest) -> GraphResponse:
    if "$search" in req.query:
        # "$Search is not supported." (managedDevice property descriptions); the error text is UNCONFIRMED.
        raise bad_request("$search is not supported on managedDevices.", code="BadRequest")
    predicate = managed_device_filter(ctx, req, req.query["$filter"]) if "$filter" in req.query else None
    devices = [d.props for d in ctx.tenant.managed_devices.values()]
    if predicate is not None:
        devices = [props for props in devices if predicate(props)]
    return _page(ctx, req, devices, "managedDevice", "deviceManagement/managedDevices")


def _managed_device(ctx: ServerContext, req: GraphRequest, device_id: str):
    if _DELTA.match(device_id):
        raise bad_request(f"Resource not found for the segment '{device_id}'.", code="BadRequest")
    device = ctx.tenant.managed_devices.get(device_id.lower())
    if device is None:
        raise intune_error(req, 404, "ResourceNotFound")
    return device


@router.route("GET", "/deviceManagement/managedDevices/{id}")
def get_managed_device(ctx: ServerContext, req: GraphRequest, id: str) -> GraphResponse:
    device = _managed_device(ctx, req, id)
    select = _select(req, "managedDevice")
    props = {
        **_listed("managedDevice", device.props),
        **{n: device.props[n] for n in select or () if n in device.props},
    }
    body = {
        "@odata.context": context_url(req.base_url, "deviceManagement/managedDevices", select, entity=True)
    }
    body.update(project_props("managedDevice", device.props["id"], props, select))
    return GraphResponse(200, body, content_type=ODATA_JSON)


@router.route("POST", "/deviceManagement/managedDevices/{id}/syncDevice")
def sync_device(ctx: ServerContext, req: GraphRequest, id: str) -> GraphResponse:
    """ "If successful, this action returns a 204 No Content response code."
    [Learn: graph/api/intune-devices-manageddevice-syncdevice]. An Intune write (its own budget).

    The device is asked to check in; here it does so at once: ``lastSyncDateTime`` becomes now, and a Windows
    device reports its protection state again (``lastReportedDateTime``). How soon a real device checks in
    is UNCONFIRMED (minutes, by Intune's own documentation of device sync)."""
    device = _managed_device(ctx, req, id)
    now = utc_now()
    device.props["lastSyncDateTime"] = now
    if device.windows_protection_state is not None:
        device.windows_protection_state["lastReportedDateTime"] = now
    return GraphResponse(204)


@router.route("DELETE", "/deviceManagement/managedDevices/{id}")
def delete_managed_device(ctx: ServerContext, req: GraphRequest, id: str) -> GraphResponse:
    """ "If successful, this method returns a 204 No Content response code."
    [Learn: graph/api/intune-devices-manageddevice-delete]. The device leaves the tenant's lists."""
    device = _managed_device(ctx, req, id)
    del ctx.tenant.managed_devices[device.props["id"]]
    return GraphResponse(204)


@router.route("GET", "/deviceManagement/managedDevices/{id}/windowsProtectionState")
def get_windows_protection_state(ctx: ServerContext, req: GraphRequest, id: str) -> GraphResponse:
    device = _managed_device(ctx, req, id)
    if device.windows_protection_state is None:
        # Non-Windows devices have none: 404 as observed (secmgmt-insights-connector#145).
        raise intune_error(req, 404, "ResourceNotFound")
    select = _select(req, "windowsProtectionState")
    suffix = f"({','.join(select)})" if select else ""
    body = {
        "@odata.context": f"{req.base_url}/$metadata#deviceManagement/managedDevices('{device.props['id']}')"
        f"/windowsProtectionState{suffix}/$entity"
    }
    state = device.windows_protection_state
    body.update(project_props("windowsProtectionState", state["id"], state, select))
    return GraphResponse(200, body, content_type=ODATA_JSON)


# -------------------------------------------------------------------------------------- detected apps


def _detected_app(ctx: ServerContext, req: GraphRequest, app_id: str):
    app = ctx.tenant.detected_apps.get(app_id.lower())
    if app is None:
        raise intune_error(req, 404, "ResourceNotFound")
    return app


@router.route("GET", "/deviceManagement/detectedApps")
def list_detected_apps(ctx: ServerContext, req: GraphRequest) -> GraphResponse:
    apps = [app.props for app in ctx.tenant.detected_apps.values()]
    return _page(ctx, req, apps, "detectedApp", "deviceManagement/detectedApps")


@router.route("GET", "/deviceManagement/detectedApps/{id}")
def get_detected_app(ctx: ServerContext, req: GraphRequest, id: str) -> GraphResponse:
    app = _detected_app(ctx, req, id)
    select = _select(req, "detectedApp")
    body = {"@odata.context": context_url(req.base_url, "deviceManagement/detectedApps", select, entity=True)}
    body.update(project_props("detectedApp", app.props["id"], app.props, select))
    return GraphResponse(200, body, content_type=ODATA_JSON)


@router.route("GET", "/deviceManagement/detectedApps/{id}/managedDevices")
def list_detected_app_devices(ctx: ServerContext, req: GraphRequest, id: str) -> GraphResponse:
    app = _detected_app(ctx, req, id)
    devices = [
        ctx.tenant.managed_devices[device_id].props
        for device_id in app.device_ids
        if device_id in ctx.tenant.managed_devices
    ]
    entity_set = f"deviceManagement/detectedApps('{app.props['id']}')/managedDevices"
    return _page(ctx, req, devices, "managedDevice", entity_set)
