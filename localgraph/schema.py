"""Graph v1.0 entity shapes, from the extract of Microsoft's published metadata.

``localgraph/metadata/graph-v1.0-types.json`` is produced by ``localgraph.metadata.extract_csdl`` from
Graph's CSDL and committed; this module only reads that JSON (once, lazily). It answers what the served
entity types look like (structural and navigation properties, base types, openness) and checks a Graph
JSON object against its type with :func:`check_shape`.

Type names may be given short (``"user"``), qualified (``"microsoft.graph.user"``), by the CSDL alias
(``"graph.user"``) or as an ``@odata.type`` value (``"#microsoft.graph.user"``).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Any, Literal

NAMESPACE = "microsoft.graph"
METADATA_FILE = "graph-v1.0-types.json"

Kind = Literal["primitive", "enum", "complex", "entity"]


@dataclass(frozen=True, slots=True)
class PropertyInfo:
    """A structural property. ``type`` is the element type: ``Edm.String`` for ``Collection(Edm.String)``."""

    name: str
    type: str
    collection: bool
    nullable: bool  # for a collection, whether its items may be null (CSDL semantics)
    kind: Kind
    declared_by: str

    @property
    def full_type(self) -> str:
        return f"Collection({self.type})" if self.collection else self.type


@dataclass(frozen=True, slots=True)
class NavInfo:
    name: str
    type: str
    collection: bool
    declared_by: str
    contains_target: bool = False


@dataclass(frozen=True, slots=True)
class EntityInfo:
    """An entity type as declared: ``properties`` and ``navigation_properties`` are its own, not inherited.

    ``open_type`` is the ``OpenType`` attribute; :func:`is_open_type` also looks at the base types.
    """

    name: str
    base_type: str | None
    abstract: bool
    open_type: bool
    properties: Mapping[str, PropertyInfo] = field(repr=False)
    navigation_properties: Mapping[str, NavInfo] = field(repr=False)
    has_stream: bool = False
    # property -> the $filter operators its description says it supports (Intune documents these)
    filterable: Mapping[str, tuple[str, ...]] = field(default_factory=dict, repr=False)

    @property
    def short_name(self) -> str:
        return _short(self.name)


@dataclass(frozen=True, slots=True)
class ComplexInfo:
    name: str
    base_type: str | None
    open_type: bool
    properties: Mapping[str, PropertyInfo] = field(repr=False)


@dataclass(frozen=True, slots=True)
class EnumInfo:
    name: str
    members: tuple[str, ...]
    is_flags: bool


class _Model:
    def __init__(self, document: Mapping[str, Any]) -> None:
        self.source: str = document["source"]
        self.enums = {
            name: EnumInfo(name, tuple(raw["members"]), raw["isFlags"])
            for name, raw in document["enumTypes"].items()
        }
        entity_names = set(document["entityTypes"])
        complex_names = set(document["complexTypes"])

        def kind(type_name: str) -> Kind:
            if type_name.startswith("Edm."):
                return "primitive"
            if type_name in self.enums:
                return "enum"
            if type_name in complex_names:
                return "complex"
            if type_name in entity_names:
                return "entity"
            raise ValueError(f"{METADATA_FILE}: type {type_name} is referenced but not extracted")

        def props(owner: str, raw: Mapping[str, Any]) -> Mapping[str, PropertyInfo]:
            return MappingProxyType(
                {
                    name: PropertyInfo(
                        name, p["type"], p["collection"], p["nullable"], kind(p["type"]), owner
                    )
                    for name, p in raw.items()
                }
            )

        def navs(owner: str, raw: Mapping[str, Any]) -> Mapping[str, NavInfo]:
            return MappingProxyType(
                {
                    nav: NavInfo(nav, n["type"], n["collection"], owner, n["containsTarget"])
                    for nav, n in raw.items()
                }
            )

        self.entities = {
            name: EntityInfo(
                name,
                raw["baseType"],
                raw["abstract"],
                raw["openType"],
                props(name, raw["properties"]),
                navs(name, raw["navigationProperties"]),
                raw["hasStream"],
                MappingProxyType({p: tuple(ops) for p, ops in raw["filterable"].items()}),
            )
            for name, raw in document["entityTypes"].items()
        }
        # Singleton types known by their navigation properties only (directory, deviceManagement).
        self.navigation_only = {
            name: EntityInfo(
                name,
                raw["baseType"],
                False,
                False,
                MappingProxyType({}),
                navs(name, raw["navigationProperties"]),
            )
            for name, raw in document["navigationOnlyTypes"].items()
        }
        self.aliases: dict[str, str] = dict(document["schemaAliases"])
        self.entity_sets: dict[str, str] = dict(document["entitySets"])
        self.singletons: dict[str, str] = dict(document["singletons"])
        self.bound: dict[str, dict[str, str]] = document["boundOperations"]
        self.complexes = {
            name: ComplexInfo(name, raw["baseType"], raw["openType"], props(name, raw["properties"]))
            for name, raw in document["complexTypes"].items()
        }
        self._structural: dict[str, dict[str, PropertyInfo]] = {}
        self._navigation: dict[str, dict[str, NavInfo]] = {}

    def structured(self, name: str) -> EntityInfo | ComplexInfo | None:
        return self.entities.get(name) or self.complexes.get(name) or self.navigation_only.get(name)

    def chain(self, name: str) -> list[EntityInfo | ComplexInfo]:
        """The type and its base types, most derived first."""
        chain = []
        current: str | None = name
        while current is not None:
            info = self.structured(current)
            if info is None:
                raise KeyError(f"base type {current} of {name} is not extracted")
            chain.append(info)
            current = info.base_type
        return chain

    def structural(self, name: str) -> dict[str, PropertyInfo]:
        if name not in self._structural:
            merged: dict[str, PropertyInfo] = {}
            for info in reversed(self.chain(name)):
                merged.update(info.properties)
            self._structural[name] = merged
        return self._structural[name]

    def navigation(self, name: str) -> dict[str, NavInfo]:
        if name not in self._navigation:
            merged: dict[str, NavInfo] = {}
            for info in reversed(self.chain(name)):
                if isinstance(info, EntityInfo):
                    merged.update(info.navigation_properties)
            self._navigation[name] = merged
        return self._navigation[name]

    def is_open(self, name: str) -> bool:
        return any(info.open_type for info in self.chain(name))

    def derives_from(self, name: str, base: str) -> bool:
        return any(info.name == base for info in self.chain(name))


@cache
def _model() -> _Model:
    text = resources.files("localgraph.metadata").joinpath(METADATA_FILE).read_text(encoding="utf-8")
    return _Model(json.loads(text))


def _short(name: str) -> str:
    prefix = NAMESPACE + "."
    return name[len(prefix) :] if name.startswith(prefix) and "." not in name[len(prefix) :] else name


def qualified_name(name: str) -> str:
    """``user``, ``graph.user``, ``#microsoft.graph.user`` -> ``microsoft.graph.user`` (no lookup)."""
    name = name.removeprefix("#")
    if name.startswith("Edm.") or name.startswith(NAMESPACE + "."):
        return name
    if name.startswith("graph."):
        return NAMESPACE + name[len("graph") :]
    return f"{NAMESPACE}.{name}"


