"""Directory writes: create, update, delete and restore objects, membership and manager links, photos,
application extension properties, ``getByIds`` [GRAPH.md sections 6, 7 and 8].

Every change goes through the :class:`~localgraph.tenant.Tenant` mutations, so it is in the change log and
later reads and delta rounds see it. Handlers validate the way Graph does, with Graph's status codes,
error codes and (where GRAPH.md quotes them) messages:

- Property names are checked against the entity type in Graph's metadata (:mod:`localgraph.schema`):
  an unknown name is "Property 'x' does not exist as a declared property or extension property.";
  a directory extension ``extension_{appId}_{name}`` must be registered (``POST
  /applications/{id}/extensionProperties``) for that kind of object; read-only properties (ids,
  timestamps, sync-owned ``onPremises*``, ``proxyAddresses``, ...) are "Property 'x' is read-only and
  cannot be set."; a value of the wrong JSON type is "Invalid value specified for property 'x' of
  resource 'User'.".
- Objects synced from on-premises AD (``onPremisesSyncEnabled``) refuse changes to AD-mastered
  properties and memberships with Graph's "Unable to update the specified properties for on-premises
  mastered Directory Sync objects ..." [GRAPH.md section 8].
- Writes are not idempotent: a retried create meets ``ObjectConflict`` [GRAPH.md rule 8].

Choices where GRAPH.md is silent are marked UNCONFIRMED next to the code.

:func:`admit` is the pipeline's pre-handler check (called by ``server.dispatch``): application
permissions (:mod:`localgraph.permissions`) and, when ``settings.replication_delay_ms`` is set, the
eventual-consistency window in which a just-created object still answers 404 to a GET by id
[GRAPH.md rule 8].
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
import time
import uuid
import weakref
from datetime import datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from localgraph import permissions, schema
from localgraph.context import ServerContext
from localgraph.errors import GraphError, bad_request, conflict, not_found
from localgraph.query import SINGLE_USER_ONLY, project
from localgraph.reads import ODATA_JSON
from localgraph.routing import GraphRequest, GraphResponse, Router
from localgraph.tenant import COLLECTIONS, KIND_TO_COLLECTION, DirObject, Tenant, utc_now

router = Router()

RESOURCE = {"user": "User", "group": "Group", "device": "Device", "application": "Application",
            "servicePrincipal": "ServicePrincipal", "orgContact": "OrgContact"}  # fmt: skip
# extensionProperty.targetObjects names [GRAPH.md section 8]; service principals are not a target.
EXTENSION_TARGETS = {"user": "User", "group": "Group", "device": "Device", "application": "Application"}
EXTENSION_TARGET_NAMES = ("User", "Group", "AdministrativeUnit", "Application", "Device", "Organization")
EXTENSION_DATA_TYPES = ("Binary", "Boolean", "DateTime", "Integer", "LargeInteger", "String")

# Read-only properties per kind (Learn's resource pages mark them "Read-only"; ids, timestamps,
# licence state, sync-owned onPremises* properties, provisioning errors). Writing one is a 400.
_ON_PREMISES_SYNC_OWNED = {
    "onPremisesDistinguishedName", "onPremisesDomainName", "onPremisesLastSyncDateTime",
    "onPremisesNetBiosName", "onPremisesProvisioningErrors", "onPremisesSamAccountName",
    "onPremisesSecurityIdentifier", "onPremisesSyncEnabled", "onPremisesUserPrincipalName",
}  # fmt: skip
READ_ONLY: dict[str, frozenset[str]] = {
    "user": frozenset({
        "id", "deletedDateTime", "createdDateTime", "assignedLicenses", "assignedPlans", "provisionedPlans",
        "licenseAssignmentStates", "creationType", "externalUserState", "externalUserStateChangeDateTime",
        "lastPasswordChangeDateTime", "proxyAddresses", "securityIdentifier", "serviceProvisioningErrors",
        "signInActivity", "signInSessionsValidFromDateTime", "isManagementRestricted",
        "legalAgeGroupClassification", "identityParentId", *_ON_PREMISES_SYNC_OWNED,
    }),
    "group": frozenset({
        "id", "deletedDateTime", "createdDateTime", "expirationDateTime", "renewedDateTime", "mail",
        "proxyAddresses", "securityIdentifier", "serviceProvisioningErrors", "assignedLicenses",
        "hasMembersWithLicenseErrors", "licenseProcessingState", "isManagementRestricted", "organizationId",
        "onPremisesExtensionAttributes", "unseenCount", "unseenConversationsCount", "unseenMessagesCount",
        "isSubscribedByMail", "isFavorite", "isArchived", *_ON_PREMISES_SYNC_OWNED,
    }),
    "device": frozenset({
        "id", "deletedDateTime", "approximateLastSignInDateTime", "complianceExpirationDateTime",
        "isCompliant", "isManaged", "isManagementRestricted", "isRooted", "managementType", "enrollmentType",
        "mdmAppId", "registrationDateTime", "systemLabels", "onPremisesLastSyncDateTime",
        "onPremisesSecurityIdentifier", "onPremisesSyncEnabled",
    }),
    "application": frozenset({
        "id", "deletedDateTime", "appId", "createdDateTime", "publisherDomain", "certification",
        "disabledByMicrosoftStatus", "createdByAppId", "verifiedPublisher",
        "passwordCredentials",  # "can't be set at creation (use addPassword)" [GRAPH.md 7]; UNCONFIRMED error
    }),
    "servicePrincipal": frozenset({
        "id", "deletedDateTime", "appDisplayName", "appOwnerOrganizationId", "createdByAppId",
        "disabledByMicrosoftStatus", "signInAudience", "verifiedPublisher", "passwordCredentials",
    }),
}  # fmt: skip
# Settable when creating, read-only afterwards.
CREATE_ONLY: dict[str, frozenset[str]] = {
    "user": frozenset(),
    "group": frozenset({"isAssignableToRole"}),
    "device": frozenset({"deviceId", "trustType"}),
    "application": frozenset(),
    "servicePrincipal": frozenset({"appId"}),
}
# Properties the v1.0 CSDL extract lacks but Graph documents as writable: device extensionAttributes
# (Learn device-update, "Write extensionAttributes on a device").
EXTRA_PROPERTIES = {"device": {"extensionAttributes": "onPremisesExtensionAttributes"}}
MERGED_COMPLEX = {"onPremisesExtensionAttributes", "extensionAttributes"}  # PATCH merges per key; null clears

# AD-mastered user properties: for a synced user the source of truth is on-premises AD, so Graph refuses
# them (passwordProfile and accountEnabled included) [GRAPH.md section 8]. Cloud-only attributes
# (usageLocation, employeeLeaveDateTime, passwordPolicies, cloud directory extensions...) stay writable.
# The exact set is UNCONFIRMED; it follows what Entra Connect synchronizes.
USER_SYNC_MASTERED = frozenset({
    "displayName", "givenName", "surname", "mail", "mailNickname", "userPrincipalName", "jobTitle",
    "department", "companyName", "officeLocation", "city", "country", "state", "streetAddress", "postalCode",
    "businessPhones", "mobilePhone", "faxNumber", "employeeId", "employeeType", "employeeHireDate",
    "employeeOrgData", "onPremisesImmutableId", "onPremisesExtensionAttributes", "accountEnabled",
    "passwordProfile", "otherMails", "showInAddressList", "preferredLanguage", "imAddresses", "userType",
})  # fmt: skip
GROUP_SYNC_MASTERED = frozenset({
    "displayName", "description", "mailNickname", "mailEnabled", "securityEnabled", "groupTypes",
    "visibility",
})  # fmt: skip
SYNC_MASTERED_MESSAGE = (
    "Unable to update the specified properties for on-premises mastered Directory Sync objects or objects "
    "currently undergoing migration."
)
WEAK_PASSWORD = (
    "The specified password does not comply with password complexity requirements. "
    "Please provide a different password."
)
MAIL_ENABLED_WRITE = (
    "The service does not currently support writes of mail-enabled groups. Please ensure that the "
    "mail-enablement property is unset and the security-enablement property is set."
)  # 3P capture (microsoft-graph-docs#372)
EXCHANGE_GROUP = "Cannot Update a mail-enabled security groups and or distribution list."  # 3P, many
TOO_MANY_LINKS = "A resource cannot contain more than 20 link changes."  # 3P (microsoft-graph-docs#6016)
MAX_LINKS = 20  # members@odata.bind and owners@odata.bind together [GRAPH.md 7; docs#6016 maintainer reply]
MAX_PHOTO_BYTES = 4 * 1024 * 1024  # "limit of 4 MB on the total size of each REST request" [GRAPH.md 7]
PHOTO_TYPES = ("image/jpeg", "image/png")
IMAGE_NOT_FOUND = (
    "Exception of type 'Microsoft.Fast.Profile.Core.Exception.ImageNotFoundException' was thrown."
)
MAX_GET_BY_IDS = 1000  # Learn directoryobject-getbyids: "up to 1000 ids"

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_UPN_ALIAS = re.compile(r"^[A-Za-z0-9'.\-_!#^~]{1,64}$")  # [GRAPH.md 7] allowed characters
_NICKNAME_FORBIDDEN = set('@()\\[]";:<>, ')  # group mailNickname rule [GRAPH.md 7]; '.' is added for groups
_GRAPH_HOSTS = {"graph.microsoft.com", "graph.microsoft.us", "dod-graph.microsoft.us",
                "microsoftgraph.chinacloudapi.cn"}  # fmt: skip
_REF_COLLECTIONS = {"directoryobjects": None, "users": "user", "groups": "group", "devices": "device",
                    "serviceprincipals": "servicePrincipal", "contacts": "orgContact"}  # fmt: skip
_MEMBER_KINDS = ("user", "group", "device", "orgContact", "servicePrincipal")
_OWNER_KINDS = ("user", "servicePrincipal")


# ------------------------------------------------------------------------------------- admission


# Graph-created objects and when (monotonic seconds), per tenant: the replication window.
_CREATED: weakref.WeakKeyDictionary[Tenant, dict[str, float]] = weakref.WeakKeyDictionary()
_BY_ID_TEMPLATES = frozenset(f"/{collection}/{{id}}" for collection in COLLECTIONS) | {
    "/directoryObjects/{id}"
}


def admit(ctx: ServerContext, req: GraphRequest, template: str, params: dict[str, str]) -> None:
    """Checks the pipeline makes after the route matched and before the handler runs."""
    permissions.check(req, template)
    delay_ms = ctx.settings.replication_delay_ms
    if delay_ms > 0 and req.method == "GET" and template in _BY_ID_TEMPLATES:
        created = _CREATED.get(ctx.tenant, {}).get(params["id"].lower())
        if created is not None and (time.monotonic() - created) * 1000 < delay_ms:
            # A read served by a replica the create has not reached yet [GRAPH.md rule 8].
            raise not_found(params["id"])


def _note_created(ctx: ServerContext, obj: DirObject) -> None:
    if ctx.settings.replication_delay_ms <= 0:
        return
    created = _CREATED.setdefault(ctx.tenant, {})
    now = time.monotonic()
    created[obj.id] = now
    if obj.kind == "user":
        created[obj.props["userPrincipalName"].lower()] = now


# ------------------------------------------------------------------------------------------ helpers


def _invalid(name: str, kind: str) -> GraphError:
    return bad_request(
        f"Invalid value specified for property '{name}' of resource '{RESOURCE.get(kind, kind)}'."
    )


def _unknown(name: str) -> GraphError:
    return bad_request(f"Property '{name}' does not exist as a declared property or extension property.")


def _read_only(name: str) -> GraphError:
    return bad_request(f"Property '{name}' is read-only and cannot be set.")


def _object_body(req: GraphRequest) -> dict[str, Any]:
    body = req.json()
    if not isinstance(body, dict):
        # UNCONFIRMED text: Graph's OData reader rejects a non-object entity payload with a 400.
        raise GraphError(400, "BadRequest", "The request body must be a JSON object.")
    return body


def _lookup(ctx: ServerContext, kind: str, key: str) -> DirObject:
    """Users by id or userPrincipalName; other objects by id (a non-GUID key is a malformed identifier,
    400, as in the reads) [GRAPH.md section 6]."""
    if kind == "user":
        return ctx.tenant.find_user(key)
    if not _GUID.match(key):
        raise bad_request(f"Invalid object identifier '{key}'.")
    return ctx.tenant.get(key, kind)


def _security_identifier(object_id: str) -> str:
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


def _created_response(ctx: ServerContext, req: GraphRequest, obj: DirObject) -> GraphResponse:
    collection = KIND_TO_COLLECTION[obj.kind]
    body = {"@odata.context": f"{req.base_url}/$metadata#{collection}/$entity"}
    body.update(project(obj, None))
    _note_created(ctx, obj)
    return GraphResponse(201, body, headers=_location(req, ctx, obj), content_type=ODATA_JSON)


def _check_value(kind: str, name: str, value: Any) -> None:
    """The value's JSON type against the declared type (complex values recursively)."""
    extra = EXTRA_PROPERTIES.get(kind, {}).get(name)
    if extra is not None:
        problems = [] if value is None else schema.check_shape(extra, value)
    else:
        problems = schema.check_shape(kind, {name: value})
    if problems:
        raise _invalid(name, kind)


