"""What to ask Graph for, per stream (users, groups), and which objects the task keeps (its scope).

Full reads send the task's own query (``$filter``, ``$search``, ``$count``, ``$orderby``, ``$top``) and
headers, with a ``$select`` derived from the mappings. Delta rounds cannot filter (Graph accepts only
``id`` filters there), so the same ``$filter`` / ``$search`` are evaluated here, client-side, with the very
evaluator the local Graph uses; the properties they read are added to the delta ``$select``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shared import odata
from shared.config import ObjectSelection, UserSelection

PAGE_SIZE = "999"  # Graph's maximum for directory collections
SIGN_IN_ACTIVITY_PAGE_SIZE = "500"
MEMBER_SELECT = "id"


@dataclass(frozen=True)
class StreamPlan:
    name: str  # "users" | "groups"
    collection: str  # Graph collection segment
    selection: ObjectSelection

    def select(self) -> list[str]:
        return self.selection.select_properties()

    def list_params(self) -> dict[str, str]:
        query = self.selection.query_params()
        select = self.select()
        # Graph allows at most 500 users a page when signInActivity is selected or filtered.
        sign_in = "signInActivity" in select or "signInActivity" in query.get("$filter", "")
        params = {"$top": SIGN_IN_ACTIVITY_PAGE_SIZE if sign_in else PAGE_SIZE}
        params.update(query)
        params["$select"] = ",".join(select)
        return params

    def headers(self) -> dict[str, str]:
        return dict(self.selection.headers)

    def delta_select(self, *, members: bool) -> list[str]:
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


@dataclass
class Scope:
    """Which objects a stream keeps. ``client_side`` adds the task's $filter/$search (delta results)."""

    excluded: frozenset[str] = frozenset()
    include: frozenset[str] | None = None  # users: members of the include groups (None: no such rule)
    exclude_members: frozenset[str] = frozenset()
    predicate: Callable[[Mapping[str, Any]], bool] | None = None
    search: Any = None
    dropped: int = field(default=0)

    @classmethod
    def for_selection(
        cls,
        selection: ObjectSelection,
        *,
        client_side: bool,
        include: Iterable[str] | None = None,
        exclude_members: Iterable[str] = (),
    ) -> Scope:
        query = selection.query_params()
        predicate = search = None
        if client_side and "$filter" in query:
            predicate = odata.compile_filter(query["$filter"])
        if client_side and "$search" in query:
            search = odata.parse_search(query["$search"])
        return cls(
            excluded=frozenset(i.lower() for i in selection.excluded_ids),
            include=None if include is None else frozenset(include),
            exclude_members=frozenset(exclude_members),
            predicate=predicate,
            search=search,
        )

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


def membership_groups(selection: ObjectSelection) -> tuple[list[str], list[str]]:
    if isinstance(selection, UserSelection):
        return list(selection.include_members_of), list(selection.exclude_members_of)
    return [], []
