"""From a Graph object (raw JSON) to an output record in the platform's local attribute codes.

A record is ``{"id": <Graph object id>, "attributes": {<local code>: value, ...}}``. External attributes are
paths: ``displayName``, ``onPremisesExtensionAttributes.extensionAttribute1``, ``assignedLicenses.0.skuId``,
``extension_{appId}_{name}``; a property Graph did not return (delta omits never-set ones) maps to ``null``,
exactly like one it returned as ``null``, so full and incremental reads give the same record. The
pseudo-attributes ``members`` and ``memberOf`` map the object's direct memberships (sorted ids).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime
from typing import Any

from shared.config import PSEUDO_ATTRIBUTES, ObjectSelection
from shared.config.generic import SUB_QUERIES, GenericSelection, split_external, sub_query_paths
from shared.extract.fanout import MemberIds

SOURCE_TYPE = "Microsoft Entra ID"
MEMBERS = "members"
MEMBER_OF = "memberOf"


def _getter(path: str) -> Callable[[dict[str, Any]], Any]:
    if "." not in path:
        return lambda obj: obj.get(path)
    parts: list[int | str] = [int(p) if p.isdigit() else p for p in path.split(".")]

    def get(obj: dict[str, Any]) -> Any:
        value: Any = obj
        for part in parts:
            if isinstance(part, int):
                if not isinstance(value, list) or part >= len(value):
                    return None
                value = value[part]
            elif isinstance(value, dict):
                value = value.get(part)
            else:
                return None
            if value is None:
                return None
        return value

    return get


def _list_getter(path: str) -> Callable[[Any], Any]:
    """A sub-query result's attribute (:mod:`shared.extract.subqueries`): a name over a list maps every
    item (``null`` where one has none), a number picks one item."""
    parts: list[int | str] = [int(p) if p.isdigit() else p for p in path.split(".")]

    def get(value: Any, rest: list[int | str]) -> Any:
        for index, part in enumerate(rest):
            if value is None:
                return None
            if isinstance(part, int):
                if not isinstance(value, list) or part >= len(value):
                    return None
                value = value[part]
            elif isinstance(value, list):
                return [get(item, rest[index:]) for item in value]
            elif isinstance(value, dict):
                value = value.get(part)
            else:
                return None
        return value

    return lambda result: get(result, parts)


_DATE_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:\d\d)")
_DATE = re.compile(r"\d{4}-\d\d-\d\d")


def date_formatter(datetime_format: str | None, date_format: str | None) -> Callable[[Any], Any] | None:
    """Reformats values in Graph's date-time (Edm.DateTimeOffset, ``2024-05-01T08:30:00Z``) and date
    (Edm.Date, ``2024-05-01``) forms with the selection's strftime formats, in lists too; other values, and
    strings that are not valid dates, pass unchanged."""
    if datetime_format is None and date_format is None:
        return None

    def convert(value: Any) -> Any:
        if isinstance(value, list):
            return [convert(item) for item in value]
        if not isinstance(value, str):
            return value
        try:
            if datetime_format is not None and _DATE_TIME.fullmatch(value):
                return datetime.fromisoformat(value).strftime(datetime_format)
            if date_format is not None and _DATE.fullmatch(value):
                return date.fromisoformat(value).strftime(date_format)
        except ValueError:
            return value
        return value

    return convert


class Mapper:
    """Maps objects of one selection of one task; relations (pseudo-attributes) arrive as id lists."""

    def __init__(self, selection: ObjectSelection, task_id: str) -> None:
        self.selection = selection
        self.task_id = task_id
        self.related_codes: dict[str, str] = {}  # pseudo-attribute -> local code
        getters = []
        sub_getters = []  # (local code, sub-query path, getter): generic selections' sub-query attributes
        paths = sub_query_paths(selection.sub_queries) if isinstance(selection, GenericSelection) else {}
        for mapping in selection.mappings:
            source, attribute = split_external(mapping.external, paths)
            if mapping.external in PSEUDO_ATTRIBUTES:
                self.related_codes[mapping.external] = mapping.local
            elif source:
                sub_getters.append((mapping.local, source, _list_getter(attribute)))
            else:
                getters.append((mapping.local, _getter(mapping.external)))
        key_code = selection.key_attribute
        if key_code is not None and key_code not in {mapping.local for mapping in selection.mappings}:
            getters.append((key_code, _getter(selection.key)))  # an unmapped key, carried under its name
        self._getters = tuple(getters)
        self._sub_getters = tuple(sub_getters)
        self._dates = date_formatter(selection.datetime_format, selection.date_format)
        self._mapped_codes = tuple(code for code, _ in getters) + tuple(code for code, _, _ in sub_getters)
        self._constants: dict[str, str] = {}
        if selection.task_id_attribute:
            self._constants[selection.task_id_attribute] = task_id
        if selection.source_type_attribute:
            self._constants[selection.source_type_attribute] = SOURCE_TYPE

    @property
    def needs_members(self) -> bool:
        return MEMBERS in self.related_codes

    @property
    def needs_member_of(self) -> bool:
        return MEMBER_OF in self.related_codes

    def record(
        self,
        obj: dict[str, Any],
        related: Mapping[str, Iterable[str] | None] | None = None,
        *,
        packed: bool = False,
    ) -> dict[str, Any]:
        """``packed``: packed member ids stay packed (:class:`MemberIds`, sorted when the record is encoded:
        ``encode_line``), for records written straight to the output; otherwise every value is plain JSON."""
        attributes = {code: get(obj) for code, get in self._getters}
        for name, code in self.related_codes.items():
            value = (related or {}).get(name)
            attributes[code] = value if packed and isinstance(value, MemberIds) else sorted(value or ())
        if self._sub_getters:
            results: Any = (related or {}).get(SUB_QUERIES) or {}
            for code, source, get in self._sub_getters:
                attributes[code] = get(results.get(source))
        if self._dates is not None:
            convert = self._dates
            for code in self._mapped_codes:
                attributes[code] = convert(attributes[code])
        attributes.update(self._constants)
        return {"id": obj["id"], "attributes": attributes}

    def related_of(self, record: dict[str, Any], name: str) -> list[str]:
        """The ids a record (an earlier run's) holds for a relation, for patching."""
        code = self.related_codes.get(name)
        if code is None:
            return []
        value = record["attributes"].get(code) or ()
        return value if isinstance(value, MemberIds) else list(value)  # type: ignore[return-value]

    def with_related(self, record: dict[str, Any], related: Mapping[str, Iterable[str]]) -> dict[str, Any]:
        attributes = dict(record["attributes"])
        for name, values in related.items():
            code = self.related_codes.get(name)
            if code is not None:
                attributes[code] = values if isinstance(values, MemberIds) else sorted(values)
        return {"id": record["id"], "attributes": attributes}