def _check_extension(ctx: ServerContext, kind: str, name: str, value: Any) -> None:
    """A directory extension: registered for this kind of object, one value of its data type (a list
    when multi-valued) [GRAPH.md section 8]. Value checks beyond the data type are UNCONFIRMED."""
    definition = ctx.tenant.extension_properties.get(name)
    target = EXTENSION_TARGETS.get(kind)
    if definition is None or target not in definition.get("targetObjects", ()):
        raise _unknown(name)
    if value is None:
        return
    multi = bool(definition.get("isMultiValued"))
    if multi != isinstance(value, list):
        raise _invalid(name, kind)
    for item in value if multi else [value]:
        if not _extension_value_ok(definition.get("dataType", "String"), item):
            raise _invalid(name, kind)


def _extension_value_ok(data_type: str, value: Any) -> bool:
    if data_type == "Boolean":
        return isinstance(value, bool)
    if data_type in ("Integer", "LargeInteger"):
        bits = 31 if data_type == "Integer" else 63
        return isinstance(value, int) and not isinstance(value, bool) and -(2**bits) <= value < 2**bits
    if not isinstance(value, str):
        return False
    if data_type == "String":
        return len(value) <= 256
    if data_type == "DateTime":
        try:
            datetime.fromisoformat(value)
        except ValueError:
            return False
        return True
    if data_type == "Binary":
        try:
            return len(base64.b64decode(value, validate=True)) <= 256
        except (binascii.Error, ValueError):
            return False
    return False


