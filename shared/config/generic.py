"""Generic selections: any Graph collection, with per-item sub-queries, mapped into one target template.

A generic selection names a collection path under the v1.0 root (``devices``, ``servicePrincipals``,
``deviceManagement/managedDevices``, ``directory/administrativeUnits``), its query and headers like any
selection, and **sub-queries**: requests run for each item, whose path names fields of the item in braces
(``/deviceManagement/managedDevices/{id}/windowsProtectionState``). A sub-query may have sub-queries of its
own, whose placeholders name fields of *its* result (``/users/{userId}`` under a device GET that returns
``userId``), down to :data:`MAX_DEPTH` levels.

Mappings read the item's attributes as usual, or a sub-query's result as ``<sub-query path>.<attribute>``
(``/deviceManagement/managedDevices/{id}/windowsProtectionState.malwareProtectionEnabled``), list positions
as numbers. How lists map is said in :mod:`shared.extract.subqueries`.

Incremental reads: delta where Graph offers it for the collection (:data:`DELTA_COLLECTIONS`,
docs/graph-behaviour.md section 11); otherwise a configured ``timestamp_property`` (items changed since the
last run's watermark, plus a listing of ids for removals); otherwise every run reads everything, and
validation says so (:func:`incremental_notice`).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, Field, StringConstraints, field_validator, model_validator

from shared.config.fields import ATTRIBUTE_PATH_PATTERN, AttributePath, ConfigModel, LocalCode
from shared.config.issues import ConfigIssue, raise_if_any
from shared.config.queries import top_level
from shared.config.selections import ObjectSelection

MAX_DEPTH = 3
"""Levels of sub-queries: an item's, their results', and theirs."""

DELTA_COLLECTIONS = {
    # collection path (lower case) -> Graph offers /delta for it in v1.0 (docs/graph-behaviour.md section 11)
    "users": True,
    "groups": True,
    "devices": True,
    "applications": True,
    "serviceprincipals": True,
    "contacts": True,
    "directoryroles": True,
    "oauth2permissiongrants": True,
    "directory/administrativeunits": True,
}

TIMESTAMP_PROPERTIES = {
    # collections without delta -> properties Graph filters with gt, usable as a watermark
    "devicemanagement/manageddevices": (
        "lastSyncDateTime",
        "enrolledDateTime",
        "complianceGracePeriodExpirationDateTime",
    ),
}

_SEGMENT = r"[A-Za-z0-9_.()'=,:@$-]+"
COLLECTION_PATTERN = rf"^{_SEGMENT}(/{_SEGMENT})*$"
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_FIELD = re.compile(ATTRIBUTE_PATH_PATTERN)
_RESULT_PATH = re.compile(
    r"^([A-Za-z_][A-Za-z0-9_]*|[0-9]+)(\.([A-Za-z_][A-Za-z0-9_]*|[0-9]+))*$"
)  # may start at a position
SUB_QUERY_PATTERN = r"^/[^\s#\\]+$"
SUB_QUERIES = "subQueries"
"""The relation (pseudo-attribute) that carries an item's sub-query results to the mapper."""


def _check_collection(path: str) -> str:
    segments = path.split("/")
    if any(s in ("", ".", "..") for s in segments) or segments[0].lower() in ("v1.0", "beta"):
        raise ValueError(
            "must be a collection path under the v1.0 root, e.g. deviceManagement/managedDevices"
        )
    if path.lower() == "$batch" or "?" in path:
        raise ValueError("must be a collection path; put query options into query")
    return path


CollectionPath = Annotated[
    str, StringConstraints(pattern=COLLECTION_PATTERN), AfterValidator(_check_collection)
]


def placeholders(path: str) -> list[str]:
    """The fields a sub-query path names, in order (``{id}`` -> ``id``)."""
    return _PLACEHOLDER.findall(path.partition("?")[0])


def _check_sub_query_path(path: str) -> str:
    route = path.partition("?")[0]
    segments = route.split("/")[1:]
    if any(s in ("", ".", "..") for s in segments) or segments[0].lower() in ("v1.0", "beta"):
        raise ValueError(
            "must be a path under the v1.0 root starting with '/', e.g. "
            "/deviceManagement/managedDevices/{id}/windowsProtectionState"
        )
    names = placeholders(path)
    if not names:
        raise ValueError("must name a field of its parent in braces, e.g. {id}")
    for name in names:
        if not _FIELD.fullmatch(name):
            raise ValueError(f"{{{name}}} is not a field name (letters, digits, '_', joined by '.')")
    if "{" in path.partition("?")[2] or "}" in path.partition("?")[2]:
        raise ValueError("placeholders belong in the path, not in its query")
    if _PLACEHOLDER.sub("", route).count("{") or _PLACEHOLDER.sub("", route).count("}"):
        raise ValueError("unbalanced braces")
    return path


