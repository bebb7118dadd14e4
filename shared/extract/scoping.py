"""Which objects a stream keeps: its :class:`Scope`, and scoping plug-ins such as "by group membership".

A scope leaves out the selection's ``excluded_ids``; scoping plug-ins add rules a query cannot express
(users "in one of these groups" / "in none of those"); for delta results (which Graph cannot filter) the
task's ``$filter`` and ``$search`` are evaluated client-side.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from shared import odata
from shared.config import ObjectSelection, UserSelection
from shared.extract.fanout import FanOut, SubQuery

if TYPE_CHECKING:
    from shared.extract.incremental import DeltaRound


@dataclass
class Scope:
    """Which objects a stream keeps. ``client_side`` adds the task's $filter/$search (delta results)."""

    excluded: frozenset[str] = frozenset()
    include: frozenset[str] | None = None  # members of the include groups (None: no such rule)
    exclude_members: frozenset[str] = frozenset()
    predicate: Callable[[Mapping[str, Any]], bool] | None = None
    search: odata.SearchNode | None = None

    def keeps_id(self, object_id: str) -> bool:
        if object_id in self.excluded or object_id in self.exclude_members:
            return False
        return self.include is None or object_id in self.include

    def keeps(self, obj: Mapping[str, Any]) -> bool:
        if not self.keeps_id(obj["id"]):
            return False
        if self.predicate is not None and not self.predicate(obj):
            return False
        return self.search is None or odata.evaluate_search(self.search, obj)


class Scoping(Protocol):
    """A scoping plug-in: narrows a scope, and names the objects that may join a view without a delta entry
    of their own (their membership changed, not their properties)."""

    uses_membership_round: bool

    async def narrow(self, scope: Scope, fanout: FanOut) -> Scope: ...
    def candidates(self, memberships: DeltaRound) -> set[str]: ...


ScopingFactory = Callable[[ObjectSelection], "Scoping | None"]


GROUP_TYPE = "#microsoft.graph.group"


@dataclass
class _Members:
    """A group's (transitive) members: every id, and which of them are groups (nested groups)."""

    ids: set[str] = field(default_factory=set)
    groups: set[str] = field(default_factory=set)

    def add(self, items: list[dict[str, Any]]) -> None:
        for item in items:
            self.ids.add(item["id"])
            if item.get("@odata.type") == GROUP_TYPE:
                self.groups.add(item["id"])


@dataclass
class ByGroupMembership:
    """Keep objects in any of ``include`` (if given) and in none of ``exclude``: direct members, or with
    ``transitive`` members of nested groups too (``/groups/{id}/transitiveMembers``)."""

    include: list[str]
    exclude: list[str]
    transitive: bool = False
    uses_membership_round: bool = field(default=True, init=False)
    _included: frozenset[str] = field(default=frozenset(), init=False)
    _exclude_tree: set[str] = field(default_factory=set, init=False)  # exclude groups and those nested

    async def _members(self, fanout: FanOut, group_ids: list[str]) -> _Members:
        """Everyone in any of the groups (missing groups count as empty)."""
        found = _Members()
        relation = "transitiveMembers" if self.transitive else "members"
        query = SubQuery(f"/groups/{{id}}/{relation}?$select=id&$top=999", _Members)
        for collector in (await fanout.collections(group_ids, query)).values():
            if collector is not None:
                found.ids |= collector.ids
                found.groups |= collector.groups
        return found

    async def narrow(self, scope: Scope, fanout: FanOut) -> Scope:
        include = frozenset((await self._members(fanout, self.include)).ids) if self.include else None
        exclude: frozenset[str] = frozenset()
        if self.exclude:
            excluded = await self._members(fanout, self.exclude)
            exclude = frozenset(excluded.ids)
            self._exclude_tree = set(self.exclude) | (excluded.groups if self.transitive else set())
        self._included = include or frozenset()
        scope.include = include if scope.include is None or include is None else scope.include & include
        scope.exclude_members = scope.exclude_members | exclude
        return scope

    def candidates(self, memberships: DeltaRound) -> set[str]:
        # Added to an include group, or removed from an exclude group: may join without an entry of its own.
        found: set[str] = set()
        if self.transitive:
            # Nesting hides where a membership changed: every current member of the include groups may join
            # (those already in the view cost nothing); users removed from any group of the exclude tree.
            found |= self._included
        else:
            for group_id in self.include:
                found |= memberships.member_adds.get(group_id, set())
        for group_id in self._exclude_tree or self.exclude:
            found |= memberships.member_removes.get(group_id, set())
        return found


def by_group_membership(selection: ObjectSelection) -> Scoping | None:
    if isinstance(selection, UserSelection) and (
        selection.include_members_of or selection.exclude_members_of
    ):
        return ByGroupMembership(
            list(selection.include_members_of),
            list(selection.exclude_members_of),
            transitive=selection.membership == "transitive",
        )
    return None


def base_scope(selection: ObjectSelection, *, client_side: bool) -> Scope:
    query = selection.query_params()
    return Scope(
        excluded=frozenset(i.lower() for i in selection.excluded_ids),
        predicate=odata.compile_filter(query["$filter"]) if client_side and "$filter" in query else None,
        search=odata.parse_search(query["$search"]) if client_side and "$search" in query else None,
    )