def _validate(
    ctx: ServerContext, req: GraphRequest, kind: str, body: dict[str, Any], *, creating: bool
) -> dict[str, Any]:
    """The body's property changes after Graph's checks; annotations (``@odata.type``, binds) are left
    to the caller."""
    declared = schema.structural_properties(kind)
    extra = EXTRA_PROPERTIES.get(kind, {})
    read_only = READ_ONLY.get(kind, frozenset()) | (
        frozenset() if creating else CREATE_ONLY.get(kind, frozenset())
    )
    changes: dict[str, Any] = {}
    for name, value in body.items():
        if "@" in name:
            continue
        if schema.EXTENSION_PROPERTY.fullmatch(name):
            _check_extension(ctx, kind, name, value)
        elif name not in declared and name not in extra:
            raise _unknown(name)
        elif name in read_only:
            raise _read_only(name)
        else:
            if kind == "user" and name in SINGLE_USER_ONLY and req.caller is not None and req.caller.app_only:
                # "can't be set with app permissions" [GRAPH.md 7]; the error for it is UNCONFIRMED.
                raise permissions.denied()
            if value is not None or not creating:
                _check_value(kind, name, value)
        if creating and value is None:
            continue
        changes[name] = value
    return changes


def _merge_complex(obj: DirObject, changes: dict[str, Any]) -> None:
    """PATCH of extension attributes merges per key, and a null key clears it [GRAPH.md section 8]."""
    for name in MERGED_COMPLEX & changes.keys():
        value = changes[name]
        if isinstance(value, dict):
            merged = {**(obj.props.get(name) or {}), **value}
            # tenant.update merges dicts again; give it every key, null ones included, then drop nulls.
            changes[name] = merged


def _drop_null_keys(obj: DirObject) -> None:
    for name in MERGED_COMPLEX:
        value = obj.props.get(name)
        if isinstance(value, dict) and any(v is None for v in value.values()):
            obj.props[name] = {k: v for k, v in value.items() if v is not None}


def _require_text(changes: dict[str, Any], name: str, kind: str, *, max_length: int | None = None) -> str:
    value = changes.get(name)
    if (
        not isinstance(value, str)
        or not value.strip()
        or (max_length is not None and len(value) > max_length)
    ):
        raise _invalid(name, kind)
    return value


def _require_bool(changes: dict[str, Any], name: str, kind: str) -> bool:
    value = changes.get(name)
    if not isinstance(value, bool):
        raise _invalid(name, kind)
    return value


def _check_mail_nickname(value: Any, kind: str) -> None:
    """ASCII 0-127 without ``@ () \\ [] " ; : . <> ,`` and space, at most 64 characters [GRAPH.md 7].
    A user's alias may contain periods (not first or last, not doubled); a group's may not."""
    forbidden = _NICKNAME_FORBIDDEN | ({"."} if kind == "group" else set())
    if (
        not isinstance(value, str)
        or not value
        or len(value) > 64
        or any(ord(ch) > 127 or ord(ch) < 32 or ch in forbidden for ch in value)
        or value.startswith(".")
        or value.endswith(".")
        or ".." in value
    ):
        raise _invalid("mailNickname", kind)