def _structured_name(type_name: str) -> str:
    name = qualified_name(type_name)
    if _model().structured(name) is None:
        raise KeyError(f"unknown entity or complex type {type_name!r}")
    return name


def entity_type(name: str) -> EntityInfo:
    """An extracted entity type; ``KeyError`` if it is not one."""
    info = _model().entities.get(qualified_name(name))
    if info is None:
        raise KeyError(f"unknown entity type {name!r}")
    return info


def complex_type(name: str) -> ComplexInfo:
    info = _model().complexes.get(qualified_name(name))
    if info is None:
        raise KeyError(f"unknown complex type {name!r}")
    return info


def enum_type(name: str) -> EnumInfo:
    info = _model().enums.get(qualified_name(name))
    if info is None:
        raise KeyError(f"unknown enum type {name!r}")
    return info


def entity_type_names() -> list[str]:
    return sorted(_model().entities)


def base_types(type_name: str) -> list[str]:
    """Qualified names of the base types of an entity or complex type, nearest first."""
    return [info.name for info in _model().chain(_structured_name(type_name))[1:]]


def structural_properties(type_name: str) -> dict[str, PropertyInfo]:
    """Own and inherited structural properties of an entity or complex type, base type's first."""
    return dict(_model().structural(_structured_name(type_name)))


