"""Streams are data: a :class:`StreamSpec` says how to read one Graph collection, and one runner runs any.

A specification names the collection, the id that joins its objects, whether Graph offers delta for it, how
``$select`` is derived, which per-item fan-outs (*relations*: a group's ``members``, an object's ``memberOf``,
later sub-queries) and which scoping plug-ins (users "by group membership") it offers, and its page-size
rules. A :class:`Stream` binds a specification to a task's selection: what to ask Graph for, and how.

Full reads send the task's own query (``$filter``, ``$search``, ``$count``, ``$orderby``, ``$top``) and
headers, with a ``$select`` derived from the mappings. Delta rounds cannot filter (Graph accepts only ``id``
filters there, docs/graph-behaviour.md section 3), so the same ``$filter`` / ``$search`` are evaluated
client-side with the very evaluator the local Graph uses; the properties they read are added to the delta
``$select``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

from shared import odata
from shared.config import GroupSelection, ObjectSelection, ScheduledTask

if TYPE_CHECKING:
    from shared.extract.relations import RelationFactory
    from shared.extract.scoping import ScopingFactory

PAGE_SIZE = 999  # Graph's maximum for directory collections (docs/graph-behaviour.md section 1)


@dataclass(frozen=True)
class SmallPages:
    """Graph allows at most ``size`` objects a page when any of ``properties`` is selected or filtered."""

    properties: frozenset[str]
    size: int


@dataclass(frozen=True)
class StreamSpec:
    """How to read one Graph collection. Frozen: a specification is data, shared by every run."""

    name: str  # the stream's name: output file ``{name}.jsonl``, history counts, state keys
    collection: str  # the collection's path under /v1.0 ("users", "devices")
    key: str = "id"  # the property that identifies an object in Graph (joins, delta, the view)
    delta: bool = True  # Graph offers ``{collection}/delta``
    watermark: str | None = (
        None  # no delta: a timestamp property for incremental rounds (shared.extract.generic)
    )
    relations: Mapping[str, RelationFactory] = field(default_factory=lambda: MappingProxyType({}))
    scopings: tuple[ScopingFactory, ...] = ()
    page_size: int = PAGE_SIZE
    small_pages: SmallPages | None = None
    odata_type: str | None = None  # "#microsoft.graph.group": what memberOf keeps of a sub-collection

    def select(self, selection: ObjectSelection) -> list[str]:
        """``$select``: the properties the mappings and the record key read, and the object's id."""
        return sorted(set(selection.select_properties()) | {self.key})


@dataclass(frozen=True)
class Stream:
    """A specification bound to a task's selection: one stream of one run."""

    spec: StreamSpec
    selection: ObjectSelection

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def collection(self) -> str:
        return self.spec.collection

    def select(self) -> list[str]:
        return self.spec.select(self.selection)

    def list_params(self) -> dict[str, str]:
        query = self.selection.query_params()
        select = self.select()
        size = self.spec.page_size
        small = self.spec.small_pages
        if small is not None and any(p in select or p in query.get("$filter", "") for p in small.properties):
            size = small.size
        params = {"$top": str(size)}
        params.update(query)
        params["$select"] = ",".join(select)
        return params

    def headers(self) -> dict[str, str]:
        return dict(self.selection.headers)

    def delta_select(self, *, members: bool = False) -> list[str]:
        """Delta tracks only selected properties: those mapped, those the client-side filter reads."""
        names = set(self.select())
        query = self.selection.query_params()
        if "$filter" in query:
            names |= set(odata.analyze(odata.parse_filter(query["$filter"])).properties)
        if "$search" in query:
            names |= set(odata.search_properties(odata.parse_search(query["$search"])))
        if members:
            names.add("members")
        return sorted(names)

    def related(self) -> list[str]:
        """The relations (pseudo-attributes) this stream's mappings use."""
        unknown = self.selection.pseudo_attributes - set(self.spec.relations)
        if unknown:
            raise ValueError(f"stream {self.name} offers no {', '.join(sorted(unknown))}")
        return sorted(self.selection.pseudo_attributes)

    def fingerprint(self) -> str:
        """Changes to any of these settings change the records, so the next run must read everything.

        Settings that only steer delivery are left out: where the platform stores the records (target
        template and folder, in the manifest and batch headers) and the deletion marking (applied to the
        delivered view by shared/delivery); changing them never changes a record of the view. A generic
        selection's ``watermark_overlap_s`` is left out as well: it only widens the window a watermark round
        reads again (an item read twice is the same record), so changing it keeps applying changes. Settings at
        their default are left out too, so a release that adds a setting (with a default that keeps today's
        records) changes no task's fingerprint; one that changes what a default does, or this format, raises
        :data:`shared.extract.planning.FINGERPRINT_VERSION`."""
        canonical = self.selection.model_dump_json(
            exclude={"target_template", "target_folder", "deletion_marking", "watermark_overlap_s"},
            exclude_defaults=True,
        )
        return hashlib.sha256((canonical + self.name).encode()).hexdigest()[:16]


def _users_spec() -> StreamSpec:
    from shared.extract.relations import member_of
    from shared.extract.scoping import by_group_membership

    return StreamSpec(
        name="users",
        collection="users",
        relations=MappingProxyType({"memberOf": member_of}),
        scopings=(by_group_membership,),
        # Graph pages signInActivity at 500 users at most (docs/graph-behaviour.md section 8).
        small_pages=SmallPages(frozenset({"signInActivity"}), 500),
        odata_type="#microsoft.graph.user",
    )


def _groups_spec() -> StreamSpec:
    from shared.extract.relations import member_of, members

    return StreamSpec(
        name="groups",
        collection="groups",
        relations=MappingProxyType({"members": members, "memberOf": member_of}),
        odata_type="#microsoft.graph.group",
    )


USERS = _users_spec()
GROUPS = _groups_spec()
MEMBERSHIPS = GROUPS
"""The stream whose delta round carries membership changes (``members@delta``): memberOf relations and
"by group membership" scoping follow it."""


def membership_probe() -> Stream:
    """The groups stream a task reads only for memberships (users with memberOf or scoped by groups)."""
    selection = GroupSelection.model_validate(
        {
            "mappings": [{"external": "members", "local": "members"}],
            "target_template": "",
            "target_folder": "",
        }
    )
    return Stream(MEMBERSHIPS, selection)


TaskStreams = Callable[[ScheduledTask], list[Stream]]


def task_streams(task: ScheduledTask) -> list[Stream]:
    """The streams a scheduled task reads: its users and/or groups selections, or its generic selection."""
    streams = []
    if task.generic is not None:
        from shared.extract.generic import generic_stream

        streams.append(generic_stream(task.generic))
    if task.users is not None:
        streams.append(Stream(USERS, task.users))
    if task.groups is not None:
        streams.append(Stream(GROUPS, task.groups))
    return streams