def _check_upn(tenant: Tenant, value: Any) -> None:
    """``alias@domain``: the alias from ``A-Z a-z 0-9 ' . - _ ! # ^ ~`` (so no accents), not starting or
    ending with a period; the domain one of the tenant's verified domains [GRAPH.md section 7]."""
    if not isinstance(value, str) or value.count("@") != 1:
        raise _invalid("userPrincipalName", "user")
    alias, domain = value.split("@")
    if not _UPN_ALIAS.match(alias) or alias.startswith(".") or alias.endswith(".") or ".." in alias:
        raise _invalid("userPrincipalName", "user")
    if domain.lower() not in {d.lower() for d in tenant.verified_domains}:
        raise bad_request(
            "The domain portion of the userPrincipalName property is invalid. "
            "You must use one of the verified domain names in your organization."
        )


def _check_password(password: Any) -> str:
    """8-256 characters, at least 3 of: lower case, upper case, digit, symbol; printable ASCII only
    (Entra's password policy) [GRAPH.md section 6, weak password]."""
    if not isinstance(password, str):
        raise bad_request(WEAK_PASSWORD)
    classes = (
        any(ch.islower() for ch in password)
        + any(ch.isupper() for ch in password)
        + any(ch.isdigit() for ch in password)
        + any(not ch.isalnum() for ch in password)
    )
    if not 8 <= len(password) <= 256 or classes < 3 or any(not 32 <= ord(ch) <= 126 for ch in password):
        raise bad_request(WEAK_PASSWORD)
    return password


def _parse_ref(
    ctx: ServerContext, req: GraphRequest, value: Any, link: str, kinds: tuple[str, ...]
) -> DirObject:
    """The object an ``@odata.id`` / ``@odata.bind`` URL names: an absolute Graph URL
    ``https://graph.microsoft.com/v1.0/directoryObjects/{id}`` (or ``.../users/{id}``, the local base URL,
    a national cloud's Graph host). Malformed: 400 ``Request_UnsupportedQuery``; missing: 404."""
    unsupported = GraphError(
        400,
        "Request_UnsupportedQuery",
        f"Unsupported referenced-object resource identifier for link property '{link}'.",
    )
    if not isinstance(value, str):
        raise unsupported
    parts = urlsplit(value.strip())
    origin = f"{parts.scheme}://{parts.netloc}".lower()
    local = {o.lower() for o in ctx.graph_origins} | {req.base_url.rsplit("/v1.0", 1)[0].lower()}
    if parts.scheme.lower() != "https" or (parts.hostname not in _GRAPH_HOSTS and origin not in local):
        raise unsupported
    segments = [unquote(s) for s in parts.path.strip("/").split("/")]
    if len(segments) != 3 or segments[0].lower() not in ("v1.0", "beta"):
        raise unsupported
    if segments[1].lower() not in _REF_COLLECTIONS or not _GUID.match(segments[2]) or parts.query:
        raise unsupported
    expected = _REF_COLLECTIONS[segments[1].lower()]
    obj = ctx.tenant.objects.get(segments[2].lower())
    if obj is None or obj.deleted is not None or (expected is not None and obj.kind != expected):
        raise not_found(segments[2])
    if obj.kind not in kinds:
        raise unsupported  # e.g. an application as a member; the exact error is UNCONFIRMED
    return obj


def _ref_body(req: GraphRequest) -> Any:
    body = _object_body(req)
    return body.get("@odata.id")


def _synced(obj: DirObject) -> bool:
    return bool(obj.props.get("onPremisesSyncEnabled"))


def _group_type(group: DirObject) -> str:
    props = group.props
    if "Unified" in (props.get("groupTypes") or []):
        return "m365"
    if props.get("mailEnabled"):
        return "mailsecurity" if props.get("securityEnabled") else "distribution"
    return "security"


def _check_members_writable(group: DirObject) -> None:
    """Graph manages the membership of cloud security and Microsoft 365 groups only."""
    if _synced(group):
        raise bad_request(SYNC_MASTERED_MESSAGE)
    if _group_type(group) in ("mailsecurity", "distribution"):
        raise bad_request(EXCHANGE_GROUP)
    if "DynamicMembership" in (group.props.get("groupTypes") or []):
        # The rule is documented ("Not possible on dynamic groups", GRAPH.md 7); status and text are
        # UNCONFIRMED (a Microsoft support blog lists dynamic groups among the 403 causes).
        raise bad_request(
            "Members of a group with dynamic membership are managed by its membership rule and cannot be "
            "added or removed."
        )


def _binds(body: dict[str, Any], name: str) -> list[Any]:
    value = body.get(f"{name}@odata.bind")
    if value is None:
        return []
    if not isinstance(value, list):
        message = f"Unsupported referenced-object resource identifier for link property '{name}'."
        raise GraphError(400, "Request_UnsupportedQuery", message)
    return value


def _resolve_links(
    ctx: ServerContext, req: GraphRequest, group: DirObject | None, body: dict[str, Any]
) -> tuple[list[DirObject], list[DirObject]]:
    """Members and owners to bind, all resolved before anything changes (a bad one changes nothing)."""
    member_refs, owner_refs = _binds(body, "members"), _binds(body, "owners")
    if len(member_refs) + len(owner_refs) > MAX_LINKS:
        raise bad_request(TOO_MANY_LINKS)
    members = [_parse_ref(ctx, req, ref, "members", _MEMBER_KINDS) for ref in member_refs]
    owners = [_parse_ref(ctx, req, ref, "owners", _OWNER_KINDS) for ref in owner_refs]
    for name, objects, existing in (
        ("members", members, ctx.tenant.members.get(group.id, {}) if group else {}),
        ("owners", owners, ctx.tenant.owners.get(group.id, {}) if group else {}),
    ):
        seen: set[str] = set()
        for obj in objects:
            if obj.id in seen or obj.id in existing:
                raise _already_exists(name)
            seen.add(obj.id)
    return members, owners


def _already_exists(link: str) -> GraphError:
    return bad_request(
        f"One or more added object references already exist for the following modified properties: '{link}'."
    )


# ---------------------------------------------------------------------------------------------- users


