"""Graph v1.0 resource paths, resolved segment by segment against the committed metadata extract.

A path starts at an entity set or singleton of Graph's entity container, then each segment is a key (after
a collection), a navigation property, a type cast (qualified by the namespace or the schema's alias), a
function or action bound to the type, or ``$count`` / ``$ref`` / ``$value`` where OData allows them
[OData 4.01 URL conventions, sections 4.3-4.15]. The local Graph uses this to name the segment Graph
cannot resolve ("Resource not found for the segment 'detectedApps'." for a beta-only relationship), and
the route test uses it to check that every route the local Graph serves exists in v1.0.

Only the types in the extract are known: a path that goes through a type the extract does not hold stops
resolving there (:attr:`Resolution.complete` is False) instead of failing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from localgraph import schema
from localgraph.routing import is_cast

_PARAMETER = re.compile(r"^\{\w+\}$")
_OPERATION = re.compile(r"^(?:(?:microsoft\.)?graph\.)?(\w+)(?:\(.*\))?$", re.IGNORECASE)


@dataclass(frozen=True)
class Step:
    segment: str
    kind: str  # entitySet, singleton, key, navigation, cast, function, action, $count, $ref, $value
    type: str | None  # the type the segment yields (None after $count, $ref, $value or an operation)
    collection: bool
    via_navigation: bool = False  # reached through a navigation property (so ``$ref`` may follow)


@dataclass
class Resolution:
    steps: list[Step] = field(default_factory=list)
    unknown: str | None = None  # the first segment that is not a v1.0 segment here
    complete: bool = True  # False: the path went through a type the extract does not describe


def _navigation(type_name: str, name: str):
    try:
        return schema.navigation_property(type_name, name)
    except KeyError:
        return None


def resolve(path: str, *, template: bool = False) -> Resolution:
    """Resolve ``path`` (``/users/{id}/memberOf/graph.group`` as a route template with ``template``,
    else a request path with real keys) against Graph's v1.0 metadata."""
    result = Resolution()
    segments = [s for s in path.strip("/").split("/") if s]
    if not segments:
        result.unknown = path
        return result
    first = segments[0]
    if (type_name := schema.entity_set_type(first)) is not None:
        current: Step = Step(first, "entitySet", type_name, True)
    elif (type_name := schema.singleton_type(first)) is not None:
        current = Step(first, "singleton", type_name, False)
    else:
        result.unknown = first
        return result
    result.steps.append(current)
    for segment in segments[1:]:
        step = _next(current, segment, template)
        if step is None:
            if current.type is not None and not _known(current.type):
                result.complete = False
            else:
                result.unknown = segment
            return result
        result.steps.append(step)
        current = step
    return result


def _known(type_name: str) -> bool:
    try:
        schema.navigation_properties(type_name)
    except KeyError:
        return False
    return True


def _next(current: Step, segment: str, template: bool) -> Step | None:
    type_name = current.type
    if type_name is None or not _known(type_name):
        return None
    lowered = segment.lower()
    if lowered == "$count":
        return Step(segment, "$count", None, False) if current.collection else None
    if lowered == "$ref":
        # A reference to a navigation target: the relationship itself or one member of it.
        return Step(segment, "$ref", None, False) if current.via_navigation else None
    if lowered == "$value":
        streamed = not current.collection and schema.has_stream(type_name)
        return Step(segment, "$value", None, False) if streamed else None
    if is_cast(segment):
        target = schema.cast_type_name(segment)
        if target is not None and _known(target) and schema.derives_from(target, type_name):
            return Step(segment, "cast", target, current.collection, current.via_navigation)
    if not current.collection and (nav := _navigation(type_name, segment)) is not None:
        return Step(segment, "navigation", nav.type, nav.collection, True)
    operation = _OPERATION.match(segment)
    if operation is not None:
        kind = schema.bound_operation(type_name, operation.group(1), collection=current.collection)
        if kind is not None:
            return Step(segment, kind.lower(), None, False)
    if current.collection and not is_cast(segment) and (not template or _PARAMETER.match(segment)):
        return Step(segment, "key", type_name, False, current.via_navigation)
    return None


def unknown_segment(path: str) -> str | None:
    """The first segment of a request path that is not a Graph v1.0 segment where it stands, or None."""
    return resolve(path).unknown