def navigation_properties(type_name: str) -> dict[str, NavInfo]:
    """Own and inherited navigation properties of an entity type, base type's first."""
    return dict(_model().navigation(_structured_name(type_name)))


def is_open_type(type_name: str) -> bool:
    """Whether the type or one of its base types is declared ``OpenType``."""
    return _model().is_open(_structured_name(type_name))


def metadata_source() -> str:
    return _model().source


# --- the service's paths: entity container, aliases, bound operations -------------------------------


def schema_alias(alias: str) -> str:
    """The namespace a schema alias stands for (``graph`` -> ``microsoft.graph``); KeyError if none."""
    return _model().aliases[alias]


def cast_type_name(segment: str) -> str | None:
    """A cast segment qualified by namespace or alias -> the qualified type name, or None when the
    qualifier is neither (``graph.user`` and ``microsoft.graph.user`` -> ``microsoft.graph.user``)."""
    qualifier, dot, name = segment.rpartition(".")
    if not dot:
        return None
    model = _model()
    for alias, namespace in model.aliases.items():
        if qualifier.lower() in (alias.lower(), namespace.lower()):
            qualified = f"{namespace}.{name}"
            known = _named({key: key for key in (*model.entities, *model.complexes)}, qualified)
            return known or qualified
    return None


def _named(table: Mapping[str, Any], name: str) -> Any:
    """``table[name]``, else the entry whose name differs only in case (Graph's URLs are case-insensitive)."""
    if name in table:
        return table[name]
    lowered = name.lower()
    return next((value for key, value in table.items() if key.lower() == lowered), None)


def entity_set_type(name: str) -> str | None:
    """The entity type of an entity set of Graph's v1.0 entity container (``users``), or None."""
    return _named(_model().entity_sets, name)


def singleton_type(name: str) -> str | None:
    """The type of a singleton of Graph's v1.0 entity container (``deviceManagement``), or None."""
    return _named(_model().singletons, name)


def navigation_property(type_name: str, name: str) -> NavInfo | None:
    """A navigation property of an extracted entity type (served or navigation-only), own or inherited."""
    return _named(_model().navigation(_structured_name(type_name)), name)


def bound_operation(type_name: str, name: str, *, collection: bool) -> str | None:
    """``"Function"`` or ``"Action"`` if ``name`` is bound to the type (or to a collection of it, with
    ``collection``) or to one of its base types; otherwise None."""
    model = _model()
    for info in model.chain(_structured_name(type_name)):
        key = f"Collection({info.name})" if collection else info.name
        kind = model.bound.get(key, {}).get(name)
        if kind is not None:
            return kind
    return None


def has_stream(type_name: str) -> bool:
    """Whether the entity type (or a base type) is a media entity (``$value``)."""
    return any(getattr(info, "has_stream", False) for info in _model().chain(_structured_name(type_name)))


def derives_from(type_name: str, base: str) -> bool:
    """Whether ``type_name`` is ``base`` or derived from it."""
    return _model().derives_from(_structured_name(type_name), _structured_name(base))


def filterable_properties(type_name: str) -> dict[str, tuple[str, ...]]:
    """Property -> the ``$filter`` operators the metadata's descriptions say it supports ({} if none)."""
    return dict(entity_type(type_name).filterable)


# --- check_shape -------------------------------------------------------------------------------------

EXTENSION_PROPERTY = re.compile(r"extension_[0-9a-fA-F]{32}_[A-Za-z0-9_]+")
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIME = re.compile(r"(\d{2}):(\d{2})(:(\d{2})(\.\d+)?)?")
_DURATION = re.compile(r"-?P(?=\d|T\d)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?")
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*={0,2}")
_INT_RANGES = {
    "Edm.Byte": (0, 2**8 - 1),
    "Edm.SByte": (-(2**7), 2**7 - 1),
    "Edm.Int16": (-(2**15), 2**15 - 1),
    "Edm.Int32": (-(2**31), 2**31 - 1),
    "Edm.Int64": (-(2**63), 2**63 - 1),
}
_UNCHECKED = {"Edm.Stream", "Edm.Untyped", "Edm.PrimitiveType"}