@router.route("POST", "/users")
def create_user(ctx: ServerContext, req: GraphRequest) -> GraphResponse:
    """[GRAPH.md section 7] Required: accountEnabled, displayName, mailNickname, passwordProfile (with a
    password), userPrincipalName. 201 with the default properties; the password is never returned."""
    tenant = ctx.tenant
    changes = _validate(ctx, req, "user", _object_body(req), creating=True)
    _require_bool(changes, "accountEnabled", "user")
    _require_text(changes, "displayName", "user", max_length=256)
    if "mailNickname" not in changes:
        raise _invalid("mailNickname", "user")
    _check_mail_nickname(changes["mailNickname"], "user")
    profile = changes.pop("passwordProfile", None) or {}
    if not profile.get("password"):
        raise bad_request("A password must be specified to create a new user.")
    if "userPrincipalName" not in changes:
        raise _invalid("userPrincipalName", "user")
    _check_upn(tenant, changes["userPrincipalName"])
    password = _check_password(profile["password"])
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
        "securityIdentifier": _security_identifier(object_id),
        "lastPasswordChangeDateTime": utc_now(),
        **changes,
    }
    obj = tenant.create("user", props)  # a duplicate UPN raises ObjectConflict [GRAPH.md section 6]
    obj.password = password
    return _created_response(ctx, req, obj)


@router.route("PATCH", "/users/{id}")
def update_user(ctx: ServerContext, req: GraphRequest, id: str) -> GraphResponse:
    """[GRAPH.md section 7] 204. displayName can't be cleared, mail can't be null; passwordProfile resets
    the password; onPremisesExtensionAttributes merge per key; a directory extension set to null is
    removed. AD-mastered properties of a synced user are refused [GRAPH.md section 8]."""
    user = ctx.tenant.find_user(id)
    body = _object_body(req)
    changes = _validate(ctx, req, "user", body, creating=False)
    if _synced(user) and USER_SYNC_MASTERED & changes.keys():
        raise bad_request(SYNC_MASTERED_MESSAGE)
    for name in ("displayName", "mail", "userPrincipalName"):
        if name in changes:
            _require_text(changes, name, "user", max_length=256 if name == "displayName" else None)
    if "accountEnabled" in changes:
        _require_bool(changes, "accountEnabled", "user")
    if "mailNickname" in changes:
        _check_mail_nickname(changes["mailNickname"], "user")
    if "userPrincipalName" in changes:
        _check_upn(ctx.tenant, changes["userPrincipalName"])
    limits = {"employeeId": 16, "companyName": 64}  # [GRAPH.md section 7]
    for name, limit in limits.items():
        if isinstance(changes.get(name), str) and len(changes[name]) > limit:
            raise _invalid(name, "user")
    if len(changes.get("otherMails") or []) > 250:
        raise _invalid("otherMails", "user")
    password = None
    if "passwordProfile" in changes:
        profile = changes.pop("passwordProfile") or {}
        if profile.get("password") is not None:
            password = _check_password(profile["password"])
            changes["lastPasswordChangeDateTime"] = utc_now()
    if "userPrincipalName" in changes:
        # The userPrincipalName sign-in identity follows the UPN.
        identities = [dict(i) for i in user.props.get("identities") or []]
        for identity in identities:
            if identity.get("signInType") == "userPrincipalName":
                identity["issuerAssignedId"] = changes["userPrincipalName"]
        if identities != user.props.get("identities"):
            changes["identities"] = identities
    _merge_complex(user, changes)
    ctx.tenant.update(user.id, changes)  # a duplicate UPN raises ObjectConflict
    _drop_null_keys(user)
    if password is not None:
        user.password = password
    return GraphResponse(204)


def _delete(ctx: ServerContext, obj: DirObject) -> None:
    """Soft delete (deleted items, restorable for 30 days), except distribution groups, which Graph deletes
    permanently (Learn group-delete)."""
    if _synced(obj):
        # Deleting an AD-mastered object in the cloud: same refusal as its properties (UNCONFIRMED text).
        raise bad_request(SYNC_MASTERED_MESSAGE)
    if obj.kind == "group" and _group_type(obj) == "distribution":
        ctx.tenant.purge(obj.id)
    else:
        ctx.tenant.delete(obj.id)


def _register_delete(collection: str, kind: str) -> None:
    @router.route("DELETE", f"/{collection}/{{id}}")
    def delete_object(ctx: ServerContext, req: GraphRequest, id: str) -> GraphResponse:
        _delete(ctx, _lookup(ctx, kind, id))
        return GraphResponse(204)


for _collection, _kind in COLLECTIONS.items():
    if _kind != "orgContact":  # org contacts are read-only in Graph [GRAPH.md 7]: the router answers 405
        _register_delete(_collection, _kind)


# --------------------------------------------------------------------------------------------- groups


def _check_group_shape(changes: dict[str, Any], current: dict[str, Any] | None) -> None:
    """Kinds of group Graph can write: security groups and Microsoft 365 groups [GRAPH.md section 7]."""
    merged = {**(current or {}), **changes}
    group_types = merged.get("groupTypes") or []
    if not all(isinstance(t, str) for t in group_types):
        raise _invalid("groupTypes", "group")
    unified = "Unified" in group_types
    if current is not None and unified != ("Unified" in (current.get("groupTypes") or [])):
        raise _invalid("groupTypes", "group")  # a group's type can't change; UNCONFIRMED error
    if unified and merged.get("mailEnabled") is False:
        raise _invalid("mailEnabled", "group")  # M365 groups are mail-enabled; UNCONFIRMED error
    if not unified and merged.get("mailEnabled"):
        raise bad_request(MAIL_ENABLED_WRITE)
    if not unified and not merged.get("securityEnabled"):
        raise _invalid("securityEnabled", "group")  # neither mail nor security; UNCONFIRMED error
    if "DynamicMembership" in group_types:
        rule = merged.get("membershipRule")
        if not isinstance(rule, str) or not rule.strip():
            raise _invalid("membershipRule", "group")
    if "visibility" in changes:
        allowed = ("Public", "Private", "HiddenMembership") if current is None else ("Public", "Private")
        if changes["visibility"] not in allowed or not unified:
            raise _invalid("visibility", "group")