SubQueryPath = Annotated[
    str, StringConstraints(pattern=SUB_QUERY_PATTERN), AfterValidator(_check_sub_query_path)
]


class SubQuery(ConfigModel):
    """A request per item (or per result of its parent sub-query)."""

    path: SubQueryPath = Field(
        description=(
            "Path under the v1.0 root with the parent's fields in braces, optionally with query options: "
            "/deviceManagement/managedDevices/{id}/windowsProtectionState, /users/{userId}?$select=id,"
            "displayName. At the first level the placeholder is {id}, the item's id; below, any field of the "
            "parent sub-query's result."
        )
    )
    sub_queries: list[SubQuery] = Field(
        default_factory=list, description="Sub-queries run for each result of this one."
    )


class GenericMapping(ConfigModel):
    """One attribute of the item or of a sub-query's result, taken into one local attribute code."""

    external: str = Field(
        pattern=r"^(/[^\s#\\]+|[A-Za-z_].*)$",
        description=(
            "An attribute path of the item (displayName, deviceActionResults.0.actionName), or "
            "<sub-query path>.<attribute path> (/deviceManagement/managedDevices/{id}/windowsProtectionState."
            "malwareProtectionEnabled); list positions as numbers."
        ),
    )
    local: LocalCode = Field(description="The platform's local attribute code.")


def sub_query_paths(sub_queries: list[SubQuery], depth: int = 1) -> dict[str, int]:
    """Every configured sub-query path (any level) -> its level."""
    found: dict[str, int] = {}
    for sub_query in sub_queries:
        found[sub_query.path] = depth
        found.update(sub_query_paths(sub_query.sub_queries, depth + 1))
    return found


def split_external(external: str, paths: set[str] | dict[str, int]) -> tuple[str | None, str]:
    """(sub-query path, attribute path) of a mapping's external; (None, external) for the item's own."""
    if not external.startswith("/"):
        return None, external
    for path in sorted(paths, key=len, reverse=True):  # the longest configured path that prefixes it
        if external.startswith(path + "."):
            return path, external[len(path) + 1 :]
    return "", external


