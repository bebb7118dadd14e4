"""Extract the entity shapes the local Graph serves from Microsoft Graph's published v1.0 metadata.

A developer script, run by hand when the CSDL is refreshed; nothing reads the CSDL at run or test time::

    .venv/bin/python -m localgraph.metadata.extract_csdl /path/to/graph-v1.0.csdl [-o OUTPUT]

The input is Microsoft's ``msgraph-metadata/schemas/v1.0-Prod.csdl`` (OData v4 CSDL XML). The output,
``localgraph/metadata/graph-v1.0-types.json`` by default, holds the served entity types with all their base
types, plus every complex and enum type reachable from their structural properties (transitively, through
complex base types and complex types derived from a reachable one, so that a value naming a derived type
in ``@odata.type`` can be checked). Navigation properties are recorded (name, target type, collection
flag) but not followed.

For the paths the local Graph serves (and the test that checks every one of its routes against v1.0),
it also records: the schemas' aliases (``graph`` -> ``microsoft.graph``: ``graph.user`` is a valid cast);
every entity set and singleton of the entity container with its type; the navigation properties of the
singletons' types that the local Graph serves paths under (``NAVIGATION_ONLY_TYPES``: ``directory``,
``deviceManagement``), without their structural properties; the functions and actions bound to each
extracted type or to a collection of it; which entity types have a media stream (``$value``); and, per
property, the ``$filter`` operators its description says are supported ("Supports $filter operator 'eq'
and 'or'." on Intune's managedDevice: Intune documents filterability in descriptions, not in
``Capabilities.FilterRestrictions``).

Type names are normalized to their namespace-qualified form (``graph.user`` -> ``microsoft.graph.user``,
whatever alias a schema declares). Type maps are sorted by name; properties, navigation properties and
enum members keep their CSDL declaration order, which ``localgraph.schema`` relies on.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

EDM = "{http://docs.oasis-open.org/odata/ns/edm}"

SOURCE = (
    "Microsoft Graph v1.0 CSDL (microsoftgraph/msgraph-metadata schemas/v1.0-Prod.csdl), "
    "extracted by localgraph/metadata/extract_csdl.py"
)

SERVED_ENTITY_TYPES = (
    "microsoft.graph.user",
    "microsoft.graph.group",
    "microsoft.graph.device",
    "microsoft.graph.application",
    "microsoft.graph.servicePrincipal",
    "microsoft.graph.orgContact",
    "microsoft.graph.directoryObject",
    "microsoft.graph.extensionProperty",
    "microsoft.graph.managedDevice",
    "microsoft.graph.windowsProtectionState",
    "microsoft.graph.detectedApp",
    "microsoft.graph.profilePhoto",
    "microsoft.graph.organization",
    "microsoft.graph.domain",
    "microsoft.graph.subscription",  # change notifications (localgraph/subscriptions.py)
)

# Singleton types the local Graph serves paths under: only their navigation properties are extracted.
NAVIGATION_ONLY_TYPES = ("microsoft.graph.directory", "microsoft.graph.deviceManagement")

DEFAULT_OUTPUT = Path(__file__).with_name("graph-v1.0-types.json")

CORE_DESCRIPTION = "Org.OData.Core.V1.Description"
# "Supports $filter operator 'eq' and 'or'.", "Supports $filter operator 'lt' and 'gt'.",
# "Supports $filter operator 'eq', not combine with count."
_FILTER_SENTENCE = re.compile(r"Supports \$filter operators? ((?:'\w+'(?:, | and | or |,? )?)+)")
_QUOTED = re.compile(r"'(\w+)'")


class CsdlError(Exception):
    """The CSDL does not have the shape this extractor expects."""


class _Model:
    """The CSDL's entity, complex and enum types, indexed by namespace-qualified name."""

    def __init__(self, root: ET.Element) -> None:
        self.namespaces: dict[str, str] = {}  # alias or namespace -> namespace
        self.entity: dict[str, ET.Element] = {}
        self.complex: dict[str, ET.Element] = {}
        self.enum: dict[str, ET.Element] = {}
        self.aliases: dict[str, str] = {}  # alias -> namespace, as declared
        self.containers: list[ET.Element] = []
        self.operations: list[ET.Element] = []  # bound functions and actions
        self.annotations: dict[str, list[ET.Element]] = {}  # qualified target -> <Annotation>s
        schemas = list(root.iter(f"{EDM}Schema"))
        if not schemas:
            raise CsdlError("no <Schema> elements: is this an OData v4 CSDL document?")
        for schema in schemas:
            namespace = schema.attrib["Namespace"]
            self.namespaces[namespace] = namespace
            if alias := schema.get("Alias"):
                self.namespaces[alias] = namespace
                self.aliases[alias] = namespace
        for schema in schemas:
            namespace = schema.attrib["Namespace"]
            for element in schema:
                if element.tag == f"{EDM}EntityContainer":
                    self.containers.append(element)
                elif element.tag in (f"{EDM}Function", f"{EDM}Action") and element.get("IsBound") == "true":
                    self.operations.append(element)
                elif element.tag == f"{EDM}Annotations":
                    self.annotations.setdefault(self.qualify_target(element.attrib["Target"]), []).extend(
                        _members(element, "Annotation")
                    )
                kind = {
                    f"{EDM}EntityType": self.entity,
                    f"{EDM}ComplexType": self.complex,
                    f"{EDM}EnumType": self.enum,
                }.get(element.tag)
                if kind is None:
                    continue
                name = f"{namespace}.{element.attrib['Name']}"
                if name in kind:
                    raise CsdlError(f"type {name} is declared twice")
                kind[name] = element

    def qualify(self, raw: str) -> str:
        """``graph.user`` -> ``microsoft.graph.user``; ``Edm.*`` unchanged."""
        if raw.startswith("Edm."):
            return raw
        prefix, dot, name = raw.rpartition(".")
        if not dot or prefix not in self.namespaces:
            raise CsdlError(f"type reference {raw!r} has no known namespace or alias")
        return f"{self.namespaces[prefix]}.{name}"

    def qualify_target(self, raw: str) -> str:
        """An annotation target ``graph.managedDevice/deviceName`` -> ``microsoft.graph.managedDevice/deviceName``;
        targets that are not a type or a type's member (operations, containers) are kept as written."""
        head, slash, member = raw.partition("/")
        if "(" in head:
            return raw
        try:
            return self.qualify(head) + slash + member
        except CsdlError:
            return raw

    def description(self, target: str) -> str:
        for annotation in self.annotations.get(target, ()):
            if annotation.get("Term") == CORE_DESCRIPTION:
                return annotation.get("String", "")
        return ""

    def type_ref(self, raw: str) -> tuple[str, bool]:
        """A property's ``Type`` attribute -> (qualified element type, is collection)."""
        if raw.startswith("Collection(") and raw.endswith(")"):
            return self.qualify(raw[len("Collection(") : -1]), True
        return self.qualify(raw), False

    def base_type(self, element: ET.Element) -> str | None:
        base = element.get("BaseType")
        return self.qualify(base) if base else None


