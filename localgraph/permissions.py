"""Application permissions: which app roles (the ``roles`` claim of an app-only token) allow an operation.

Graph answers a caller without a suitable permission with 403 ``Authorization_RequestDenied``,
"Insufficient privileges to complete the operation." [docs/graph-behaviour.md section 6]. Each operation lists its least
privileged application permission and the broader ones that include it [docs/graph-behaviour.md section 7; Learn's
permission tables]. Operations that are not listed here are allowed (so an unlisted route never breaks).

Facts used beyond docs/graph-behaviour.md (Learn's permission reference): ``Directory.ReadWrite.All`` "does not allow
user or group deletion" and cannot reset passwords, so it is absent from those rows; deleting a user also
accepts ``User.DeleteRestore.All``; creating a group accepts ``Group.Create``.

A requirement is a list of role sets; the caller needs at least one role of *each* set (a PATCH that
changes both the password and the department needs a password permission and a user-write permission).

:func:`check` is called by the request pipeline (:mod:`localgraph.admission`) for every request and every
``$batch`` step before the handler runs; handlers make no permission checks of their own. Besides the
operation's roles it refines by the body (the password, ``accountEnabled``, properties app-only callers can't
set), by the object targeted (deleting or restoring an object needs the permission for its kind) and refuses
what application permissions can't do at all.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from localgraph.context import ServerContext
from localgraph.errors import GraphError
from localgraph.query import SINGLE_USER_ONLY
from localgraph.routing import GraphRequest
from localgraph.tenant import DirObject

Roles = frozenset[str]
Requirement = list[Roles]

DIRECTORY_READ: Roles = frozenset({"Directory.Read.All", "Directory.ReadWrite.All"})
USER_READ: Roles = frozenset({"User.ReadBasic.All", "User.Read.All", "User.ReadWrite.All"}) | DIRECTORY_READ
USER_DELTA: Roles = USER_READ - {
    "User.ReadBasic.All"
}  # User.ReadBasic.All is not listed for delta [docs/graph-behaviour.md section 3]
GROUP_READ: Roles = (
    frozenset({"Group.Read.All", "GroupMember.Read.All", "Group.ReadWrite.All", "GroupMember.ReadWrite.All"})
    | DIRECTORY_READ
)
DEVICE_READ: Roles = frozenset({"Device.Read.All", "Device.ReadWrite.All"}) | DIRECTORY_READ
APP_READ: Roles = (
    frozenset({"Application.Read.All", "Application.ReadWrite.All", "Application.ReadWrite.OwnedBy"})
    | DIRECTORY_READ
)
CONTACT_READ: Roles = frozenset({"OrgContact.Read.All"}) | DIRECTORY_READ
ORG_READ: Roles = frozenset({"Organization.Read.All", "Organization.ReadWrite.All"}) | DIRECTORY_READ
INTUNE_READ: Roles = frozenset(
    {"DeviceManagementManagedDevices.Read.All", "DeviceManagementManagedDevices.ReadWrite.All"}
)
USER_PHOTO_READ: Roles = frozenset({"ProfilePhoto.Read.All", "ProfilePhoto.ReadWrite.All"}) | USER_READ
GROUP_PHOTO_READ: Roles = frozenset({"ProfilePhoto.Read.All", "ProfilePhoto.ReadWrite.All"}) | GROUP_READ
SIGN_IN_ACTIVITY: Roles = frozenset(
    {"AuditLog.Read.All"}
)  # signInActivity needs it [docs/graph-behaviour.md section 8]

USER_WRITE: Roles = frozenset({"User.ReadWrite.All", "Directory.ReadWrite.All"})
USER_DELETE: Roles = frozenset({"User.DeleteRestore.All", "User.ReadWrite.All"})
USER_PASSWORD: Roles = frozenset({"User-PasswordProfile.ReadWrite.All", "User.ReadWrite.All"})
USER_ENABLE: Roles = frozenset(
    {"User.EnableDisableAccount.All", "User.ReadWrite.All", "Directory.ReadWrite.All"}
)
USER_PHOTO_WRITE: Roles = frozenset({"ProfilePhoto.ReadWrite.All", "User.ReadWrite.All"})
GROUP_CREATE: Roles = frozenset({"Group.Create", "Group.ReadWrite.All", "Directory.ReadWrite.All"})
GROUP_WRITE: Roles = frozenset({"Group.ReadWrite.All", "Directory.ReadWrite.All"})
GROUP_DELETE: Roles = frozenset({"Group.ReadWrite.All"})
GROUP_MEMBER_WRITE: Roles = frozenset(
    {"GroupMember.ReadWrite.All", "Group.ReadWrite.All", "Directory.ReadWrite.All"}
)
APP_WRITE: Roles = frozenset({"Application.ReadWrite.OwnedBy", "Application.ReadWrite.All"})
DEVICE_WRITE: Roles = frozenset({"Device.ReadWrite.All", "Directory.ReadWrite.All"})
DEVICE_DELETE: Roles = frozenset({"Device.ReadWrite.All"})

# Deleting or restoring an object, by its kind (deleted items, DELETE .../members/{id} without $ref).
DELETE_BY_KIND: dict[str, Roles] = {
    "user": USER_DELETE,
    "group": GROUP_DELETE,
    "application": APP_WRITE,
    "servicePrincipal": APP_WRITE,
    "device": DEVICE_DELETE,
}
ANY_DELETE: Roles = frozenset().union(*DELETE_BY_KIND.values())

# GET: by the first segment of the route template.
READS: dict[str, Roles] = {
    "users": USER_READ,
    "groups": GROUP_READ,
    "devices": DEVICE_READ,
    "applications": APP_READ,
    "servicePrincipals": APP_READ,
    "contacts": CONTACT_READ,
    "directoryObjects": DIRECTORY_READ,
    "directory": USER_READ | GROUP_READ | APP_READ | DEVICE_READ,  # deleted items of any kind
    "deviceManagement": INTUNE_READ,
    "organization": ORG_READ,
}
READ_TEMPLATES: dict[str, Roles] = {
    "/users/delta": USER_DELTA,
    "/users/{id}/photo": USER_PHOTO_READ,
    "/users/{id}/photo/$value": USER_PHOTO_READ,
    "/groups/{id}/photo": GROUP_PHOTO_READ,
    "/groups/{id}/photo/$value": GROUP_PHOTO_READ,
}


def _body(req: GraphRequest) -> dict[str, object]:
    """The request's JSON object, or {} (a malformed body is the handler's 400 to give)."""
    try:
        body = json.loads(req.body) if req.body.strip() else {}
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _patch_user(req: GraphRequest) -> Requirement:
    """PATCH /users/{id}: the password and accountEnabled have their own least-privileged permissions."""
    body = _body(req)
    if not body:
        return [USER_WRITE]
    needs: Requirement = []
    if "passwordProfile" in body:
        needs.append(USER_PASSWORD)
    if "accountEnabled" in body:
        needs.append(USER_ENABLE)
    if set(body) - {"passwordProfile", "accountEnabled"}:
        needs.append(USER_WRITE)
    return needs


# A change-notification subscription needs the read permission of its resource: User.Read.All for users,
# Group.Read.All for groups (GroupMember.Read.All is not enough), or a broader one that includes it
# [docs/graph-behaviour.md section 12; Learn: subscription-post-subscriptions].
SUBSCRIBE: dict[str, Roles] = {
    "users": frozenset({"User.Read.All", "User.ReadWrite.All"}) | DIRECTORY_READ,
    "groups": frozenset({"Group.Read.All", "Group.ReadWrite.All"}) | DIRECTORY_READ,
}


def _subscribe(req: GraphRequest) -> Requirement:
    """POST /subscriptions: the permission follows the body's ``resource`` (a resource that names neither
    users nor groups is the handler's 400)."""
    resource = _body(req).get("resource")
    collection = resource.strip().lstrip("/").split("/")[0].lower() if isinstance(resource, str) else ""
    return [SUBSCRIBE[collection]] if collection in SUBSCRIBE else []


