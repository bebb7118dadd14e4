"""Field types and patterns shared by the configuration models, and their common base model."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

import croniter
from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints

from shared.secrets import APP_SETTING_NAME_PATTERN, KEY_VAULT_SECRET_URI_PATTERN

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

PATTERN_MESSAGES = {
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
EntityId = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
"""A connector's or task's stable id: given once when it is first stored (a GUID), never changed by a rename."""
ID_DESCRIPTION = (
    "Stable id, given when first stored and never changed (a rename keeps it); omit in new definitions."
)
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


def _check_date_format(text: str) -> str:
    if "%" not in text:
        raise ValueError("must be a strftime format with at least one % directive, e.g. %d.%m.%Y")
    try:
        datetime(2024, 5, 1, 8, 30, tzinfo=UTC).strftime(text)
    except ValueError as exc:
        raise ValueError(f"not a strftime format: {exc}") from None
    return text


DateFormat = Annotated[
    str, StringConstraints(min_length=1, max_length=64), AfterValidator(_check_date_format)
]
"""A strftime format for mapped dates or date-times (``%d.%m.%Y``)."""


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

# ---------------------------------------------------------------------------------------- models


class ConfigModel(BaseModel):
    # Unknown keys are errors (a typo silently ignored is a bug); JSON types are taken as they are ("true" is
    # not a boolean); inputs are kept out of error text because they may be secrets.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, hide_input_in_errors=True)
