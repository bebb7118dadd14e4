"""Application permissions: which app roles (the ``roles`` claim of an app-only token) allow an operation.

Graph answers a caller without a suitable permission with 403 ``Authorization_RequestDenied``,
"Insufficient privileges to complete the operation." [GRAPH.md section 6]. Each operation lists its least
privileged application permission and the broader ones that include it [GRAPH.md section 7; Learn's
permission tables]. Operations that are not listed here are allowed (so an unlisted route never breaks).

Facts used beyond GRAPH.md (Learn's permission reference): ``Directory.ReadWrite.All`` "does not allow
user or group deletion" and cannot reset passwords, so it is absent from those rows; deleting a user also
accepts ``User.DeleteRestore.All``; creating a group accepts ``Group.Create``.

A requirement is a list of role sets; the caller needs at least one role of *each* set (a PATCH that
changes both the password and the department needs a password permission and a user-write permission).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from localgraph.errors import GraphError
from localgraph.routing import GraphRequest

Roles = frozenset[str]
Requirement = list[Roles]

DIRECTORY_READ: Roles = frozenset({"Directory.Read.All", "Directory.ReadWrite.All"})
USER_READ: Roles = frozenset({"User.ReadBasic.All", "User.Read.All", "User.ReadWrite.All"}) | DIRECTORY_READ
USER_DELTA: Roles = USER_READ - {
    "User.ReadBasic.All"
}  # User.ReadBasic.All is not listed for delta [GRAPH.md 3]
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
SIGN_IN_ACTIVITY: Roles = frozenset({"AuditLog.Read.All"})  # signInActivity needs it [GRAPH.md 8]

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


def _patch_user(req: GraphRequest) -> Requirement:
    """PATCH /users/{id}: the password and accountEnabled have their own least-privileged permissions."""
    try:
        body = json.loads(req.body) if req.body.strip() else {}
    except ValueError:
        body = {}
    if not isinstance(body, dict) or not body:
        return [USER_WRITE]
    needs: Requirement = []
    if "passwordProfile" in body:
        needs.append(USER_PASSWORD)
    if "accountEnabled" in body:
        needs.append(USER_ENABLE)
    if set(body) - {"passwordProfile", "accountEnabled"}:
        needs.append(USER_WRITE)
    return needs


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


def check(req: GraphRequest, template: str) -> None:
    """Raise 403 ``Authorization_RequestDenied`` if the caller's app roles do not allow the operation."""
    require(req, *required(req, template))