def _bool_attr(element: ET.Element, name: str, default: bool) -> bool:
    value = element.get(name)
    if value is None:
        return default
    if value not in ("true", "false"):
        raise CsdlError(f"{element.get('Name')}: {name}={value!r} is not a CSDL boolean")
    return value == "true"


def _members(element: ET.Element, tag: str) -> list[ET.Element]:
    return [child for child in element if child.tag == f"{EDM}{tag}"]


def _properties(model: _Model, owner: str, element: ET.Element) -> dict[str, dict[str, Any]]:
    properties: dict[str, dict[str, Any]] = {}
    for prop in _members(element, "Property"):
        name = prop.attrib["Name"]
        if name in properties:
            raise CsdlError(f"{owner}.{name} is declared twice")
        type_name, collection = model.type_ref(prop.attrib["Type"])
        properties[name] = {
            "collection": collection,
            "nullable": _bool_attr(prop, "Nullable", True),
            "type": type_name,
        }
    return properties


def _navigation_properties(model: _Model, owner: str, element: ET.Element) -> dict[str, dict[str, Any]]:
    navigation: dict[str, dict[str, Any]] = {}
    for prop in _members(element, "NavigationProperty"):
        name = prop.attrib["Name"]
        if name in navigation:
            raise CsdlError(f"{owner}.{name} is declared twice")
        type_name, collection = model.type_ref(prop.attrib["Type"])
        navigation[name] = {
            "collection": collection,
            "containsTarget": _bool_attr(prop, "ContainsTarget", False),
            "type": type_name,
        }
    return navigation


