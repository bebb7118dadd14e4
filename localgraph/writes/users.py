"""``POST /users`` and ``PATCH /users/{id}`` [docs/graph-behaviour.md section 7]."""

from __future__ import annotations

import uuid
from typing import Any

from localgraph.context import ServerContext
from localgraph.errors import bad_request
from localgraph.routing import GraphRequest, GraphResponse, Router
from localgraph.tenant import utc_now
from localgraph.writes.objects import (
    SYNC_MASTERED_MESSAGE,
    created_response,
    object_body,
    security_identifier,
    synced,
)
from localgraph.writes.properties import (
    check_mail_nickname,
    check_password,
    check_upn,
    drop_null_keys,
    invalid_value,
    merge_complex,
    require_bool,
    require_text,
    validate,
)

router = Router()

# passwordProfile's flags (https://learn.microsoft.com/graph/api/resources/passwordprofile): written with the
# password on create and on a reset, where an omitted flag is false. The local Graph keeps them on the object
# (DirObject.password_flags) for tests to see what was sent, and returns them nowhere, like the password.
PASSWORD_FLAGS = ("forceChangePasswordNextSignIn", "forceChangePasswordNextSignInWithMfa")


def password_flags(profile: dict[str, Any]) -> dict[str, bool]:
    return {flag: profile.get(flag) is True for flag in PASSWORD_FLAGS}


# AD-mastered user properties: for a synced user the source of truth is on-premises AD, so Graph refuses
# them (passwordProfile and accountEnabled included) [docs/graph-behaviour.md section 8]. Cloud-only attributes
# (usageLocation, employeeLeaveDateTime, passwordPolicies, cloud directory extensions...) stay writable.
# The exact set is UNCONFIRMED; it follows what Entra Connect synchronizes.
USER_SYNC_MASTERED = frozenset({
    "displayName", "givenName", "surname", "mail", "mailNickname", "userPrincipalName", "jobTitle",
    "department", "companyName", "officeLocation", "city", "country", "state", "streetAddress", "postalCode",
    "businessPhones", "mobilePhone", "faxNumber", "employeeId", "employeeType", "employeeHireDate",
    "employeeOrgData", "onPremisesImmutableId", "onPremisesExtensionAttributes", "accountEnabled",
    "passwordProfile", "otherMails", "showInAddressList", "preferredLanguage", "imAddresses", "userType",
})  # fmt: skip


@router.route("POST", "/users")
def create_user(ctx: ServerContext, req: GraphRequest) -> GraphResponse:
    """[docs/graph-behaviour.md section 7] Required: accountEnabled, displayName, mailNickname, passwordProfile (with a
    password), userPrincipalName. 201 with the default properties; the password is never returned."""
    tenant = ctx.tenant
    changes = validate(ctx, req, "user", object_body(req), creating=True)
    require_bool(changes, "accountEnabled", "user")
    require_text(changes, "displayName", "user", max_length=256)
    if "mailNickname" not in changes:
        raise invalid_value("mailNickname", "user")
    check_mail_nickname(changes["mailNickname"], "user")
    profile = changes.pop("passwordProfile", None) or {}
    if not profile.get("password"):
        raise bad_request("A password must be specified to create a new user.")
    if "userPrincipalName" not in changes:
        raise invalid_value("userPrincipalName", "user")
    check_upn(tenant, changes["userPrincipalName"])
    password = check_password(profile["password"])
    upn = changes["userPrincipalName"]
    object_id = str(uuid.uuid4())
    props: dict[str, Any] = {
        "id": object_id,
        "businessPhones": [],
        "otherMails": [],
        "proxyAddresses": [],
        "imAddresses": [],
        "assignedLicenses": [],
        "identities": [{"signInType": "userPrincipalName", "issuer": tenant.domain, "issuerAssignedId": upn}],
        "userType": "Member",
        "securityIdentifier": security_identifier(object_id),
        "lastPasswordChangeDateTime": utc_now(),
        **changes,
    }
    obj = tenant.create(
        "user", props
    )  # a duplicate UPN raises ObjectConflict [docs/graph-behaviour.md section 6]
    obj.password = password
    obj.password_flags = password_flags(profile)
    return created_response(ctx, req, obj)


@router.route("PATCH", "/users/{id}")
def update_user(ctx: ServerContext, req: GraphRequest, id: str) -> GraphResponse:
    """[docs/graph-behaviour.md section 7] 204. displayName can't be cleared, mail can't be null; passwordProfile resets
    the password; onPremisesExtensionAttributes merge per key; a directory extension set to null is
    removed. AD-mastered properties of a synced user are refused [docs/graph-behaviour.md section 8]."""
    user = ctx.tenant.find_user(id)
    body = object_body(req)
    changes = validate(ctx, req, "user", body, creating=False)
    if synced(user) and USER_SYNC_MASTERED & changes.keys():
        raise bad_request(SYNC_MASTERED_MESSAGE)
    for name in ("displayName", "mail", "userPrincipalName"):
        if name in changes:
            require_text(changes, name, "user", max_length=256 if name == "displayName" else None)
    if "accountEnabled" in changes:
        require_bool(changes, "accountEnabled", "user")
    if "mailNickname" in changes:
        check_mail_nickname(changes["mailNickname"], "user")
    if "userPrincipalName" in changes:
        check_upn(ctx.tenant, changes["userPrincipalName"])
    limits = {"employeeId": 16, "companyName": 64}  # [docs/graph-behaviour.md section 7]
    for name, limit in limits.items():
        if isinstance(changes.get(name), str) and len(changes[name]) > limit:
            raise invalid_value(name, "user")
    if len(changes.get("otherMails") or []) > 250:
        raise invalid_value("otherMails", "user")
    password = None
    flags = None
    if "passwordProfile" in changes:
        profile = changes.pop("passwordProfile") or {}
        flags = password_flags(profile)
        if profile.get("password") is not None:
            password = check_password(profile["password"])
            changes["lastPasswordChangeDateTime"] = utc_now()
    if "userPrincipalName" in changes:
        # The userPrincipalName sign-in identity follows the UPN.
        identities = [dict(i) for i in user.props.get("identities") or []]
        for identity in identities:
            if identity.get("signInType") == "userPrincipalName":
                identity["issuerAssignedId"] = changes["userPrincipalName"]
        if identities != user.props.get("identities"):
            changes["identities"] = identities
    merge_complex(user, changes)
    ctx.tenant.update(user.id, changes)  # a duplicate UPN raises ObjectConflict
    drop_null_keys(user)
    if password is not None:
        user.password = password
    if flags is not None:
        user.password_flags = flags
    return GraphResponse(204)