WRITES: dict[tuple[str, str], Requirement | Callable[[GraphRequest], Requirement]] = {
    ("POST", "/users"): [USER_WRITE],
    ("PATCH", "/users/{id}"): _patch_user,
    ("DELETE", "/users/{id}"): [USER_DELETE],
    ("PUT", "/users/{id}/manager/$ref"): [USER_WRITE],
    ("DELETE", "/users/{id}/manager/$ref"): [USER_WRITE],
    ("PUT", "/users/{id}/photo/$value"): [USER_PHOTO_WRITE],
    ("PATCH", "/users/{id}/photo/$value"): [USER_PHOTO_WRITE],
    ("DELETE", "/users/{id}/photo/$value"): [USER_PHOTO_WRITE],
    ("POST", "/groups"): [GROUP_CREATE],
    ("PATCH", "/groups/{id}"): [GROUP_WRITE],
    ("DELETE", "/groups/{id}"): [GROUP_DELETE],
    ("POST", "/groups/{id}/members/$ref"): [GROUP_MEMBER_WRITE],
    ("DELETE", "/groups/{id}/members/{memberId}/$ref"): [GROUP_MEMBER_WRITE],
    ("DELETE", "/groups/{id}/members/{memberId}"): [ANY_DELETE],  # refined by the member's kind
    ("POST", "/groups/{id}/owners/$ref"): [GROUP_WRITE],
    ("DELETE", "/groups/{id}/owners/{ownerId}/$ref"): [GROUP_WRITE],
    ("POST", "/applications"): [APP_WRITE],
    ("PATCH", "/applications/{id}"): [APP_WRITE],
    ("DELETE", "/applications/{id}"): [APP_WRITE],
    ("POST", "/applications/{id}/extensionProperties"): [APP_WRITE],
    ("DELETE", "/applications/{id}/extensionProperties/{propertyId}"): [APP_WRITE],
    ("POST", "/servicePrincipals"): [APP_WRITE],
    ("PATCH", "/servicePrincipals/{id}"): [APP_WRITE],
    ("DELETE", "/servicePrincipals/{id}"): [APP_WRITE],
    ("PATCH", "/devices/{id}"): [DEVICE_WRITE],
    ("DELETE", "/devices/{id}"): [DEVICE_DELETE],
    ("POST", "/directory/deletedItems/{id}/restore"): [ANY_DELETE],  # refined by the object's kind
    ("DELETE", "/directory/deletedItems/{id}"): [ANY_DELETE],
    ("POST", "/directoryObjects/getByIds"): [DIRECTORY_READ],
    ("POST", "/subscriptions"): _subscribe,
}


