"""From a Graph object (raw JSON) to an output record in the platform's local attribute codes.

A record is ``{"id": <Graph object id>, "attributes": {<local code>: value, ...}}``. External attributes are
paths: ``displayName``, ``onPremisesExtensionAttributes.extensionAttribute1``, ``assignedLicenses.0.skuId``,
``extension_{appId}_{name}``; a property Graph did not return (delta omits never-set ones) maps to ``null``,
exactly like one it returned as ``null``, so full and incremental reads give the same record. The
pseudo-attributes ``members`` and ``memberOf`` map the object's direct memberships (sorted ids).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from typing import Any

from shared.config import ObjectSelection

SOURCE_TYPE = "Microsoft Entra ID"
MEMBERS = "members"
MEMBER_OF = "memberOf"


def _getter(path: str) -> Callable[[dict[str, Any]], Any]:
    parts = [int(p) if p.isdigit() else p for p in path.split(".")]
    if len(parts) == 1:
        name = parts[0]
        return lambda obj: obj.get(name)

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


class Mapper:
    """Maps objects of one selection (users or groups) of one task."""

    def __init__(self, selection: ObjectSelection, task_id: str) -> None:
        self.selection = selection
        self.task_id = task_id
        self.members_code: str | None = None
        self.member_of_code: str | None = None
        getters = []
        for mapping in selection.mappings:
            if mapping.external == MEMBERS:
                self.members_code = mapping.local
            elif mapping.external == MEMBER_OF:
                self.member_of_code = mapping.local
            else:
                getters.append((mapping.local, _getter(mapping.external)))
        self._getters = tuple(getters)
        self._constants: dict[str, str] = {}
        if selection.task_id_attribute:
            self._constants[selection.task_id_attribute] = task_id
        if selection.source_type_attribute:
            self._constants[selection.source_type_attribute] = SOURCE_TYPE

    @property
    def needs_members(self) -> bool:
        return self.members_code is not None

    @property
    def needs_member_of(self) -> bool:
        return self.member_of_code is not None

    def record(
        self,
        obj: dict[str, Any],
        *,
        members: Iterable[str] | None = None,
        member_of: Iterable[str] | None = None,
    ) -> dict[str, Any]:
        attributes = {code: get(obj) for code, get in self._getters}
        if self.members_code is not None:
            attributes[self.members_code] = sorted(members or ())
        if self.member_of_code is not None:
            attributes[self.member_of_code] = sorted(member_of or ())
        attributes.update(self._constants)
        return {"id": obj["id"], "attributes": attributes}

    def members_of(self, record: dict[str, Any]) -> list[str]:
        """The member ids a record holds (an earlier run's record, for patching)."""
        if self.members_code is None:
            return []
        return list(record["attributes"].get(self.members_code) or ())

    def member_of_of(self, record: dict[str, Any]) -> list[str]:
        if self.member_of_code is None:
            return []
        return list(record["attributes"].get(self.member_of_code) or ())

    def with_memberships(
        self,
        record: dict[str, Any],
        *,
        members: Iterable[str] | None = None,
        member_of: Iterable[str] | None = None,
    ) -> dict[str, Any]:
        attributes = dict(record["attributes"])
        if members is not None and self.members_code is not None:
            attributes[self.members_code] = sorted(members)
        if member_of is not None and self.member_of_code is not None:
            attributes[self.member_of_code] = sorted(member_of)
        return {"id": record["id"], "attributes": attributes}


def record_hash(record: dict[str, Any]) -> int:
    """A 64-bit digest of a record's content, to tell changed records from unchanged ones."""
    canonical = json.dumps(record["attributes"], sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return int.from_bytes(hashlib.blake2b(canonical.encode(), digest_size=8).digest(), "big")


def selection_fingerprint(selection: ObjectSelection | None, extra: str = "") -> str:
    """Changes to any of these settings change the records, so the next run must read everything."""
    if selection is None:
        return "none"
    canonical = selection.model_dump_json(exclude={"target_template", "target_folder"})
    return hashlib.sha256((canonical + extra).encode()).hexdigest()[:16]
