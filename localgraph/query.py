"""OData query options as Graph's directory reads them: ``$select``, ``$filter``, ``$top``, ``$count``,
``$search``, ``$orderby``, ``$expand``, and the advanced-query rules (``ConsistencyLevel: eventual`` plus
``$count=true``) with Graph's exact error codes when they are missing.

The filter grammar and evaluation are the connector's own (:mod:`shared.odata`), so the text the
connector sends and the way this test bed reads it cannot drift apart.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from localgraph import schema
from localgraph.errors import GraphError, bad_request, unsupported_query
from localgraph.routing import GraphRequest
from localgraph.tenant import DirObject
from shared import odata

# Properties returned when a list or get has no $select [L:graph/api/user-list; graph/api/group-list].
DEFAULT_PROPERTIES: dict[str, tuple[str, ...]] = {
    "user": (
        "businessPhones", "displayName", "givenName", "jobTitle", "mail", "mobilePhone", "officeLocation",
        "preferredLanguage", "surname", "userPrincipalName", "id",
    ),
    "group": (
        "id", "deletedDateTime", "classification", "createdDateTime", "creationOptions", "description",
        "displayName", "expirationDateTime", "groupTypes", "isAssignableToRole", "mail", "mailEnabled",
        "mailNickname", "membershipRule", "membershipRuleProcessingState", "onPremisesDomainName",
        "onPremisesLastSyncDateTime", "onPremisesNetBiosName", "onPremisesSamAccountName",
        "onPremisesSecurityIdentifier", "onPremisesSyncEnabled", "preferredDataLocation", "preferredLanguage",
        "proxyAddresses", "renewedDateTime", "resourceBehaviorOptions", "resourceProvisioningOptions",
        "securityEnabled", "securityIdentifier", "theme", "visibility", "onPremisesProvisioningErrors",
        "serviceProvisioningErrors",
    ),
}  # fmt: skip

# Properties that exist only on a single user: asking for them on a collection is 501 [L user-list].
SINGLE_USER_ONLY = frozenset(
    {"aboutMe", "birthday", "hireDate", "interests", "mySite", "pastProjects", "preferredName",
     "responsibilities", "schools", "skills", "mailboxSettings"}
)  # fmt: skip

# $filter support per property: (operators supported by default, operators that need advanced queries).
# From Graph's "filter-directory-objects" tables [docs/graph-behaviour.md section 2]. A property not listed cannot be
# filtered at all. "eqNull"/"neNull" are `eq null`/`ne null`.
_TEXT = ("eq in startsWith", "ne not eqNull neNull")
_MAIL = ("eq in startsWith ge le", "ne not endsWith eqNull neNull")
_MULTI_MAIL = ("eq any startsWith", "ne not endsWith all")
_ADVANCED_ONLY = ("", "eq in startsWith ne not eqNull neNull ge le gt lt")
_DATE = ("eq ge le gt lt", "ne not in eqNull neNull")
_FLAG = ("eq in", "ne not eqNull neNull")
FILTERABLE: dict[str, dict[str, tuple[str, str]]] = {
    "user": {
        "accountEnabled": ("eq in", "ne not ge le"),
        "displayName": _TEXT, "givenName": _TEXT, "surname": _TEXT, "department": _TEXT, "city": _TEXT,
        "country": _TEXT, "state": _TEXT, "jobTitle": _TEXT, "usageLocation": _TEXT, "mailNickname": _TEXT,
        "userPrincipalName": ("eq in startsWith le ge", "ne not endsWith"),
        "mail": _MAIL, "otherMails": _MULTI_MAIL, "proxyAddresses": _MULTI_MAIL,
        "employeeId": ("eq in startsWith", "ne not le ge eqNull neNull"),
        "id": ("eq in", "ne not"), "userType": _FLAG, "onPremisesSyncEnabled": _FLAG, "creationType": _FLAG,
        "externalUserState": _FLAG, "createdDateTime": _DATE, "lastPasswordChangeDateTime": _DATE,
        "identities": ("any eq", "not all"), "assignedLicenses": ("any eq", "not all count ne"),
        "imAddresses": ("any eq startsWith", "not all"), "businessPhones": ("any eq", "not all"),
        "signInActivity": ("eq ge le gt lt", "ne not"),
        "onPremisesSecurityIdentifier": ("eq", "ne not"), "securityIdentifier": ("eq", "ne not"),
        **{name: _ADVANCED_ONLY for name in (
            "companyName", "employeeType", "employeeHireDate", "employeeOrgData", "mobilePhone",
            "officeLocation", "onPremisesExtensionAttributes", "onPremisesImmutableId",
            "onPremisesSamAccountName", "onPremisesUserPrincipalName", "onPremisesDistinguishedName",
            "onPremisesDomainName", "postalCode", "preferredLanguage", "showInAddressList", "streetAddress",
            "passwordPolicies", "ageGroup",
            "faxNumber", "employeeLeaveDateTime", "onPremisesLastSyncDateTime",
        )},
    },
    "group": {
        "displayName": _TEXT, "description": ("eq startsWith", "ne not eqNull neNull"),
        "mail": _MAIL, "mailNickname": _TEXT, "proxyAddresses": _MULTI_MAIL,
        "mailEnabled": _FLAG, "securityEnabled": _FLAG, "isAssignableToRole": _FLAG,
        "onPremisesSyncEnabled": _FLAG, "id": ("eq in", "ne not"),
        "groupTypes": ("any eq", "not all"), "resourceProvisioningOptions": ("any eq", "not all"),
        "assignedLicenses": ("any", "not all count"),
        "createdDateTime": _DATE, "expirationDateTime": _DATE, "renewedDateTime": _DATE,
        "onPremisesSamAccountName": _TEXT, "onPremisesSecurityIdentifier": ("eq", "ne not"),
        "securityIdentifier": ("eq", "ne not"), "classification": _TEXT, "visibility": _FLAG,
        "membershipRuleProcessingState": _FLAG,
    },
}  # fmt: skip
# Collections without a detailed table: eq/in/startsWith by default, the rest advanced.
_GENERIC = ("eq in startsWith any ge le", "ne not endsWith eqNull neNull all count gt lt")
# Properties that may sort without advanced parameters.
DEFAULT_ORDERBY = {"user": {"displayName", "userPrincipalName"}, "group": {"displayName"}}
_RESOURCE_NAMES = {"user": "User", "group": "Group", "device": "Device", "application": "Application",
                   "servicePrincipal": "ServicePrincipal", "orgContact": "OrgContact"}  # fmt: skip

ADVANCED_HINT = (
    "Try adding $count=true query parameter and ConsistencyLevel:eventual header. "
    "Refer to https://aka.ms/graph-docs/advanced-queries for more information"
)
SUPPORTED_OPTIONS = {"$select", "$filter", "$top", "$count", "$search", "$orderby", "$expand", "$skiptoken"}


@dataclass
class ListQuery:
    select: list[str] | None = None
    predicate: Callable[[Mapping[str, Any]], bool] | None = None
    features: odata.FilterFeatures | None = None
    search: Any = None
    top: int = 100
    count: bool = False  # $count=true honoured (advanced)
    advanced: bool = False
    orderby: list[tuple[str, bool]] = field(default_factory=list)  # (property, descending)
    expand: dict[str, list[str] | None] = field(default_factory=dict)  # navigation -> nested $select

    @property
    def sorted(self) -> bool:
        return bool(self.orderby) or self.search is not None

    def matches(self, obj: DirObject) -> bool:
        if self.predicate is not None and not self.predicate(obj.view):
            return False
        return self.search is None or odata.evaluate_search(self.search, obj.view)


def parse_list_query(
    req: GraphRequest,
    kinds: Iterable[str],
    *,
    default_top: int,
    max_top: int,
    relationship: bool = False,
    count_segment: bool = False,
) -> ListQuery:
    """Validate and parse a list request's options for objects of ``kinds``.

    ``relationship`` lists (members, memberOf, ...) need advanced parameters for $filter/$search/$orderby.
    """
    kinds = list(kinds)
    query = req.query
    for name in query:
        if name == "$skip":
            raise bad_request("'$skip' is not supported by the service.")
        if name.startswith("$") and name not in SUPPORTED_OPTIONS:
            raise bad_request(f"Query option '{name}' is not allowed.", code="BadRequest")
    count_param = query.get("$count", "").lower() == "true"
    advanced = req.eventual and (count_param or count_segment)
    parsed = ListQuery(count=advanced and count_param, advanced=advanced)
    parsed.select = parse_select(query.get("$select"), kinds, collection=True)
    parsed.top = _top(query.get("$top"), default_top, max_top, parsed.select, query.get("$filter"))
    if "$expand" in query:
        parsed.expand = parse_expand(query["$expand"], kinds)
        if advanced:
            # docs/graph-behaviour.md section 2: "$expand is not currently supported with advanced queries" (exact error unknown).
            raise unsupported_query("$expand is not supported with advanced queries.")
    if "$search" in query:
        if not req.eventual:
            raise unsupported_query(
                "Request with $search query parameter only works through MSGraph with a special request "
                "header: 'ConsistencyLevel: eventual'"
            )
        try:
            parsed.search = odata.parse_search(query["$search"])
        except odata.FilterError as exc:
            raise bad_request(str(exc)) from None
    if "$filter" in query:
        try:
            node = odata.parse_filter(query["$filter"])
        except odata.FilterError as exc:
            raise bad_request(str(exc)) from None
        parsed.features = odata.analyze(node)
        check_filter_support(parsed.features, kinds, advanced=advanced, relationship=relationship)
        parsed.predicate = odata.compile_filter(query["$filter"])
    if "$orderby" in query:
        parsed.orderby = _orderby(query["$orderby"])
        default_sort = all(
            prop in DEFAULT_ORDERBY.get(kind, set()) for prop, _ in parsed.orderby for kind in kinds
        )
        if not advanced and ("$filter" in query or not default_sort or relationship):
            raise unsupported_query("Sorting not supported for current query.")
    return parsed


def _top(raw: str | None, default_top: int, max_top: int, select, filter_text) -> int:
    if raw is None:
        return default_top
    try:
        top = int(raw)
    except ValueError:
        raise bad_request(f"Invalid page size specified: '{raw}'. Must be between 1 and {max_top} inclusive.",
                          code="Request_UnsupportedQuery") from None  # fmt: skip
    if not 1 <= top <= max_top:
        raise unsupported_query(
            f"Invalid page size specified: '{raw}'. Must be between 1 and {max_top} inclusive."
        )
    return top


def _orderby(raw: str) -> list[tuple[str, bool]]:
    result = []
    for part in raw.split(","):
        words = part.split()
        if not words or len(words) > 2 or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
            raise bad_request(f"Invalid $orderby clause '{raw}'.")
        result.append((words[0], len(words) == 2 and words[1].lower() == "desc"))
    return result


def known_properties(kinds: Iterable[str]) -> set[str]:
    names: set[str] = set()
    for kind in kinds:
        names.update(schema.structural_properties(kind))
        names.update(schema.navigation_properties(kind))
    return names


def parse_select(raw: str | None, kinds: Iterable[str], *, collection: bool) -> list[str] | None:
    if raw is None:
        return None
    kinds = list(kinds)
    names = [name.strip() for name in raw.split(",") if name.strip()]
    if not names:
        raise bad_request("Invalid $select: empty property list.")
    known = known_properties(kinds)
    open_types = any(schema.is_open_type(kind) for kind in kinds)
    for name in names:
        if name == "*":
            continue
        if name not in known and not (open_types and name.startswith("extension_")):
            kind = kinds[0] if len(kinds) == 1 else "directoryObject"
            raise bad_request(
                f"Parsing OData Select and Expand failed: Could not find a property named '{name}' on type "
                f"'microsoft.graph.{kind}'."
            )
        if collection and "user" in kinds and name in SINGLE_USER_ONLY:
            raise GraphError(
                501,
                "NotImplemented",
                f"This operation target is not yet supported. Property '{name}' is not supported when "
                "requesting a collection of users.",
            )
    return names


def parse_expand(raw: str, kinds: Iterable[str]) -> dict[str, list[str] | None]:
    expand: dict[str, list[str] | None] = {}
    kinds = list(kinds)
    navs = set()
    for kind in kinds:
        navs.update(schema.navigation_properties(kind))
    for item in _split_top_level(raw):
        name, _, rest = item.partition("(")
        name = name.strip()
        if name not in navs or name not in ("manager", "members", "memberOf", "owners", "directReports"):
            raise bad_request(
                f"Parsing OData Select and Expand failed: Could not find a property named '{name}' on type "
                f"'microsoft.graph.{kinds[0]}'."
            )
        nested = None
        if rest:
            options = rest.rstrip(")")
            for option in options.split(";"):
                key, _, value = option.partition("=")
                if key.strip().lower() == "$select":
                    nested = [v.strip() for v in value.split(",") if v.strip()]
        expand[name] = nested
    return expand


def _split_top_level(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        depth += char == "("
        depth -= char == ")"
        current += char
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def check_filter_support(
    features: odata.FilterFeatures, kinds: list[str], *, advanced: bool, relationship: bool
) -> None:
    """Raise Graph's error if the filter needs advanced parameters that are missing, or is unsupported."""
    if relationship and not advanced:
        raise unsupported_query(
            "Filter on relationship is not supported because the required parameters might be missing. "
            + ADVANCED_HINT
        )
    if "signInActivity" in features.properties and len(features.properties) > 1:
        raise unsupported_query("signInActivity filter cannot be combined with other filterable properties.")
    resource = _RESOURCE_NAMES.get(kinds[0], kinds[0]) if len(kinds) == 1 else "DirectoryObject"
    for prop, ops in sorted(features.property_operators.items()):
        # A relationship lists several kinds: a property filters the kinds that have it (others do not match).
        default_ops: set[str] = set()
        all_ops: set[str] = set()
        for kind in kinds:
            support = _filter_support(kind, prop)
            if support is not None:
                default_ops.update(support[0])
                all_ops.update(support[0] | support[1])
        wanted = set(ops) - {"and", "or"}
        if not all_ops or wanted - all_ops:
            raise unsupported_query(
                f"Unsupported or invalid query filter clause specified for property '{prop}' of resource "
                f"'{resource}'."
            )
        if not advanced and wanted - default_ops:
            raise _missing_advanced(sorted(wanted - default_ops), prop, resource)