def required(req: GraphRequest, template: str) -> Requirement:
    """The role sets an operation needs ([] when it is not governed here)."""
    rule = WRITES.get((req.method, template))
    if rule is not None:
        return rule(req) if callable(rule) else rule
    if req.method != "GET":
        return []
    if template in READ_TEMPLATES:
        needs = [READ_TEMPLATES[template]]
    else:
        family = template.strip("/").split("/")[0]
        if family == "users" and template.endswith("/delta"):
            needs = [USER_DELTA]
        elif family in READS:
            needs = [READS[family]]
        else:
            return []
    if template in ("/users", "/users/{id}") and "signInActivity" in (
        req.query.get("$select", "") + req.query.get("$filter", "")
    ):
        needs.append(SIGN_IN_ACTIVITY)
    return needs


def denied() -> GraphError:
    return GraphError(
        403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation."
    )


def require(req: GraphRequest, *role_sets: Roles) -> None:
    """Raise Graph's 403 unless the caller holds a role from each set."""
    if req.caller is None:
        return
    for roles in role_sets:
        if not roles & req.caller.roles:
            raise denied()


# Operations application permissions can't do at all: "Application: Not supported" for POST /devices;
# "Group photos are not supported with application permissions" [docs/graph-behaviour.md section 7]. The 403 for them is
# inferred; the exact error is UNCONFIRMED.
APP_ONLY_REFUSED: frozenset[tuple[str, str]] = frozenset({
    ("POST", "/devices"),
    ("PUT", "/groups/{id}/photo/$value"),
    ("PATCH", "/groups/{id}/photo/$value"),
    ("DELETE", "/groups/{id}/photo/$value"),
})  # fmt: skip
# User properties that "can't be set with app permissions" [docs/graph-behaviour.md section 7]; the error is UNCONFIRMED.
SINGLE_USER_ONLY_WRITES: frozenset[tuple[str, str]] = frozenset(
    {("POST", "/users"), ("PATCH", "/users/{id}")}
)


def _deleted_item(ctx: ServerContext, params: dict[str, str]) -> DirObject | None:
    """The deleted object a deleted-items operation targets (None: the handler answers 404)."""
    obj = ctx.tenant.objects.get(params["id"].lower())
    return obj if obj is not None and obj.deleted is not None else None


def _member_to_delete(ctx: ServerContext, params: dict[str, str]) -> DirObject | None:
    """The member ``DELETE /groups/{id}/members/{memberId}`` (without ``$ref``) would delete (None: the
    handler answers 400 or 404)."""
    group = ctx.tenant.objects.get(params["id"].lower())
    if group is None or group.kind != "group" or group.deleted is not None:
        return None
    member_id = params["memberId"].lower()
    if member_id not in ctx.tenant.members.get(group.id, {}):
        return None
    member = ctx.tenant.objects.get(member_id)
    return member if member is not None and member.deleted is None else None


# Operations whose permission depends on the object they target: deleting or restoring it needs the
# permission to delete its kind (none listed for a kind: refused) [docs/graph-behaviour.md section 7].
TARGETED: dict[tuple[str, str], Callable[[ServerContext, dict[str, str]], DirObject | None]] = {
    ("POST", "/directory/deletedItems/{id}/restore"): _deleted_item,
    ("DELETE", "/directory/deletedItems/{id}"): _deleted_item,
    ("DELETE", "/groups/{id}/members/{memberId}"): _member_to_delete,
}


def check(ctx: ServerContext, req: GraphRequest, template: str, params: dict[str, str]) -> None:
    """Raise 403 ``Authorization_RequestDenied`` if the caller's app roles do not allow the operation."""
    require(req, *required(req, template))
    key = (req.method, template)
    app_only = req.caller is not None and req.caller.app_only
    if app_only and key in APP_ONLY_REFUSED:
        raise denied()
    if app_only and key in SINGLE_USER_ONLY_WRITES and SINGLE_USER_ONLY & _body(req).keys():
        raise denied()
    target = TARGETED.get(key)
    if target is not None:
        obj = target(ctx, params)
        if obj is not None:
            require(req, DELETE_BY_KIND.get(obj.kind, frozenset()))