class GenericSelection(ObjectSelection):
    """Any Graph collection, with sub-queries, mapped into one target template."""

    pseudo_attributes_available: ClassVar[frozenset[str]] = frozenset()

    collection: CollectionPath = Field(
        description=(
            "Collection path under the v1.0 root: devices, applications, servicePrincipals, contacts, "
            "directory/administrativeUnits, deviceManagement/managedDevices, ..."
        )
    )
    mappings: list[GenericMapping] = Field(min_length=1)  # type: ignore[assignment]
    sub_queries: list[SubQuery] = Field(
        default_factory=list, description="Requests run for each item; see mappings for their attributes."
    )
    timestamp_property: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description=(
            "For a collection without delta (deviceManagement/managedDevices): a date-time property Graph "
            "filters with gt (lastSyncDateTime). Incremental runs read the items changed since the last run "
            "(a watermark in the state table) and list ids to find removed ones."
        ),
    )
    watermark_overlap_s: int = Field(
        default=300,
        ge=0,
        le=86400,
        description="Seconds the watermark is set back, for clock skew and late writes.",
    )

    @property
    def stream_name(self) -> str:
        """The name of the selection's stream (its output file, delta link and delivery): the collection's last
        segment (``managedDevices`` for ``deviceManagement/managedDevices``)."""
        return self.collection.rsplit("/", 1)[-1]

    @field_validator("sub_queries")
    @classmethod
    def _sub_queries_hold(cls, sub_queries: list[SubQuery]) -> list[SubQuery]:
        issues: list[ConfigIssue] = []

        def walk(items: list[SubQuery], depth: int, prefix: str, seen: dict[str, str]) -> None:
            for index, item in enumerate(items):
                where = f"{prefix}[{index}]"
                if depth == 1 and placeholders(item.path) != ["id"]:
                    issues.append(
                        ConfigIssue(
                            f"{where}.path",
                            "a first-level sub-query names the item's {id} only; to follow another field, "
                            "read it with one (e.g. /deviceManagement/managedDevices/{id}?$select=userId) "
                            "and put the sub-query under it (/users/{userId})",
                        )
                    )
                if depth > MAX_DEPTH:
                    issues.append(ConfigIssue(where, f"sub-queries nest at most {MAX_DEPTH} levels deep"))
                earlier = seen.setdefault(item.path, where)
                if earlier != where:
                    issues.append(
                        ConfigIssue(
                            f"{where}.path", f"the same path as {earlier}: mappings could not tell them apart"
                        )
                    )
                walk(item.sub_queries, depth + 1, f"{where}.sub_queries", seen)

        walk(sub_queries, 1, "", {})
        raise_if_any(issues)
        return sub_queries

    @model_validator(mode="after")
    def _mappings_name_known_sources(self) -> GenericSelection:
        paths = sub_query_paths(self.sub_queries)
        issues = []
        for index, mapping in enumerate(self.mappings):
            sub_query, attribute = split_external(mapping.external, paths)
            if sub_query == "":
                issues.append(
                    ConfigIssue(
                        f"mappings[{index}].external",
                        "names no configured sub-query; write <sub-query path>.<attribute> with a path from "
                        "sub_queries" + (f" ({', '.join(sorted(paths))})" if paths else ""),
                    )
                )
            elif not (_FIELD if sub_query is None else _RESULT_PATH).fullmatch(attribute):
                issues.append(
                    ConfigIssue(
                        f"mappings[{index}].external",
                        "the attribute after the path must be names joined by '.', list positions as "
                        "numbers (e.g. displayName, deviceActionResults.0.actionName)",
                    )
                )
        allowed = TIMESTAMP_PROPERTIES.get(self.collection.lower())
        if self.timestamp_property is not None and allowed and self.timestamp_property not in allowed:
            issues.append(
                ConfigIssue(
                    "timestamp_property",
                    f"Graph filters {self.collection} with gt only on {', '.join(allowed)} "
                    "(docs/graph-behaviour.md section 11)",
                )
            )
        if self.collection.lower().startswith("devicemanagement/") and "$search" in self.query_params():
            issues.append(
                ConfigIssue(
                    "query", "Intune collections do not support $search (docs/graph-behaviour.md section 11)"
                )
            )
        if self.timestamp_property is not None and self.delta_offered:
            issues.append(
                ConfigIssue(
                    "timestamp_property",
                    f"Graph offers delta for {self.collection}: incremental runs use it; remove this",
                )
            )
        raise_if_any(issues)
        return self

    @property
    def delta_offered(self) -> bool:
        return DELTA_COLLECTIONS.get(self.collection.lower(), False)

    @property
    def pseudo_attributes(self) -> frozenset[str]:
        return frozenset({SUB_QUERIES}) if self.sub_queries else frozenset()

    def select_properties(self) -> list[str]:
        """The item's top-level properties the mappings and the key read, and ``id``."""
        properties = {"id", top_level(self.key)}
        paths = sub_query_paths(self.sub_queries)
        for mapping in self.mappings:
            sub_query, attribute = split_external(mapping.external, paths)
            if sub_query is None:
                properties.add(top_level(attribute))
        return sorted(properties)

    def incremental_notice(self) -> str | None:
        """What an incremental task over this collection does when Graph offers no delta for it and no
        timestamp property is set: it reads everything every run."""
        if self.delta_offered or self.timestamp_property is not None:
            return None
        return (
            f"Graph offers no delta for {self.collection} and no timestamp_property is set: every run of this "
            "incremental task reads everything (a full read)"
        )


# Mapping paths are validated by the selection (they need the sub-query paths); AttributePath is re-exported
# for the item's own attributes.
__all__ = [
    "MAX_DEPTH",
    "SUB_QUERIES",
    "AttributePath",
    "GenericMapping",
    "GenericSelection",
    "SubQuery",
    "config_notices",
    "placeholders",
    "split_external",
    "sub_query_paths",
]


def config_notices(config: Any) -> list[str]:
    """What validation says beyond problems: incremental generic tasks over collections without delta."""
    notices = []
    for index, task in enumerate(getattr(config, "tasks", ())):
        generic = getattr(task, "generic", None)
        if generic is not None and getattr(task, "mode", None) == "incremental":
            notice = generic.incremental_notice()
            if notice:
                notices.append(f"tasks[{index}].generic ({task.name}): {notice}")
    return notices
