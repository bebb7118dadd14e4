"""The configuration: connectors (how to reach one Entra tenant) and scheduled tasks (what to read from it).

``load_config`` / ``parse_config`` validate a whole file and raise :class:`ConfigError` listing every problem
found, each with a path such as ``tasks[0].users.mappings[2].local``. Loading is pure: nothing is written.

``python -m shared.config --write-schema`` regenerates ``schema/config.schema.json`` from the models;
``python -m shared.config --check FILE...`` validates configuration files.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
import types
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from os import PathLike
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin
from urllib.parse import unquote

import croniter
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from shared.graph.odata import FilterError, parse_filter, parse_search
from shared.secrets import (
    APP_SETTING_NAME_PATTERN,
    KEY_VAULT_SECRET_URI_PATTERN,
    SecretRef,
)

__all__ = [
    "CLOUD_ENDPOINTS",
    "PSEUDO_ATTRIBUTES",
    "SCHEMA_ID",
    "SCHEMA_PATH",
    "CertificateCredentialConfig",
    "ClientSecretCredentialConfig",
    "Cloud",
    "CloudEndpoints",
    "Config",
    "ConfigError",
    "ConfigIssue",
    "Connector",
    "CredentialConfig",
    "GroupSelection",
    "ManagedIdentityCredentialConfig",
    "MappingsType",
    "ObjectSelection",
    "ScheduledTask",
    "SecretRef",
    "SyncMode",
    "UserSelection",
    "config_json_schema",
    "load_config",
    "parse_config",
    "render_json_schema",
]

SCHEMA_ID = "https://github.com/entra-graph-connector/schema/config.schema.json"
SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schema" / "config.schema.json"

# ------------------------------------------------------------------------------------------ patterns

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$"
GUID_PATTERN = r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$"
_DOMAIN = r"([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
TENANT_ID_PATTERN = rf"^({GUID_PATTERN[1:-1]}|{_DOMAIN})$"
HTTPS_ROOT_PATTERN = r"^https://([A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?/?$"
ATTRIBUTE_PATH_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.([A-Za-z_][A-Za-z0-9_]*|[0-9]+))*$"
LOCAL_CODE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$"
HEADER_NAME_PATTERN = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
HEADER_VALUE_PATTERN = r"^[^\r\n\x00]*$"

_PATTERN_MESSAGES = {
    NAME_PATTERN: "must be 1-63 letters, digits, '_' or '-', starting with a letter or digit",
    GUID_PATTERN: "must be a GUID such as 00000000-0000-0000-0000-000000000000",
    TENANT_ID_PATTERN: "must be the tenant's GUID or one of its domain names (e.g. contoso.onmicrosoft.com)",
    HTTPS_ROOT_PATTERN: (
        "must be an https:// URL with a host and nothing after it (no path, query or fragment); "
        "plain http is refused because azure-identity requires TLS"
    ),
    ATTRIBUTE_PATH_PATTERN: (
        "must be a Graph attribute path: names joined by '.', list positions as numbers "
        "(e.g. displayName, onPremisesExtensionAttributes.extensionAttribute1, assignedLicenses.0.skuId)"
    ),
    LOCAL_CODE_PATTERN: (
        "must be a local attribute code: 1-128 letters, digits, '_', '.' or '-', "
        "starting with a letter or '_'"
    ),
    HEADER_NAME_PATTERN: "must be an HTTP header name (letters, digits and !#$%&'*+.^_`|~-)",
    HEADER_VALUE_PATTERN: "must not contain line breaks",
    APP_SETTING_NAME_PATTERN: (
        "must be an app setting name: letters, digits and '_', not starting with a digit"
    ),
    KEY_VAULT_SECRET_URI_PATTERN: (
        "must be a Key Vault secret URI https://<vault>/secrets/<name>[/<version>] "
        "(name: letters, digits and '-'; version: 32 hex digits)"
    ),
}

# --------------------------------------------------------------------------------------- field types


def _lowercase(value: str) -> str:
    return value.lower()


Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
Guid = Annotated[str, StringConstraints(pattern=GUID_PATTERN), AfterValidator(_lowercase)]
TenantId = Annotated[str, StringConstraints(pattern=TENANT_ID_PATTERN), AfterValidator(_lowercase)]
HttpsRoot = Annotated[
    str, StringConstraints(pattern=HTTPS_ROOT_PATTERN), AfterValidator(lambda url: url.rstrip("/"))
]
LocalCode = Annotated[str, StringConstraints(pattern=LOCAL_CODE_PATTERN)]
HeaderValue = Annotated[str, StringConstraints(pattern=HEADER_VALUE_PATTERN)]

PSEUDO_ATTRIBUTES = frozenset({"members", "memberOf"})
"""Attributes the connector computes from memberships rather than reads as Graph properties."""

_EXTENSION_ATTRIBUTE = re.compile(r"extension_[0-9A-Fa-f]{32}_[A-Za-z0-9_]+")
RESERVED_HEADERS = frozenset({"authorization", "content-type", "accept", "host"})


def _check_attribute_path(path: str) -> str:
    first, _, rest = path.partition(".")
    if first.startswith("extension_") and not _EXTENSION_ATTRIBUTE.fullmatch(first):
        raise ValueError(
            "directory extension attributes are named extension_<application id without dashes>_<name>, "
            "e.g. extension_0123456789abcdef0123456789abcdef_costCenter"
        )
    if first in PSEUDO_ATTRIBUTES and rest:
        raise ValueError(f"{first} is a list of object ids and takes no sub-path")
    return path


AttributePath = Annotated[
    str, StringConstraints(pattern=ATTRIBUTE_PATH_PATTERN), AfterValidator(_check_attribute_path)
]


def _check_header_name(name: str) -> str:
    if name.lower() in RESERVED_HEADERS:
        raise ValueError(f"{name} is set by the connector and cannot be configured")
    return name


HeaderName = Annotated[
    str, StringConstraints(pattern=HEADER_NAME_PATTERN), AfterValidator(_check_header_name)
]

_NCRONTAB_FIELDS = "{second} {minute} {hour} {day} {month} {day-of-week}"
_CRON_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_CRON_NAMES = frozenset("jan feb mar apr may jun jul aug sep oct nov dec sun mon tue wed thu fri sat".split())


def _check_ncrontab(expression: str) -> str:
    fields = expression.split()
    if len(fields) != 6:
        raise ValueError(
            f"an NCRONTAB schedule needs six fields, {_NCRONTAB_FIELDS} (e.g. '0 */15 * * * *'); "
            f"this one has {len(fields)}"
        )
    for word in re.findall(r"[A-Za-z]+", expression):
        if word.lower() not in _CRON_NAMES:
            raise ValueError(f"'{word}' is not supported in an NCRONTAB schedule")
    normalized = " ".join(fields)
    try:
        schedule = croniter.croniter(normalized, _CRON_EPOCH, second_at_beginning=True)
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise ValueError(f"not a valid NCRONTAB schedule {_NCRONTAB_FIELDS}: {exc}") from None
    try:
        schedule.get_next()
    except croniter.CroniterBadDateError:
        raise ValueError("this schedule never fires (no such date)") from None
    return normalized


NcrontabExpression = Annotated[str, AfterValidator(_check_ncrontab)]

# ---------------------------------------------------------------------------------------- issues


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a configuration: where (``tasks[0].users.query``; empty for the whole file) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path or '(root)'}: {self.message}"


def _issue_order(issue: ConfigIssue) -> tuple[list[str | int], str]:
    # Natural order, so tasks[2] comes before tasks[10].
    parts = re.split(r"(\d+)", issue.path)
    return [int(part) if index % 2 else part for index, part in enumerate(parts)], issue.message


class ConfigError(ValueError):
    """The configuration is invalid; ``errors`` holds every problem found, sorted by path."""

    def __init__(self, errors: Iterable[ConfigIssue]) -> None:
        self.errors: list[ConfigIssue] = sorted(dict.fromkeys(errors), key=_issue_order)
        super().__init__("\n".join(str(issue) for issue in self.errors))

    def __reduce__(self) -> tuple[type[ConfigError], tuple[list[ConfigIssue]]]:
        return type(self), (self.errors,)


def _format_path(parts: Sequence[str | int]) -> str:
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z0-9_$-]+", part):
            text += f".{part}" if text else part
        else:
            text += f"[{json.dumps(part)}]"
    return text


def _join_path(base: str, sub: str) -> str:
    if not sub:
        return base
    if not base or sub.startswith("["):
        return base + sub
    return f"{base}.{sub}"


def _raise_if_any(issues: Sequence[ConfigIssue]) -> None:
    """Raise the issues (paths relative to the model or field being validated) as one validation error.

    The issues travel in the error's context so that ConfigError can report each at its own path.
    """
    if issues:
        raise PydanticCustomError(
            "config_rules",
            "{summary}",
            {
                "summary": "; ".join(str(issue) if issue.path else issue.message for issue in issues),
                "issues": tuple(issues),
            },
        )


# ---------------------------------------------------------------------------------------- models


class _ConfigModel(BaseModel):
    # Unknown keys are errors (a typo silently ignored is a bug); JSON types are taken as they are ("true" is
    # not a boolean); inputs are kept out of error text because they may be secrets.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, hide_input_in_errors=True)


Cloud = Literal["global", "usgov", "usgovdod", "china"]


@dataclass(frozen=True)
class CloudEndpoints:
    login_url: str
    graph_url: str


CLOUD_ENDPOINTS: Mapping[str, CloudEndpoints] = types.MappingProxyType(
    {
        "global": CloudEndpoints("https://login.microsoftonline.com", "https://graph.microsoft.com"),
        "usgov": CloudEndpoints("https://login.microsoftonline.us", "https://graph.microsoft.us"),
        "usgovdod": CloudEndpoints("https://login.microsoftonline.us", "https://dod-graph.microsoft.us"),
        "china": CloudEndpoints("https://login.chinacloudapi.cn", "https://microsoftgraph.chinacloudapi.cn"),
    }
)


class ClientSecretCredentialConfig(_ConfigModel):
    """Authenticate as the app registration with a client secret."""

    type: Literal["client_secret"]
    secret: SecretRef

    def __repr__(self) -> str:
        return f"ClientSecretCredentialConfig(secret={self.secret!r})"

    __str__ = __repr__


class CertificateCredentialConfig(_ConfigModel):
    """Authenticate as the app registration with a certificate."""

    type: Literal["certificate"]
    certificate: SecretRef = Field(
        description="PEM text holding the private key and certificate, or base64 of a PKCS#12 file."
    )
    password: SecretRef | None = Field(default=None, description="Password of the private key or PKCS#12.")
    send_certificate_chain: bool = Field(
        default=False, description="Send the x5c header (subject name / issuer authentication)."
    )

    def __repr__(self) -> str:
        return (
            f"CertificateCredentialConfig(certificate={self.certificate!r}, password={self.password!r}, "
            f"send_certificate_chain={self.send_certificate_chain!r})"
        )

    __str__ = __repr__


class ManagedIdentityCredentialConfig(_ConfigModel):
    """Authenticate as the Function App's managed identity; no secret at all."""

    type: Literal["managed_identity"]
    client_id: Guid | None = Field(
        default=None, description="Client id of a user-assigned identity; null for the system-assigned one."
    )

    def __repr__(self) -> str:
        return f"ManagedIdentityCredentialConfig(client_id={self.client_id!r})"

    __str__ = __repr__