def _filter_support(kind: str, prop: str) -> tuple[set[str], set[str]] | None:
    """(default operators, operators with advanced parameters) for ``prop`` of ``kind``; None: no $filter."""
    table = FILTERABLE.get(kind)
    if table is None:
        default, extra = _GENERIC
    elif prop in table:
        default, extra = table[prop]
    elif prop.startswith("extension_") and kind in ("user", "group"):
        default, extra = ("eq in", "ne not eqNull neNull startsWith")
    else:
        return None
    return set(default.split()), set(extra.split())


def _missing_advanced(ops: list[str], prop: str, resource: str) -> GraphError:
    if "endsWith" in ops:
        return unsupported_query(
            "Operator 'endsWith' is not supported because the required parameters might be missing. "
            + ADVANCED_HINT
        )
    if "ne" in ops:
        return unsupported_query("Filter operator 'NotEqualsMatch' is not supported.")
    if "not" in ops:
        return unsupported_query("Filter operator 'Not' is not supported.")
    if "count" in ops:
        return unsupported_query(
            "Operator '$count' is not supported because the required parameters might be missing. "
            + ADVANCED_HINT
        )
    return unsupported_query(
        f"Unsupported or invalid query filter clause specified for property '{prop}' of resource "
        f"'{resource}'."
    )