@router.route("POST", "/groups")
def create_group(ctx: ServerContext, req: GraphRequest) -> GraphResponse:
    """[GRAPH.md section 7] Required: displayName (<= 256), mailEnabled, mailNickname, securityEnabled.
    ``members@odata.bind`` / ``owners@odata.bind``: at most 20 links in all; a bad one creates nothing."""
    tenant = ctx.tenant
    body = _object_body(req)
    changes = _validate(ctx, req, "group", body, creating=True)
    _require_text(changes, "displayName", "group", max_length=256)
    _require_bool(changes, "mailEnabled", "group")
    if "mailNickname" not in changes:
        raise _invalid("mailNickname", "group")
    _check_mail_nickname(changes["mailNickname"], "group")
    _require_bool(changes, "securityEnabled", "group")
    _check_group_shape(changes, None)
    members, owners = _resolve_links(ctx, req, None, body)
    dynamic = "DynamicMembership" in (changes.get("groupTypes") or [])
    if dynamic and members:
        raise bad_request(
            "Members of a group with dynamic membership are managed by its membership rule and "
            "cannot be added or removed."
        )
    object_id = str(uuid.uuid4())
    now = utc_now()
    props: dict[str, Any] = {
        "id": object_id,
        "groupTypes": [],
        "proxyAddresses": [],
        "resourceProvisioningOptions": [],
        "resourceBehaviorOptions": [],
        "isAssignableToRole": False,
        "renewedDateTime": now,
        "createdDateTime": now,
        "securityIdentifier": _security_identifier(object_id),
        **changes,
    }
    if dynamic:
        props.setdefault("membershipRuleProcessingState", "On")
    if "Unified" in props["groupTypes"]:
        nickname = changes["mailNickname"]
        domain = next(
            (d for d in tenant.verified_domains if not d.lower().endswith(".onmicrosoft.com")), tenant.domain
        )
        props["mail"] = f"{nickname}@{domain}"
        props["proxyAddresses"] = [f"SMTP:{nickname}@{domain}"] + (
            [f"smtp:{nickname}@{tenant.domain}"] if domain != tenant.domain else []
        )
        props.setdefault("visibility", "Public")
    group = tenant.create("group", props)  # a duplicate mailNickname raises ObjectConflict
    for member in members:
        tenant.add_member(group.id, member.id)
    if owners:
        tenant.owners[group.id] = {owner.id: None for owner in owners}
    return _created_response(ctx, req, group)


@router.route("PATCH", "/groups/{id}")
def update_group(ctx: ServerContext, req: GraphRequest, id: str) -> GraphResponse:
    """[GRAPH.md section 7] 204. ``members@odata.bind`` adds up to 20 members; if any of them is bad, no
    member is added and no property changes."""
    group = _lookup(ctx, "group", id)
    body = _object_body(req)
    changes = _validate(ctx, req, "group", body, creating=False)
    if _synced(group) and GROUP_SYNC_MASTERED & changes.keys():
        raise bad_request(SYNC_MASTERED_MESSAGE)
    if changes and _group_type(group) in ("mailsecurity", "distribution"):
        raise bad_request(EXCHANGE_GROUP)  # Exchange-mastered groups; UNCONFIRMED for properties
    if "displayName" in changes:
        _require_text(changes, "displayName", "group", max_length=256)
    if "mailNickname" in changes:
        _check_mail_nickname(changes["mailNickname"], "group")
    for name in ("mailEnabled", "securityEnabled"):
        if name in changes:
            _require_bool(changes, name, "group")
    if changes:
        _check_group_shape(changes, group.props)
    members, owners = _resolve_links(ctx, req, group, body)
    if members:
        _check_members_writable(group)
    ctx.tenant.update(group.id, changes)
    for member in members:
        ctx.tenant.add_member(group.id, member.id)
    if owners:
        ctx.tenant.owners.setdefault(group.id, {}).update({owner.id: None for owner in owners})
    return GraphResponse(204)


@router.route("POST", "/groups/{id}/members/$ref")
def add_member(ctx: ServerContext, req: GraphRequest, id: str) -> GraphResponse:
    """204; already a member: 400; the member does not exist: 404 [GRAPH.md sections 6, 7]."""
    group = _lookup(ctx, "group", id)
    member = _parse_ref(ctx, req, _ref_body(req), "members", _MEMBER_KINDS)
    _check_members_writable(group)
    if member.id == group.id:
        raise bad_request("A group cannot be a member of itself.")  # UNCONFIRMED text
    ctx.tenant.add_member(group.id, member.id)
    return GraphResponse(204)


@router.route("DELETE", "/groups/{id}/members/{memberId}/$ref")
def remove_member(ctx: ServerContext, req: GraphRequest, id: str, memberId: str) -> GraphResponse:
    """204; not a member: 404 ``Request_ResourceNotFound`` [GRAPH.md section 6]."""
    group = _lookup(ctx, "group", id)
    if memberId.lower() not in ctx.tenant.members.get(group.id, {}):
        raise not_found(memberId)
    _check_members_writable(group)
    ctx.tenant.remove_member(group.id, memberId)
    return GraphResponse(204)


@router.route("DELETE", "/groups/{id}/members/{memberId}")
def delete_member_object(ctx: ServerContext, req: GraphRequest, id: str, memberId: str) -> GraphResponse:
    """Without ``/$ref`` Graph deletes the member object itself, if the app may delete it (else 403)
    [GRAPH.md section 7]."""
    group = _lookup(ctx, "group", id)
    if memberId.lower() not in ctx.tenant.members.get(group.id, {}):
        raise not_found(memberId)
    member = ctx.tenant.get(memberId)
    permissions.require(req, permissions.DELETE_BY_KIND.get(member.kind, frozenset()))
    _delete(ctx, member)
    return GraphResponse(204)


@router.route("POST", "/groups/{id}/owners/$ref")
def add_owner(ctx: ServerContext, req: GraphRequest, id: str) -> GraphResponse:
    """Owners: users or service principals; same $ref semantics as members. Owners are not tracked by delta,
    so the change is kept in ``tenant.owners`` only."""
    group = _lookup(ctx, "group", id)
    owner = _parse_ref(ctx, req, _ref_body(req), "owners", _OWNER_KINDS)
    owners = ctx.tenant.owners.setdefault(group.id, {})
    if owner.id in owners:
        raise _already_exists("owners")
    owners[owner.id] = None
    return GraphResponse(204)