CredentialConfig = Annotated[
    ClientSecretCredentialConfig | CertificateCredentialConfig | ManagedIdentityCredentialConfig,
    Field(discriminator="type"),
]
_CREDENTIAL_TYPES = ("client_secret", "certificate", "managed_identity")


class Connector(_ConfigModel):
    """How to reach one Entra tenant through Microsoft Graph."""

    name: Name = Field(description="Unique name; used in table keys and blob paths.")
    tenant_id: TenantId = Field(description="Tenant GUID or a domain name such as contoso.onmicrosoft.com.")
    client_id: Guid | None = Field(
        default=None,
        description="Application (client) id of the app registration; may be omitted for managed identity.",
    )
    cloud: Cloud = "global"
    login_url: HttpsRoot | None = Field(default=None, description="Authority host; defaults from cloud.")
    graph_url: HttpsRoot | None = Field(default=None, description="Graph endpoint; defaults from cloud.")
    disable_instance_discovery: bool = Field(
        default=False, description="Set for authority hosts unknown to MSAL (private or local endpoints)."
    )
    credential: CredentialConfig

    @model_validator(mode="before")
    @classmethod
    def _default_endpoints_from_cloud(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        cloud = data.get("cloud", "global")
        endpoints = CLOUD_ENDPOINTS.get(cloud) if isinstance(cloud, str) else None
        if endpoints is None:
            return data
        data = dict(data)
        if data.get("login_url") is None:
            data["login_url"] = endpoints.login_url
        if data.get("graph_url") is None:
            data["graph_url"] = endpoints.graph_url
        return data

    @model_validator(mode="after")
    def _app_credentials_need_client_id(self) -> Connector:
        if self.client_id is None and self.credential.type in ("client_secret", "certificate"):
            _raise_if_any(
                [
                    ConfigIssue(
                        "client_id",
                        f"required for {self.credential.type} credentials "
                        "(the app registration's application id)",
                    )
                ]
            )
        return self

    @property
    def authority(self) -> str:
        """The login host for azure-identity's ``authority``."""
        return self.login_url or CLOUD_ENDPOINTS[self.cloud].login_url

    @property
    def graph_root(self) -> str:
        """Graph's base URL, without a trailing slash or version."""
        return self.graph_url or CLOUD_ENDPOINTS[self.cloud].graph_url

    @property
    def scope(self) -> str:
        """The token scope for Graph application permissions."""
        return f"{self.graph_root}/.default"


class AttributeMapping(_ConfigModel):
    """One Graph attribute taken into one local attribute code."""

    external: AttributePath = Field(
        description=(
            "Graph attribute path (displayName, onPremisesExtensionAttributes.extensionAttribute1, "
            "assignedLicenses.0.skuId, extension_<appid>_<name>), or the pseudo-attributes members "
            "(groups only) and memberOf."
        )
    )
    local: LocalCode = Field(description="The platform's local attribute code.")


# Query parameters the user may write, in canonical spelling, and those the connector owns.
_QUERY_PARAMETERS = ("$filter", "$count", "$search", "$orderby", "$top")
_FORBIDDEN_QUERY_PARAMETERS = {
    "$select": "$select is derived from the mappings; remove it",
    "$expand": "$expand is not supported; map the pseudo-attributes members/memberOf instead",
}
_ORDERBY = re.compile(
    r"\s*[A-Za-z_][A-Za-z0-9_/]*(\s+(asc|desc))?(\s*,\s*[A-Za-z_][A-Za-z0-9_/]*(\s+(asc|desc))?)*\s*",
    re.IGNORECASE,
)


def _split_query(query: str) -> list[tuple[str, str]]:
    """Decode a query string and split it into (key, value) pairs, keys in canonical ``$name`` spelling.

    '&' inside quoted literals ('R&D' in a $filter, "a&b" in a $search) does not split.
    """
    text = unquote(query.strip())
    if text.startswith("?"):
        text = text[1:]
    pairs: list[tuple[str, str]] = []
    for part in _split_outside_quotes(text, "&"):
        if not part.strip():
            continue
        key, _, value = part.partition("=")
        key = key.strip().lower()
        if not key.startswith("$") and f"${key}" in (*_QUERY_PARAMETERS, *_FORBIDDEN_QUERY_PARAMETERS):
            key = f"${key}"  # Graph v1.0 accepts the system query options without '$'
        pairs.append((key, value.strip()))
    return pairs


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    parts, current, quote = [], [], None
    for char in text:
        if quote is None and char == separator:
            parts.append("".join(current))
            current = []
            continue
        if quote is None and char in "'\"":
            quote = char
        elif char == quote:
            quote = None
        current.append(char)
    parts.append("".join(current))
    return parts


def _query_problems(query: str) -> list[str]:
    problems = []
    seen: set[str] = set()
    for key, value in _split_query(query):
        if key in _FORBIDDEN_QUERY_PARAMETERS:
            problems.append(_FORBIDDEN_QUERY_PARAMETERS[key])
            continue
        if key not in _QUERY_PARAMETERS:
            problems.append(f"unsupported query parameter '{key}'; allowed: {', '.join(_QUERY_PARAMETERS)}")
            continue
        if key in seen:
            problems.append(f"{key} is given more than once")
            continue
        seen.add(key)
        if not value:
            problems.append(f"{key} has no value")
        elif key == "$top":
            if not value.isdigit() or not 1 <= int(value) <= 999:
                problems.append("$top must be a whole number from 1 to 999")
        elif key == "$count":
            if value.lower() not in ("true", "false"):
                problems.append("$count must be true or false")
        elif key == "$orderby":
            if not _ORDERBY.fullmatch(value):
                problems.append("$orderby must list attributes, each optionally followed by asc or desc")
        elif key == "$filter":
            try:
                parse_filter(value)
            except FilterError as exc:
                problems.append(f"$filter: {exc}")
        elif key == "$search":
            try:
                parse_search(value)
            except FilterError as exc:
                problems.append(f"$search: {exc}")
    return problems


def _top_level(path: str) -> str:
    return path.partition(".")[0]


class ObjectSelection(_ConfigModel):
    """Which directory objects to read, how to query Graph for them, and how to map their attributes."""

    pseudo_attributes_available: ClassVar[frozenset[str]] = PSEUDO_ATTRIBUTES

    query: str = Field(
        default="",
        description=(
            "Graph query parameters as written in a URL, e.g. "
            "$count=true&$filter=endsWith(mail,'@contoso.com') (a leading '?' and percent-encoding are "
            "accepted). Allowed: $filter, $count, $search, $orderby, $top (1-999)."
        ),
    )
    headers: dict[HeaderName, HeaderValue] = Field(
        default_factory=dict,
        description='Extra request headers, e.g. {"ConsistencyLevel": "eventual"}.',
    )
    mappings: list[AttributeMapping] = Field(min_length=1)
    key: AttributePath = Field(default="id", description="Graph attribute that identifies a record.")
    target_template: str = Field(description="Passed through into the output for the platform.")
    target_folder: str = Field(description="Passed through into the output for the platform.")
    task_id_attribute: LocalCode | None = Field(
        default=None, description="Local attribute code receiving the task's id."
    )
    source_type_attribute: LocalCode | None = Field(
        default=None, description="Local attribute code receiving the connector type."
    )
    excluded_ids: list[Guid] = Field(default_factory=list, description="Ids of objects to leave out.")

    @field_validator("query")
    @classmethod
    def _query_is_supported(cls, query: str) -> str:
        _raise_if_any([ConfigIssue("", problem) for problem in _query_problems(query)])
        return query

    @field_validator("headers")
    @classmethod
    def _header_names_are_distinct(cls, headers: dict[str, str]) -> dict[str, str]:
        first_spelling: dict[str, str] = {}
        issues = []
        for name in headers:
            earlier = first_spelling.setdefault(name.lower(), name)
            if earlier != name:
                issues.append(
                    ConfigIssue(_format_path([name]), f"same header as {earlier} (header names ignore case)")
                )
        _raise_if_any(issues)
        return headers

    @field_validator("mappings")
    @classmethod
    def _mappings_are_one_to_one(cls, mappings: list[AttributeMapping]) -> list[AttributeMapping]:
        issues = []
        locals_seen: dict[str, int] = {}
        externals_seen: dict[str, int] = {}
        for index, mapping in enumerate(mappings):
            first = _top_level(mapping.external)
            if first in PSEUDO_ATTRIBUTES and first not in cls.pseudo_attributes_available:
                issues.append(
                    ConfigIssue(
                        f"[{index}].external",
                        f"{first} is only available for groups (a group's direct member ids); "
                        "users can map memberOf",
                    )
                )
            earlier = locals_seen.setdefault(mapping.local, index)
            if earlier != index:
                issues.append(
                    ConfigIssue(
                        f"[{index}].local",
                        f"local code {mapping.local} is already mapped by mappings[{earlier}]",
                    )
                )
            # Graph property names ignore case, so displayName and displayname are one attribute.
            earlier = externals_seen.setdefault(mapping.external.lower(), index)
            if earlier != index:
                issues.append(
                    ConfigIssue(
                        f"[{index}].external",
                        f"{mapping.external} is already mapped by mappings[{earlier}]; "
                        "an attribute can go into one local code only",
                    )
                )
        _raise_if_any(issues)
        return mappings

    @field_validator("key")
    @classmethod
    def _key_is_a_property(cls, key: str) -> str:
        if _top_level(key) in PSEUDO_ATTRIBUTES:
            raise ValueError(f"{key} is a pseudo-attribute and cannot identify records")
        return key

    @model_validator(mode="after")
    def _special_attributes_are_free(self) -> ObjectSelection:
        mapped = {mapping.local: index for index, mapping in enumerate(self.mappings)}
        issues = []
        for field_name in ("task_id_attribute", "source_type_attribute"):
            code = getattr(self, field_name)
            if code is not None and code in mapped:
                issues.append(
                    ConfigIssue(field_name, f"{code} is already mapped by mappings[{mapped[code]}]")
                )
        if self.task_id_attribute is not None and self.task_id_attribute == self.source_type_attribute:
            issues.append(ConfigIssue("source_type_attribute", "must differ from task_id_attribute"))
        _raise_if_any(issues)
        return self

    def select_properties(self) -> list[str]:
        """Top-level Graph properties to ``$select``: those the mappings and the key read, and ``id``."""
        properties = {"id", _top_level(self.key)}
        properties.update(_top_level(mapping.external) for mapping in self.mappings)
        return sorted(properties - PSEUDO_ATTRIBUTES)

    def query_params(self) -> dict[str, str]:
        """The user's query parameters, decoded, keys spelled ``$filter``, ``$top``, ..."""
        return dict(_split_query(self.query))

    @property
    def pseudo_attributes(self) -> frozenset[str]:
        """The pseudo-attributes (members, memberOf) the mappings use."""
        return frozenset(_top_level(mapping.external) for mapping in self.mappings) & PSEUDO_ATTRIBUTES


class UserSelection(ObjectSelection):
    """Which users to read and how to map them."""

    pseudo_attributes_available: ClassVar[frozenset[str]] = frozenset({"memberOf"})

    include_members_of: list[Guid] = Field(
        default_factory=list,
        description="Keep only users that are direct members of at least one of these groups.",
    )
    exclude_members_of: list[Guid] = Field(
        default_factory=list, description="Leave out users that are direct members of any of these groups."
    )

    @model_validator(mode="after")
    def _groups_are_not_both_included_and_excluded(self) -> UserSelection:
        included = set(self.include_members_of)
        _raise_if_any(
            [
                ConfigIssue(f"exclude_members_of[{index}]", "group is also in include_members_of")
                for index, group_id in enumerate(self.exclude_members_of)
                if group_id in included
            ]
        )
        return self


class GroupSelection(ObjectSelection):
    """Which groups to read and how to map them."""


SyncMode = Literal["full", "incremental"]
MappingsType = Literal["identity_and_access", "identity", "access"]
_READS = {"identity_and_access": ("users", "groups"), "identity": ("users",), "access": ("groups",)}


def _selection_issues(mappings_type: str, given: Iterable[str]) -> list[ConfigIssue]:
    """``users`` is required iff mappings_type includes identity, ``groups`` iff it includes access."""
    needed = _READS[mappings_type]
    given = set(given)
    issues = []
    for selection in ("users", "groups"):
        if selection in needed and selection not in given:
            issues.append(ConfigIssue(selection, f"required because mappings_type is '{mappings_type}'"))
        elif selection in given and selection not in needed:
            issues.append(
                ConfigIssue(
                    selection,
                    f"not allowed because mappings_type '{mappings_type}' reads {needed[0]} only; "
                    f"remove {selection} or set mappings_type to 'identity_and_access'",
                )
            )
    return issues


class ScheduledTask(_ConfigModel):
    """A read of one tenant's users and/or groups, on a schedule or on demand."""

    name: Name = Field(description="Unique task name.")
    connector: Name = Field(description="Name of the connector to read through.")
    enabled: bool = True
    description: str | None = None
    schedule: NcrontabExpression | None = Field(
        default=None,
        description=(
            "NCRONTAB with six fields {second} {minute} {hour} {day} {month} {day-of-week}, "
            "e.g. '0 */15 * * * *'; null for on demand only."
        ),
    )
    mode: SyncMode
    mappings_type: MappingsType
    users: UserSelection | None = None
    groups: GroupSelection | None = None

    @model_validator(mode="after")
    def _selections_match_mappings_type(self) -> ScheduledTask:
        given = [name for name in ("users", "groups") if getattr(self, name) is not None]
        _raise_if_any(_selection_issues(self.mappings_type, given))
        return self

    @property
    def reads_users(self) -> bool:
        return "users" in _READS[self.mappings_type]

    @property
    def reads_groups(self) -> bool:
        return "groups" in _READS[self.mappings_type]


class Config(_ConfigModel):
    """A configuration file: connectors and the scheduled tasks that use them."""

    schema_uri: str | None = Field(default=None, alias="$schema", description="JSON Schema for editors.")
    connectors: list[Connector]
    tasks: list[ScheduledTask]

    @model_validator(mode="after")
    def _names_and_references_hold(self) -> Config:
        _raise_if_any(_reference_issues(self.model_dump(by_alias=True, include={"connectors", "tasks"})))
        return self

    def connector(self, name: str) -> Connector:
        for connector in self.connectors:
            if connector.name == name:
                return connector
        raise KeyError(f"no connector named {name!r}")

    def task(self, name: str) -> ScheduledTask:
        for task in self.tasks:
            if task.name == name:
                return task
        raise KeyError(f"no task named {name!r}")


def _reference_issues(data: Mapping[str, Any]) -> list[ConfigIssue]:
    """Rules across objects: unique names, known connectors, selections matching mappings_type.

    Works on raw (possibly invalid) data, so these are reported together with every other problem.
    """
    issues: list[ConfigIssue] = []
    connectors = data.get("connectors")
    connector_names: list[str] | None = None
    if isinstance(connectors, list):
        connector_names = [item.get("name") for item in connectors if isinstance(item, Mapping)]
        connector_names = [name for name in connector_names if isinstance(name, str)]
        issues += _duplicate_name_issues("connectors", connectors, "connector")
    tasks = data.get("tasks")
    if not isinstance(tasks, list):
        return issues
    issues += _duplicate_name_issues("tasks", tasks, "task")
    for index, task in enumerate(tasks):
        if not isinstance(task, Mapping):
            continue
        path = f"tasks[{index}]"
        connector = task.get("connector")
        if (
            connector_names is not None
            and isinstance(connector, str)
            and re.fullmatch(NAME_PATTERN, connector)
            and connector not in connector_names
        ):
            issues.append(
                ConfigIssue(f"{path}.connector", _unknown_connector_message(connector, connector_names))
            )
        mappings_type = task.get("mappings_type")
        if isinstance(mappings_type, str) and mappings_type in _READS:
            given = [name for name in ("users", "groups") if task.get(name) is not None]
            issues += [
                ConfigIssue(_join_path(path, issue.path), issue.message)
                for issue in _selection_issues(mappings_type, given)
            ]
    return issues


def _duplicate_name_issues(list_path: str, items: list[Any], kind: str) -> list[ConfigIssue]:
    first_index: dict[str, int] = {}
    issues = []
    for index, item in enumerate(items):
        name = item.get("name") if isinstance(item, Mapping) else None
        if not isinstance(name, str):
            continue
        # Names become table keys and blob paths: names differing only by case are too easily confused.
        earlier = first_index.setdefault(name.lower(), index)
        if earlier != index:
            issues.append(
                ConfigIssue(
                    f"{list_path}[{index}].name",
                    f"duplicate {kind} name {name!r} (also {list_path}[{earlier}]; names ignore case)",
                )
            )
    return issues


def _unknown_connector_message(name: str, known: list[str]) -> str:
    message = f"no connector named {name!r} is configured"
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return f"{message}; did you mean {close[0]!r}?"
    if known:
        return f"{message} (configured: {', '.join(sorted(known))})"
    return message


# ------------------------------------------------------------------------------ pydantic error report

_TYPE_MESSAGES = {
    "missing": "required",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "int_type": "must be an integer",
    "list_type": "must be a list",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
}
_USERS_ONLY_KEYS = frozenset({"include_members_of", "exclude_members_of"})


def _walk_loc(loc: tuple[str | int, ...]) -> tuple[list[str | int], type[BaseModel] | None]:
    """Path parts for a pydantic error location, dropping union tags and dict-key markers, and the model
    whose key the last part is (None when it is not a model key)."""
    parts: list[str | int] = []
    annotation: Any = Config
    owner: type[BaseModel] | None = None
    for item in loc:
        if item == "[key]":  # pydantic's marker for an invalid dict key, after the key itself
            continue
        annotation = _strip_optional(annotation)
        owner = None
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            owner = annotation
            field = next(
                (f for name, f in annotation.model_fields.items() if (f.alias or name) == item), None
            )
            annotation = field.annotation if field is not None else None
            parts.append(item)
        elif _is_union(annotation):
            # A discriminated union: pydantic puts the tag in the location; keep the member it names.
            annotation = next((m for m in get_args(annotation) if _tag_of(m) == item), None)
        elif get_origin(annotation) is dict:
            annotation = get_args(annotation)[1]
            parts.append(item)
        elif get_origin(annotation) is list:
            annotation = get_args(annotation)[0]
            parts.append(item)
        else:
            annotation = None
            parts.append(item)
    return parts, owner


def _strip_optional(annotation: Any) -> Any:
    while True:
        if get_origin(annotation) is Annotated:
            annotation = get_args(annotation)[0]
        elif _is_union(annotation):
            members = [m for m in get_args(annotation) if m is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation


def _is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType)


def _tag_of(member: Any) -> Any:
    if isinstance(member, type) and issubclass(member, BaseModel) and "type" in member.model_fields:
        literal = member.model_fields["type"].annotation
        return get_args(literal)[0] if get_args(literal) else None
    return None


def _issues_from_validation_error(exc: ValidationError) -> list[ConfigIssue]:
    issues = []
    for error in exc.errors(include_url=False, include_input=False):
        parts, owner = _walk_loc(error["loc"])
        path = _format_path(parts)
        kind = error["type"]
        ctx = error.get("ctx") or {}
        if kind == "config_rules":
            issues += [ConfigIssue(_join_path(path, issue.path), issue.message) for issue in ctx["issues"]]
            continue
        if kind in ("union_tag_invalid", "union_tag_not_found"):
            path = _join_path(path, "type")
            message = "must be one of " + ", ".join(repr(tag) for tag in _CREDENTIAL_TYPES)
            if kind == "union_tag_not_found":
                message = "required: " + message
        elif kind == "extra_forbidden":
            message = _unknown_key_message(parts[-1] if parts else "", owner)
        elif kind == "string_pattern_mismatch":
            message = _PATTERN_MESSAGES.get(ctx.get("pattern"), f"must match {ctx.get('pattern')}")
        elif kind == "literal_error":
            message = f"must be {ctx.get('expected')}"
        elif kind == "too_short" and ctx.get("min_length") == 1:
            message = "must not be empty"
        elif kind in _TYPE_MESSAGES:
            message = _TYPE_MESSAGES[kind]
        else:
            message = error["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        issues.append(ConfigIssue(path, message))
    return issues


def _unknown_key_message(key: str | int, owner: type[BaseModel] | None) -> str:
    if owner is GroupSelection and key in _USERS_ONLY_KEYS:
        return f"only users can be filtered by group membership; {key} belongs under users"
    message = "unknown key"
    if owner is not None and isinstance(key, str):
        known = [field.alias or name for name, field in owner.model_fields.items()]
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.7)
        if close:
            return f"{message}; did you mean {close[0]!r}?"
        return f"{message}; expected one of: {', '.join(known)}"
    return message


# ------------------------------------------------------------------------------------------ loading


def parse_config(data: Mapping[str, Any]) -> Config:
    """Validate configuration data (parsed JSON). Raises ConfigError listing every problem found."""
    config, issues = _validate(data)
    if config is None:
        raise ConfigError(issues)
    return config


def load_config(path_or_text: str | bytes | PathLike[str]) -> Config:
    """Read and validate a configuration: a path (Path / PathLike) to a JSON file, or JSON text (str).

    Raises ConfigError listing every problem found; invalid JSON is reported with its line and column.
    """
    if isinstance(path_or_text, PathLike):
        try:
            text: str | bytes = Path(path_or_text).read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError([ConfigIssue("", f"cannot read {path_or_text}: {exc}")]) from None
    else:
        text = path_or_text
    data, issues = _parse_json(text)
    if data is None:
        raise ConfigError(issues)
    config, validation_issues = _validate(data)
    issues += validation_issues
    if config is None or issues:
        raise ConfigError(issues)
    return config


def _validate(data: Any) -> tuple[Config | None, list[ConfigIssue]]:
    if not isinstance(data, Mapping):
        return None, [ConfigIssue("", "the configuration must be a JSON object")]
    try:
        return Config.model_validate(data), []
    except ValidationError as exc:
        issues = _issues_from_validation_error(exc)
    # The cross-object rules only run in pydantic when everything else is valid; run them here too so
    # that their problems are reported in the same pass (ConfigError drops the duplicates).
    return None, issues + _reference_issues(data)


class _JsonObject(dict):
    """A parsed JSON object that remembers keys it saw more than once (json keeps the last silently)."""

    duplicate_keys: list[str]


def _object_pairs(pairs: list[tuple[str, Any]]) -> _JsonObject:
    result = _JsonObject()
    result.duplicate_keys = []
    for key, value in pairs:
        if key in result:
            result.duplicate_keys.append(key)
        result[key] = value
    return result


def _parse_json(text: str | bytes) -> tuple[Any, list[ConfigIssue]]:
    """The JSON value (plain dicts and lists) and its duplicate-key problems, or None and a syntax problem."""
    try:
        data = json.loads(text, object_pairs_hook=_object_pairs)
    except json.JSONDecodeError as exc:
        return None, [ConfigIssue("", f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}")]
    except (UnicodeDecodeError, TypeError) as exc:
        return None, [ConfigIssue("", f"invalid JSON: {type(exc).__name__}")]
    issues: list[ConfigIssue] = []
    return _plain(data, [], issues), issues


def _plain(value: Any, parts: list[str | int], issues: list[ConfigIssue]) -> Any:
    if isinstance(value, _JsonObject):
        for key in dict.fromkeys(value.duplicate_keys):
            issues.append(
                ConfigIssue(_format_path([*parts, key]), "key appears more than once in the same object")
            )
        return {key: _plain(item, [*parts, key], issues) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item, [*parts, index], issues) for index, item in enumerate(value)]
    return value


# ------------------------------------------------------------------------------------------- schema


def config_json_schema() -> dict[str, Any]:
    """The JSON Schema of a configuration file (what ``schema/config.schema.json`` holds)."""
    schema = Config.model_json_schema(by_alias=True, mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **schema,
        "title": "Entra Graph connector configuration",
    }


def render_json_schema() -> str:
    """The schema file's text: indented by 2, keys sorted."""
    return json.dumps(config_json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.config", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--write-schema", action="store_true", help=f"write the JSON Schema to {SCHEMA_PATH.name}"
    )
    parser.add_argument("--check", nargs="+", type=Path, metavar="FILE", help="validate configuration files")
    args = parser.parse_args(argv)
    if not args.write_schema and not args.check:
        parser.error("nothing to do: give --write-schema and/or --check FILE")
    status = 0
    if args.write_schema:
        SCHEMA_PATH.parent.mkdir(parents=True, exist_ok=True)
        SCHEMA_PATH.write_text(render_json_schema(), encoding="utf-8")
        print(f"wrote {SCHEMA_PATH}")
    for path in args.check or ():
        try:
            load_config(path)
        except ConfigError as exc:
            status = 1
            print(f"{path}: {len(exc.errors)} problem(s)", file=sys.stderr)
            for issue in exc.errors:
                print(f"  {issue}", file=sys.stderr)
        else:
            print(f"{path}: valid")
    return status


if __name__ == "__main__":
    sys.exit(main())