# -------------------------------------------------------------------------------------------- shapes

_EXTENSION_ATTRIBUTES = tuple(f"extensionAttribute{n}" for n in range(1, 16))

# Values Graph returns for non-nullable properties that were never written (service-side defaults), so a
# projection never returns null where the metadata says a value is required.
SERVER_DEFAULTS: dict[tuple[str, str], Any] = {
    ("user", "deviceEnrollmentLimit"): 5,
    ("user", "birthday"): "0001-01-01T00:00:00Z",  # single-user-only; Graph shows the minimum date
    ("user", "hireDate"): "0001-01-01T00:00:00Z",
    ("application", "oauth2RequirePostResponse"): False,
    ("servicePrincipal", "appRoleAssignmentRequired"): False,
}


def project(obj: DirObject, select: list[str] | None, *, with_type: bool = False) -> dict[str, Any]:
    """The object as Graph returns it for ``$select`` (or the type's default properties).

    Selected properties that are unset come back as ``null`` (``[]`` for collections, the service default
    for the few non-nullable ones); ``onPremisesExtensionAttributes`` always has its 15 keys; unset
    extension properties are omitted; stream properties (``application.logo``) are never in JSON bodies.
    """
    # $select=id (member and memberOf pages): the id is all it takes, a packed object is not decoded, and
    # the answer is what project_props gives for it (a million of these per 100,000-user benchmark run).
    if select is not None and select and all(name == "id" for name in select):
        return {"@odata.type": obj.odata_type, "id": obj.id} if with_type else {"id": obj.id}
    props = obj.view
    return project_props(obj.kind, obj.id, props, select, odata_type=obj.odata_type if with_type else None)


