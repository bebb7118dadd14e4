"""Selections: which objects of a collection a task reads, with which query, and how they are mapped."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from shared.config.delivery import DeletionMarking
from shared.config.fields import (
    PSEUDO_ATTRIBUTES,
    AttributePath,
    ConfigModel,
    DateFormat,
    Guid,
    HeaderName,
    HeaderValue,
    LocalCode,
)
from shared.config.issues import ConfigIssue, format_path, raise_if_any
from shared.config.queries import query_problems, split_query, top_level


class AttributeMapping(ConfigModel):
    """One Graph attribute taken into one local attribute code."""

    external: AttributePath = Field(
        description=(
            "Graph attribute path (displayName, onPremisesExtensionAttributes.extensionAttribute1, "
            "assignedLicenses.0.skuId, extension_<appid>_<name>), or the pseudo-attributes members "
            "(groups only) and memberOf."
        )
    )
    local: LocalCode = Field(description="The platform's local attribute code.")


class ObjectSelection(ConfigModel):
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
    key: AttributePath = Field(
        default="id",
        description=(
            "Graph attribute that identifies a record. Each record carries another key's value under the "
            "local code of the mapping that reads it, or, unmapped, under the key's own name; the manifest "
            "names that code (key_attribute)."
        ),
    )
    target_template: str = Field(description="Passed through into the output for the platform.")
    target_folder: str = Field(description="Passed through into the output for the platform.")
    task_id_attribute: LocalCode | None = Field(
        default=None, description="Local attribute code receiving the task's id."
    )
    source_type_attribute: LocalCode | None = Field(
        default=None, description="Local attribute code receiving the connector type."
    )
    excluded_ids: list[Guid] = Field(default_factory=list, description="Ids of objects to leave out.")
    datetime_format: DateFormat | None = Field(
        default=None,
        description=(
            "strftime format for mapped date-time values (Graph's 2024-05-01T08:30:00Z, in UTC), e.g. "
            "'%d.%m.%Y %H:%M:%S'; none: as Graph sends them."
        ),
    )
    date_format: DateFormat | None = Field(
        default=None,
        description="strftime format for mapped date values (Graph's 2024-05-01), e.g. '%d.%m.%Y'.",
    )
    deletion_marking: DeletionMarking | None = Field(
        default=None, description="Mark objects delivered before that are now gone or out of scope."
    )

    @field_validator("query")
    @classmethod
    def _query_is_supported(cls, query: str) -> str:
        raise_if_any([ConfigIssue("", problem) for problem in query_problems(query)])
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
                    ConfigIssue(format_path([name]), f"same header as {earlier} (header names ignore case)")
                )
        raise_if_any(issues)
        return headers

    @field_validator("mappings")
    @classmethod
    def _mappings_are_one_to_one(cls, mappings: list[AttributeMapping]) -> list[AttributeMapping]:
        issues = []
        locals_seen: dict[str, int] = {}
        externals_seen: dict[str, int] = {}
        for index, mapping in enumerate(mappings):
            first = top_level(mapping.external)
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
        raise_if_any(issues)
        return mappings

    @field_validator("key")
    @classmethod
    def _key_is_a_property(cls, key: str) -> str:
        if top_level(key) in PSEUDO_ATTRIBUTES:
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
        if self.key != "id" and not self._key_is_mapped() and self.key in mapped:
            issues.append(
                ConfigIssue(
                    "key",
                    f"records carry the unmapped key under its own name, but {self.key} is the local code of "
                    f"mappings[{mapped[self.key]}]; map {self.key} to a local code instead",
                )
            )
        if self.task_id_attribute is not None and self.task_id_attribute == self.source_type_attribute:
            issues.append(ConfigIssue("source_type_attribute", "must differ from task_id_attribute"))
        raise_if_any(issues)
        return self

    def _key_is_mapped(self) -> bool:
        return any(mapping.external.lower() == self.key.lower() for mapping in self.mappings)

    @property
    def key_attribute(self) -> str | None:
        """The local code that carries the record key's value: the mapping's that reads it, or the key's own
        name when no mapping does (None when the key is the object id)."""
        if self.key == "id":
            return None
        for mapping in self.mappings:
            if mapping.external.lower() == self.key.lower():
                return mapping.local
        return self.key

    def select_properties(self) -> list[str]:
        """Top-level Graph properties to ``$select``: those the mappings and the key read, and ``id``."""
        properties = {"id", top_level(self.key)}
        properties.update(top_level(mapping.external) for mapping in self.mappings)
        return sorted(properties - PSEUDO_ATTRIBUTES)

    def query_params(self) -> dict[str, str]:
        """The user's query parameters, decoded, keys spelled ``$filter``, ``$top``, ..."""
        return dict(split_query(self.query))

    @property
    def pseudo_attributes(self) -> frozenset[str]:
        """The pseudo-attributes (members, memberOf) the mappings use."""
        return frozenset(top_level(mapping.external) for mapping in self.mappings) & PSEUDO_ATTRIBUTES


class UserSelection(ObjectSelection):
    """Which users to read and how to map them."""

    pseudo_attributes_available: ClassVar[frozenset[str]] = frozenset({"memberOf"})

    include_members_of: list[Guid] = Field(
        default_factory=list,
        description="Keep only users that are members of at least one of these groups (see membership).",
    )
    exclude_members_of: list[Guid] = Field(
        default_factory=list, description="Leave out users that are members of any of these groups."
    )
    membership: Literal["direct", "transitive"] = Field(
        default="direct",
        description=(
            "For include_members_of / exclude_members_of: direct members only, or members of nested groups "
            "too (transitive, Graph's transitiveMembers)."
        ),
    )

    @model_validator(mode="after")
    def _groups_are_not_both_included_and_excluded(self) -> UserSelection:
        included = set(self.include_members_of)
        raise_if_any(
            [
                ConfigIssue(f"exclude_members_of[{index}]", "group is also in include_members_of")
                for index, group_id in enumerate(self.exclude_members_of)
                if group_id in included
            ]
        )
        return self


class GroupSelection(ObjectSelection):
    """Which groups to read and how to map them."""
