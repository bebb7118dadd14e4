"""Property checks of a write body against Graph's metadata, as Graph makes them [docs/graph-behaviour.md sections 7, 8]."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime
from typing import Any

from localgraph import schema
from localgraph.context import ServerContext
from localgraph.errors import GraphError, bad_request
from localgraph.routing import GraphRequest
from localgraph.tenant import DirObject, Tenant

RESOURCE = {"user": "User", "group": "Group", "device": "Device", "application": "Application",
            "servicePrincipal": "ServicePrincipal", "orgContact": "OrgContact"}  # fmt: skip
# extensionProperty.targetObjects names [docs/graph-behaviour.md section 8]; service principals are not a target.
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
        "passwordCredentials",  # "can't be set at creation (use addPassword)" [docs/graph-behaviour.md section 7]; UNCONFIRMED error
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

WEAK_PASSWORD = (
    "The specified password does not comply with password complexity requirements. "
    "Please provide a different password."
)

_UPN_ALIAS = re.compile(
    r"^[A-Za-z0-9'.\-_!#^~]{1,64}$"
)  # [docs/graph-behaviour.md section 7] allowed characters
_NICKNAME_FORBIDDEN = set(
    '@()\\[]";:<>, '
)  # group mailNickname rule [docs/graph-behaviour.md section 7]; '.' is added for groups


def invalid_value(name: str, kind: str) -> GraphError:
    return bad_request(
        f"Invalid value specified for property '{name}' of resource '{RESOURCE.get(kind, kind)}'."
    )


def unknown_property(name: str) -> GraphError:
    return bad_request(f"Property '{name}' does not exist as a declared property or extension property.")


def read_only_property(name: str) -> GraphError:
    return bad_request(f"Property '{name}' is read-only and cannot be set.")


def _check_value(kind: str, name: str, value: Any) -> None:
    """The value's JSON type against the declared type (complex values recursively)."""
    extra = EXTRA_PROPERTIES.get(kind, {}).get(name)
    if extra is not None:
        problems = [] if value is None else schema.check_shape(extra, value)
    else:
        problems = schema.check_shape(kind, {name: value})
    if problems:
        raise invalid_value(name, kind)


def _check_extension(ctx: ServerContext, kind: str, name: str, value: Any) -> None:
    """A directory extension: registered for this kind of object, one value of its data type (a list
    when multi-valued) [docs/graph-behaviour.md section 8]. Value checks beyond the data type are UNCONFIRMED."""
    definition = ctx.tenant.extension_properties.get(name)
    target = EXTENSION_TARGETS.get(kind)
    if definition is None or target not in definition.get("targetObjects", ()):
        raise unknown_property(name)
    if value is None:
        return
    multi = bool(definition.get("isMultiValued"))
    if multi != isinstance(value, list):
        raise invalid_value(name, kind)
    for item in value if multi else [value]:
        if not _extension_value_ok(definition.get("dataType", "String"), item):
            raise invalid_value(name, kind)


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


def validate(
    ctx: ServerContext, req: GraphRequest, kind: str, body: dict[str, Any], *, creating: bool
) -> dict[str, Any]:
    """The body's property changes after Graph's checks; annotations (``@odata.type``, binds) are left
    to the caller."""
    declared = schema.structural_properties(kind)
    extra = EXTRA_PROPERTIES.get(kind, {})
    refused = READ_ONLY.get(kind, frozenset()) | (
        frozenset() if creating else CREATE_ONLY.get(kind, frozenset())
    )
    changes: dict[str, Any] = {}
    for name, value in body.items():
        if "@" in name:
            continue
        if schema.EXTENSION_PROPERTY.fullmatch(name):
            _check_extension(ctx, kind, name, value)
        elif name not in declared and name not in extra:
            raise unknown_property(name)
        elif name in refused:
            raise read_only_property(name)
        else:
            if value is not None or not creating:
                _check_value(kind, name, value)
        if creating and value is None:
            continue
        changes[name] = value
    return changes


def merge_complex(obj: DirObject, changes: dict[str, Any]) -> None:
    """PATCH of extension attributes merges per key, and a null key clears it [docs/graph-behaviour.md section 8]."""
    for name in MERGED_COMPLEX & changes.keys():
        value = changes[name]
        if isinstance(value, dict):
            merged = {**(obj.props.get(name) or {}), **value}
            # tenant.update merges dicts again; give it every key, null ones included, then drop nulls.
            changes[name] = merged


def drop_null_keys(obj: DirObject) -> None:
    for name in MERGED_COMPLEX:
        value = obj.props.get(name)
        if isinstance(value, dict) and any(v is None for v in value.values()):
            obj.props[name] = {k: v for k, v in value.items() if v is not None}


def require_text(changes: dict[str, Any], name: str, kind: str, *, max_length: int | None = None) -> str:
    value = changes.get(name)
    if (
        not isinstance(value, str)
        or not value.strip()
        or (max_length is not None and len(value) > max_length)
    ):
        raise invalid_value(name, kind)
    return value


def require_bool(changes: dict[str, Any], name: str, kind: str) -> bool:
    value = changes.get(name)
    if not isinstance(value, bool):
        raise invalid_value(name, kind)
    return value


def check_mail_nickname(value: Any, kind: str) -> None:
    """ASCII 0-127 without ``@ () \\ [] " ; : . <> ,`` and space, at most 64 characters [docs/graph-behaviour.md section 7].
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
        raise invalid_value("mailNickname", kind)


def check_upn(tenant: Tenant, value: Any) -> None:
    """``alias@domain``: the alias from ``A-Z a-z 0-9 ' . - _ ! # ^ ~`` (so no accents), not starting or
    ending with a period; the domain one of the tenant's verified domains [docs/graph-behaviour.md section 7]."""
    if not isinstance(value, str) or value.count("@") != 1:
        raise invalid_value("userPrincipalName", "user")
    alias, domain = value.split("@")
    if not _UPN_ALIAS.match(alias) or alias.startswith(".") or alias.endswith(".") or ".." in alias:
        raise invalid_value("userPrincipalName", "user")
    if domain.lower() not in {d.lower() for d in tenant.verified_domains}:
        raise bad_request(
            "The domain portion of the userPrincipalName property is invalid. "
            "You must use one of the verified domain names in your organization."
        )


def check_password(password: Any) -> str:
    """8-256 characters, at least 3 of: lower case, upper case, digit, symbol; printable ASCII only
    (Entra's password policy) [docs/graph-behaviour.md section 6, weak password]."""
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