def _filterable(model: _Model, owner: str, element: ET.Element) -> dict[str, list[str]]:
    """Property -> the ``$filter`` operators its description says it supports (declaration order)."""
    found: dict[str, list[str]] = {}
    for prop in _members(element, "Property"):
        name = prop.attrib["Name"]
        match = _FILTER_SENTENCE.search(model.description(f"{owner}/{name}"))
        if match:
            found[name] = _QUOTED.findall(match.group(1))
    return found


def _entity_container(model: _Model) -> tuple[dict[str, str], dict[str, str]]:
    entity_sets: dict[str, str] = {}
    singletons: dict[str, str] = {}
    for container in model.containers:
        for element in container:
            if element.tag == f"{EDM}EntitySet":
                entity_sets[element.attrib["Name"]] = model.qualify(element.attrib["EntityType"])
            elif element.tag == f"{EDM}Singleton":
                singletons[element.attrib["Name"]] = model.qualify(element.attrib["Type"])
    if not entity_sets:
        raise CsdlError("no <EntityContainer> with entity sets")
    return dict(sorted(entity_sets.items())), dict(sorted(singletons.items()))


def _bound_operations(model: _Model, binding_types: set[str]) -> dict[str, dict[str, str]]:
    """``type`` or ``Collection(type)`` -> {operation name: "Function" | "Action"}, for bindings to
    ``binding_types`` (overloads share one entry)."""
    bound: dict[str, dict[str, str]] = {}
    for operation in model.operations:
        parameters = _members(operation, "Parameter")
        if not parameters:
            raise CsdlError(f"bound operation {operation.get('Name')} has no binding parameter")
        type_name, collection = model.type_ref(parameters[0].attrib["Type"])
        if type_name not in binding_types:
            continue
        key = f"Collection({type_name})" if collection else type_name
        kind = operation.tag.removeprefix(EDM)
        bound.setdefault(key, {})[operation.attrib["Name"]] = kind
    return {key: dict(sorted(names.items())) for key, names in sorted(bound.items())}