@functools.cache
def _declared(kind: str) -> Mapping[str, Any]:
    """The structural properties of ``kind``, read-only (the metadata does not change while serving; a copy
    per projected object was a third of a users page's cost)."""
    return schema.structural_properties(kind)


def project_props(
    kind: str,
    object_id: str,
    props: Mapping[str, Any],
    select: list[str] | None,
    *,
    odata_type: str | None = None,
    add_id: bool = True,
) -> dict[str, Any]:
    """:func:`project` over a plain property dict of entity type ``kind`` (also Intune entities)."""
    declared = _declared(kind)
    names: Iterable[str]
    if select is None or "*" in select:
        names = DEFAULT_PROPERTIES.get(kind) or declared.keys()
    else:
        names = select
    result: dict[str, Any] = {"@odata.type": odata_type} if odata_type else {}
    for name in names:
        info = declared.get(name)
        if info is None:
            if name in props and name.startswith("extension_"):
                result[name] = props[name]
            continue
        if info.type == "Edm.Stream":
            continue
        if name == "onPremisesExtensionAttributes":
            value = props.get(name) or {}
            result[name] = {key: value.get(key) for key in _EXTENSION_ATTRIBUTES}
            continue
        value = props.get(name)
        if value is None:
            value = [] if info.collection else SERVER_DEFAULTS.get((kind, name))
        result[name] = value
    if add_id and "id" not in result and select is not None:
        result["id"] = (
            object_id  # Graph always returns id for directory objects (UNCONFIRMED, docs/graph-behaviour.md section 1)
        )
    return result


def sort_key(prop: str) -> Callable[[DirObject], Any]:
    def key(obj: DirObject) -> Any:
        value = obj.view.get(prop)
        if isinstance(value, str):
            return (0, value.lower())
        return (1, "") if value is None else (0, value)

    return key


def has_single_user_only(select: list[str] | None) -> bool:
    return bool(select) and any(name in SINGLE_USER_ONLY for name in select)


def context_url(base_url: str, entity_set: str, select: list[str] | None, *, entity: bool = False) -> str:
    suffix = f"({','.join(select)})" if select else ""
    return f"{base_url}/$metadata#{entity_set}{suffix}{'/$entity' if entity else ''}"