def _got(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return f"{text!r}"
    return type(value).__name__


def _primitive_problem(edm: str, value: Any) -> str | None:
    """Why ``value`` (not null) is not a JSON ``edm`` value, or None if it is."""
    if edm in _UNCHECKED:
        return None
    if edm == "Edm.Boolean":
        return None if isinstance(value, bool) else f"expected {edm}, got {_got(value)}"
    if edm in _INT_RANGES:
        if not isinstance(value, int) or isinstance(value, bool):
            return f"expected {edm}, got {type(value).__name__}"
        low, high = _INT_RANGES[edm]
        return None if low <= value <= high else f"expected {edm}, got {value} (out of range)"
    if edm in ("Edm.Double", "Edm.Single", "Edm.Decimal"):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return None if ok else f"expected {edm}, got {type(value).__name__}"
    if not isinstance(value, str):
        return f"expected {edm}, got {type(value).__name__}"
    if edm == "Edm.String":
        return None
    reason = _string_format_problem(edm, value)
    return None if reason is None else f"expected {edm}, got {_got(value)} ({reason})"


def _string_format_problem(edm: str, value: str) -> str | None:
    if edm == "Edm.Guid":
        return None if _GUID.fullmatch(value) else "not a GUID in 8-4-4-4-12 hex form"
    if edm == "Edm.DateTimeOffset":
        if not _DATETIME.fullmatch(value):
            return "not an ISO 8601 date-time with Z or an offset"
        try:
            datetime.fromisoformat(value)
        except ValueError:
            return "not a valid date-time"
        return None
    if edm == "Edm.Date":
        if not _DATE.fullmatch(value):
            return "not YYYY-MM-DD"
        try:
            date.fromisoformat(value)
        except ValueError:
            return "not a valid date"
        return None
    if edm == "Edm.TimeOfDay":
        match = _TIME.fullmatch(value)
        if not match or int(match[1]) > 23 or int(match[2]) > 59 or int(match[4] or 0) > 59:
            return "not a time of day HH:MM[:SS[.fffffff]]"
        return None
    if edm == "Edm.Duration":
        return None if _DURATION.fullmatch(value) else "not an ISO 8601 duration"
    if edm == "Edm.Binary":
        if _BASE64.fullmatch(value):
            return None
        if _BASE64URL.fullmatch(value):
            try:
                base64.urlsafe_b64decode(value + "=" * (-len(value.rstrip("=")) % 4))
            except (binascii.Error, ValueError):
                return "not base64"
            return None
        return "not base64"
    return f"unsupported primitive type {edm}"


class _Checker:
    def __init__(self, model: _Model) -> None:
        self.model = model
        self.problems: list[str] = []

    def report(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def resolve(self, declared: str, obj: Mapping[str, Any], path: str) -> str:
        """The type an object is checked against: ``declared``, or a derived type named by @odata.type."""
        named = obj.get("@odata.type")
        if named is None:
            return declared
        if not isinstance(named, str):
            self.report(f"{path}.@odata.type", f"expected a type name string, got {_got(named)}")
            return declared
        if named.startswith("#Collection(") or named.startswith("Collection("):
            self.report(f"{path}.@odata.type", f"{named!r} names a collection, the value is an object")
            return declared
        actual = qualified_name(named)
        if self.model.structured(actual) is None:
            self.report(f"{path}.@odata.type", f"unknown type {named!r}")
            return declared
        if not self.model.derives_from(actual, declared):
            self.report(f"{path}.@odata.type", f"{actual} is not {declared} or derived from it")
            return declared
        return actual

    def structured(self, declared: str, obj: Any, path: str) -> None:
        if not isinstance(obj, Mapping):
            self.report(path, f"expected {declared} object, got {_got(obj)}")
            return
        type_name = self.resolve(declared, obj, path)
        model = self.model
        properties = model.structural(type_name)
        navigation = model.navigation(type_name)
        is_open = model.is_open(type_name)
        is_entity = type_name in model.entities
        for key, value in obj.items():
            key_path = f"{path}.{key}"
            if not isinstance(key, str):
                self.report(path, f"key {key!r} is not a string")
            elif "@" in key:
                continue  # an annotation: @odata.type, @odata.id, displayName@odata.type, @removed, ...
            elif (prop := properties.get(key)) is not None:
                self.property(prop, value, key_path)
            elif (nav := navigation.get(key)) is not None:
                self.navigation(nav, value, key_path)
            elif is_open and not is_entity:
                continue  # dynamic property of an open complex type (customSecurityAttributeValue)
            elif is_open and EXTENSION_PROPERTY.fullmatch(key):
                self.extension(value, key_path)
            elif EXTENSION_PROPERTY.fullmatch(key):
                self.report(key_path, f"extension property on {type_name}, which is not an open type")
            else:
                self.report(key_path, f"not a property of {type_name}")

    def property(self, prop: PropertyInfo, value: Any, path: str) -> None:
        if prop.collection:
            if not isinstance(value, list):
                self.report(path, f"expected {prop.full_type}, got {_got(value)}")
                return
            for index, item in enumerate(value):
                self.value(prop, item, f"{path}[{index}]")
        else:
            self.value(prop, value, path)

    def value(self, prop: PropertyInfo, value: Any, path: str) -> None:
        if value is None:
            if not prop.nullable:
                self.report(path, f"expected {prop.type}, got null (not nullable)")
            return
        if prop.kind == "primitive":
            if (problem := _primitive_problem(prop.type, value)) is not None:
                self.report(path, problem)
        elif prop.kind == "enum":
            self.enum(self.model.enums[prop.type], value, path)
        else:
            self.structured(prop.type, value, path)

    def enum(self, info: EnumInfo, value: Any, path: str) -> None:
        if not isinstance(value, str):
            self.report(path, f"expected {info.name} member name, got {_got(value)}")
            return
        names = [part.strip() for part in value.split(",")] if info.is_flags else [value]
        bad = [name for name in names if name not in info.members]
        if bad:
            self.report(path, f"expected a member of {info.name}, got {_got(value)}")

    def navigation(self, nav: NavInfo, value: Any, path: str) -> None:
        known = self.model.structured(nav.type) is not None
        if nav.collection:
            if not isinstance(value, list):
                self.report(path, f"expected Collection({nav.type}) (navigation), got {_got(value)}")
                return
            for index, item in enumerate(value):
                if known:
                    self.structured(nav.type, item, f"{path}[{index}]")
                elif not isinstance(item, Mapping):
                    self.report(f"{path}[{index}]", f"expected {nav.type} object, got {_got(item)}")
        elif value is None:
            return
        elif known:
            self.structured(nav.type, value, path)
        elif not isinstance(value, Mapping):
            self.report(path, f"expected {nav.type} object (navigation), got {_got(value)}")

    def extension(self, value: Any, path: str) -> None:
        """Directory extension values: String, Integer, LargeInteger, Boolean, DateTime, Binary, or a list."""
        items = value if isinstance(value, list) else [value]
        for item in items:
            if item is not None and not isinstance(item, str | int | float | bool):
                self.report(path, f"expected a primitive directory extension value, got {_got(item)}")
                return


def check_shape(type_name: str, obj: Mapping[str, Any]) -> list[str]:
    """Problems with ``obj`` as a Graph JSON value of entity or complex type ``type_name``; [] if none.

    Keys must be structural properties of the type (or of the derived type named by ``@odata.type``),
    navigation properties (an expanded object or list of objects, checked when the target type is
    extracted), annotations (any key with ``@``), or, on open entity types, directory extension properties
    ``extension_{appId without dashes}_{name}`` with primitive values. Values are checked against their
    declared types, recursively. Each problem names its path: ``user.assignedLicenses[0].skuId: ...``.
    """
    name = _structured_name(type_name)
    checker = _Checker(_model())
    checker.structured(name, obj, _short(name))
    return checker.problems