@router.route("DELETE", "/groups/{id}/owners/{ownerId}/$ref")
def remove_owner(ctx: ServerContext, req: GraphRequest, id: str, ownerId: str) -> GraphResponse:
    group = _lookup(ctx, "group", id)
    owners = ctx.tenant.owners.get(group.id, {})
    if ownerId.lower() not in owners:
        raise not_found(ownerId)
    del owners[ownerId.lower()]
    return GraphResponse(204)


# -------------------------------------------------------------------------------------------- manager


@router.route("PUT", "/users/{id}/manager/$ref")
def set_manager(ctx: ServerContext, req: GraphRequest, id: str) -> GraphResponse:
    """``{"@odata.id": ".../users/{managerId}"}`` -> 204 [GRAPH.md section 7]. The manager is a user or an
    org contact (the navigation's type is directoryObject) [GRAPH.md section 8]."""
    user = ctx.tenant.find_user(id)
    manager = _parse_ref(ctx, req, _ref_body(req), "manager", ("user", "orgContact"))
    if _synced(user):
        raise bad_request(SYNC_MASTERED_MESSAGE)  # the manager attribute comes from AD; UNCONFIRMED
    if manager.id == user.id:
        raise bad_request("A user cannot be their own manager.")  # UNCONFIRMED text
    ctx.tenant.set_manager(user.id, manager.id)
    return GraphResponse(204)


@router.route("DELETE", "/users/{id}/manager/$ref")
def remove_manager(ctx: ServerContext, req: GraphRequest, id: str) -> GraphResponse:
    """204; 404 when the user has no manager."""
    user = ctx.tenant.find_user(id)
    if user.id not in ctx.tenant.manager:
        raise not_found("manager")
    if _synced(user):
        raise bad_request(SYNC_MASTERED_MESSAGE)
    ctx.tenant.set_manager(user.id, None)
    return GraphResponse(204)


# --------------------------------------------------------------------------------------------- photos


def _image_size(data: bytes) -> tuple[int | None, int | None]:
    """(width, height) of a PNG or baseline/progressive JPEG, or (None, None)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    if data.startswith(b"\xff\xd8"):
        index = 2
        while index + 9 < len(data):
            if data[index] != 0xFF:
                index += 1
                continue
            marker = data[index + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
                index += 1 if marker == 0xFF else 2
                continue
            length = struct.unpack(">H", data[index + 2 : index + 4])[0]
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                height, width = struct.unpack(">HH", data[index + 5 : index + 9])
                return width, height
            index += 2 + length
    return None, None


def _photo_owner(
    ctx: ServerContext, req: GraphRequest, collection: str, key: str, *, writing: bool
) -> DirObject:
    if collection == "users":
        return ctx.tenant.find_user(key)
    group = _lookup(ctx, "group", key)
    if writing and req.caller is not None and req.caller.app_only:
        # "Group photos are not supported with application permissions" [GRAPH.md 7]; error UNCONFIRMED.
        raise permissions.denied()
    return group


def _image_not_found() -> GraphError:
    return GraphError(404, "ImageNotFound", IMAGE_NOT_FOUND)


def _put_photo(ctx: ServerContext, req: GraphRequest, collection: str, id: str) -> GraphResponse:
    """Binary body with ``Content-Type: image/jpeg`` (image/png accepted too) -> 200 [GRAPH.md 7]. Over
    4 MB: 413 (code UNCONFIRMED); empty or another type: 400 (codes and texts UNCONFIRMED)."""
    owner = _photo_owner(ctx, req, collection, id, writing=True)
    content_type = (req.header("Content-Type") or "").split(";", 1)[0].strip().lower()
    if len(req.body) > MAX_PHOTO_BYTES:
        raise GraphError(
            413, "RequestEntityTooLarge", "The request is larger than the 4 MB limit for a photo."
        )
    if content_type not in PHOTO_TYPES:
        raise GraphError(
            400,
            "BadRequest",
            f"Content type '{content_type or 'none'}' is not supported for a profile photo. Use image/jpeg.",
        )
    if not req.body:
        raise GraphError(400, "BadRequest", "The photo is empty.")
    owner.photo = (content_type, bytes(req.body))
    return GraphResponse(200)


def _get_photo_value(ctx: ServerContext, req: GraphRequest, collection: str, id: str) -> GraphResponse:
    owner = _photo_owner(ctx, req, collection, id, writing=False)
    if owner.photo is None:
        raise _image_not_found()
    content_type, data = owner.photo
    return GraphResponse(200, data, content_type=content_type)


def _get_photo(ctx: ServerContext, req: GraphRequest, collection: str, id: str) -> GraphResponse:
    """The profilePhoto entity: ``@odata.mediaContentType``, id ``default``, width and height."""
    owner = _photo_owner(ctx, req, collection, id, writing=False)
    if owner.photo is None:
        raise _image_not_found()
    content_type, data = owner.photo
    width, height = _image_size(data)
    body = {
        "@odata.context": f"{req.base_url}/$metadata#{collection}('{owner.id}')/photo/$entity",
        "@odata.mediaContentType": content_type,
        "@odata.mediaEtag": f'W/"{hashlib.sha256(data).hexdigest()}"',
        "id": "default",
        "height": height,
        "width": width,
    }
    return GraphResponse(200, body, content_type=ODATA_JSON)


def _delete_photo(ctx: ServerContext, req: GraphRequest, collection: str, id: str) -> GraphResponse:
    owner = _photo_owner(ctx, req, collection, id, writing=True)
    if owner.photo is None:
        raise _image_not_found()
    owner.photo = None
    return GraphResponse(204)


def _register_photo(collection: str) -> None:
    value = f"/{collection}/{{id}}/photo/$value"

    def put(ctx: ServerContext, req: GraphRequest, id: str) -> GraphResponse:
        return _put_photo(ctx, req, collection, id)

    def get_value(ctx: ServerContext, req: GraphRequest, id: str) -> GraphResponse:
        return _get_photo_value(ctx, req, collection, id)

    def get(ctx: ServerContext, req: GraphRequest, id: str) -> GraphResponse:
        return _get_photo(ctx, req, collection, id)

    def delete(ctx: ServerContext, req: GraphRequest, id: str) -> GraphResponse:
        return _delete_photo(ctx, req, collection, id)

    router.route("PUT", value)(put)
    router.route("PATCH", value)(put)
    router.route("GET", value)(get_value)
    router.route("DELETE", value)(delete)
    router.route("GET", f"/{collection}/{{id}}/photo")(get)


_register_photo("users")
_register_photo("groups")


# ------------------------------------------------------------------------- applications and principals


@router.route("POST", "/applications")
def create_application(ctx: ServerContext, req: GraphRequest) -> GraphResponse:
    """Only displayName is required; appId is generated [GRAPH.md section 7]."""
    changes = _validate(ctx, req, "application", _object_body(req), creating=True)
    _require_text(changes, "displayName", "application", max_length=256)
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
    return _created_response(ctx, req, ctx.tenant.create("application", props))


def _register_patch(collection: str, kind: str) -> None:
    @router.route("PATCH", f"/{collection}/{{id}}")
    def update_object(ctx: ServerContext, req: GraphRequest, id: str) -> GraphResponse:
        obj = _lookup(ctx, kind, id)
        changes = _validate(ctx, req, kind, _object_body(req), creating=False)
        if "displayName" in changes:
            _require_text(changes, "displayName", kind, max_length=256)
        if "accountEnabled" in changes:
            _require_bool(changes, "accountEnabled", kind)
        _merge_complex(obj, changes)
        ctx.tenant.update(obj.id, changes)
        _drop_null_keys(obj)
        return GraphResponse(204)


for _collection, _kind in (
    ("applications", "application"),
    ("servicePrincipals", "servicePrincipal"),
    ("devices", "device"),
):
    _register_patch(_collection, _kind)


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
    hyphens}_{name}`` [GRAPH.md section 8]. Validation texts are UNCONFIRMED."""
    app = _lookup(ctx, "application", id)
    body = _object_body(req)
    for key in body:
        if "@" not in key and key not in schema.structural_properties("extensionProperty"):
            raise _unknown(key)
    name = body.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_]{1,120}", name):
        raise _invalid("name", "extensionProperty")
    if body.get("dataType") not in EXTENSION_DATA_TYPES:
        raise _invalid("dataType", "extensionProperty")
    targets = body.get("targetObjects")
    if not isinstance(targets, list) or not targets or any(t not in EXTENSION_TARGET_NAMES for t in targets):
        raise _invalid("targetObjects", "extensionProperty")
    multi = body.get("isMultiValued", False)
    if not isinstance(multi, bool):
        raise _invalid("isMultiValued", "extensionProperty")
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
    app = _lookup(ctx, "application", id)
    body = {
        "@odata.context": f"{req.base_url}/$metadata#applications('{app.id}')/extensionProperties",
        "value": [_extension_property_json(d) for d in _app_extensions(ctx, app)],
    }
    return GraphResponse(200, body, content_type=ODATA_JSON)