def extract(
    root: ET.Element,
    served: tuple[str, ...] = SERVED_ENTITY_TYPES,
    navigation_only: tuple[str, ...] = NAVIGATION_ONLY_TYPES,
) -> dict[str, Any]:
    """The JSON document for ``served`` (namespace-qualified entity type names) from a parsed CSDL, with
    only the navigation properties of ``navigation_only``."""
    model = _Model(root)

    derived_complex: dict[str, list[str]] = {}
    for name, element in model.complex.items():
        if base := model.base_type(element):
            derived_complex.setdefault(base, []).append(name)

    entity_names: set[str] = set()
    for name in served:
        while name is not None and name not in entity_names:
            if name not in model.entity:
                raise CsdlError(f"entity type {name} is not in the CSDL")
            entity_names.add(name)
            name = model.base_type(model.entity[name])

    complex_names: set[str] = set()
    enum_names: set[str] = set()
    pending: list[ET.Element] = [model.entity[name] for name in entity_names]

    def reach(type_name: str) -> None:
        if type_name.startswith("Edm."):
            return
        if type_name in model.enum:
            enum_names.add(type_name)
        elif type_name in model.complex:
            if type_name not in complex_names:
                complex_names.add(type_name)
                pending.append(model.complex[type_name])
                if base := model.base_type(model.complex[type_name]):
                    reach(base)
                for derived in derived_complex.get(type_name, ()):
                    reach(derived)
        elif type_name in model.entity:
            raise CsdlError(f"structural property of entity type {type_name}: not supported")
        else:
            raise CsdlError(f"type {type_name} is referenced but not declared")

    while pending:
        element = pending.pop()
        for prop in _members(element, "Property"):
            reach(model.type_ref(prop.attrib["Type"])[0])

    entity_types = {}
    for name in sorted(entity_names):
        element = model.entity[name]
        entity_types[name] = {
            "abstract": _bool_attr(element, "Abstract", False),
            "baseType": model.base_type(element),
            "filterable": _filterable(model, name, element),
            "hasStream": _bool_attr(element, "HasStream", False),
            "navigationProperties": _navigation_properties(model, name, element),
            "openType": _bool_attr(element, "OpenType", False),
            "properties": _properties(model, name, element),
        }
    navigation_types = {}
    for name in sorted(navigation_only):
        if name not in model.entity:
            raise CsdlError(f"entity type {name} is not in the CSDL")
        if name in entity_names:
            raise CsdlError(f"entity type {name} is both served and navigation-only")
        element = model.entity[name]
        base = model.base_type(element)
        if base is not None and base not in entity_names:
            raise CsdlError(f"base type {base} of navigation-only type {name} is not extracted")
        navigation_types[name] = {
            "baseType": base,
            "navigationProperties": _navigation_properties(model, name, element),
        }
    entity_sets, singletons = _entity_container(model)
    complex_types = {}
    for name in sorted(complex_names):
        element = model.complex[name]
        complex_types[name] = {
            "baseType": model.base_type(element),
            "openType": _bool_attr(element, "OpenType", False),
            "properties": _properties(model, name, element),
        }
    enum_types = {}
    for name in sorted(enum_names):
        element = model.enum[name]
        enum_types[name] = {
            "isFlags": _bool_attr(element, "IsFlags", False),
            "members": [member.attrib["Name"] for member in _members(element, "Member")],
        }
    return {
        "boundOperations": _bound_operations(model, entity_names | set(navigation_types)),
        "complexTypes": complex_types,
        "entitySets": entity_sets,
        "entityTypes": entity_types,
        "enumTypes": enum_types,
        "navigationOnlyTypes": navigation_types,
        "schemaAliases": dict(sorted(model.aliases.items())),
        "singletons": singletons,
        "source": SOURCE,
    }


def _is_leaf(value: Any) -> bool:
    if isinstance(value, dict):
        return all(not isinstance(v, dict | list) for v in value.values())
    if isinstance(value, list):
        return all(not isinstance(v, dict | list) for v in value)
    return True


def dumps(document: Any, indent: int = 0) -> str:
    """JSON with one line per property, navigation property and enum: small and diff-friendly.

    Key order is the document's own (``extract`` builds it sorted where order carries no meaning).
    """
    if _is_leaf(document):
        return json.dumps(document, ensure_ascii=False)
    pad = " " * (indent + 1)
    if isinstance(document, dict):
        if not document:
            return "{}"
        items = [f"{pad}{json.dumps(k)}: {dumps(v, indent + 1)}" for k, v in document.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    items = [f"{pad}{dumps(v, indent + 1)}" for v in document]
    return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("csdl", type=Path, help="Graph v1.0 CSDL (msgraph-metadata schemas/v1.0-Prod.csdl)")
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT, help="JSON file to write")
    args = parser.parse_args(argv)
    try:
        document = extract(ET.parse(args.csdl).getroot())
    except (CsdlError, ET.ParseError, KeyError) as exc:
        print(f"extract_csdl: {args.csdl}: {exc}", file=sys.stderr)
        return 1
    text = dumps(document) + "\n"
    args.output.write_text(text, encoding="utf-8")
    print(
        f"wrote {args.output} ({len(text.encode()):,} bytes): "
        f"{len(document['entityTypes'])} entity, {len(document['complexTypes'])} complex, "
        f"{len(document['enumTypes'])} enum types, {len(document['entitySets'])} entity sets, "
        f"{len(document['singletons'])} singletons"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