@router.route("DELETE", "/applications/{id}/extensionProperties/{propertyId}")
def delete_extension_property(
    ctx: ServerContext, req: GraphRequest, id: str, propertyId: str
) -> GraphResponse:
    app = _lookup(ctx, "application", id)
    for definition in _app_extensions(ctx, app):
        if definition["id"].lower() == propertyId.lower():
            del ctx.tenant.extension_properties[definition["name"]]
            return GraphResponse(204)
    raise not_found(propertyId)


@router.route("POST", "/servicePrincipals")
def create_service_principal(ctx: ServerContext, req: GraphRequest) -> GraphResponse:
    """``{"appId"}`` of an application in the tenant -> 201. Errors for an unknown appId and for a second
    principal of the same app are UNCONFIRMED (the latter follows GRAPH.md rule 7, ObjectConflict)."""
    tenant = ctx.tenant
    changes = _validate(ctx, req, "servicePrincipal", _object_body(req), creating=True)
    app_id = changes.get("appId")
    if not isinstance(app_id, str) or not _GUID.match(app_id):
        raise _invalid("appId", "servicePrincipal")
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
    return _created_response(ctx, req, tenant.create("servicePrincipal", props))


# -------------------------------------------------------------------------------------------- devices


@router.route("POST", "/devices")
def create_device(ctx: ServerContext, req: GraphRequest) -> GraphResponse:
    """Delegated only: "Application: Not supported" [GRAPH.md section 7]; app-only callers get 403
    ``Authorization_RequestDenied`` (status inferred, exact error UNCONFIRMED)."""
    if req.caller is None or req.caller.app_only:
        raise permissions.denied()
    changes = _validate(ctx, req, "device", _object_body(req), creating=True)
    _require_bool(changes, "accountEnabled", "device")
    for name in ("deviceId", "displayName", "operatingSystem", "operatingSystemVersion"):
        _require_text(changes, name, "device")
    if not isinstance(changes.get("alternativeSecurityIds"), list):
        raise _invalid("alternativeSecurityIds", "device")
    props = {"id": str(uuid.uuid4()), "registrationDateTime": utc_now(), "physicalIds": [], **changes}
    return _created_response(ctx, req, ctx.tenant.create("device", props))


# -------------------------------------------------------------------------------------- deleted items


def _deleted(ctx: ServerContext, req: GraphRequest, id: str) -> DirObject:
    obj = ctx.tenant.objects.get(id.lower())
    if obj is None or obj.deleted is None:
        raise not_found(id)
    permissions.require(req, permissions.DELETE_BY_KIND.get(obj.kind, frozenset()))
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


# ------------------------------------------------------------------------------------------ getByIds

_TYPE_NAMES = {kind.lower(): kind for kind in COLLECTIONS.values()}


@router.route("POST", "/directoryObjects/getByIds")
def get_by_ids(ctx: ServerContext, req: GraphRequest) -> GraphResponse:
    """``{"ids": [...], "types": [...]}`` -> 200, a directoryObjects collection with ``@odata.type`` on each
    item; unknown ids are left out. Costs 5 RU (the pipeline's cost table) [GRAPH.md section 5]."""
    body = _object_body(req)
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
        if not _GUID.match(object_id):
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
