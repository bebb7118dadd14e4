"""The verify activities' IF expression: local attributes compared ``equal`` / ``not equal`` with the Graph
attributes they are mapped to, joined by AND, as one ``$filter``.

Values go through the project's one OData literal builder (:func:`shared.odata.literal`: ``'`` doubled, so
``O'Brien`` is ``'O''Brien'``). Graph serves some comparisons only as *advanced queries* (header
``ConsistencyLevel: eventual`` plus ``$count=true``): ``ne``, comparisons with ``null``, and properties that
are advanced-only even for ``eq`` (docs/graph-behaviour.md section 2;
https://learn.microsoft.com/graph/aad-advanced-queries). :class:`FilterQuery` says when it needs them.
Advanced queries are eventually consistent, so a plain ``eq`` on an indexed property is preferred whenever it
is enough.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from shared.odata import literal

Operator = Literal["equal", "not_equal"]
_OPERATORS = {"equal": "eq", "not_equal": "ne"}

# Properties Graph filters only as advanced queries, even with eq (docs/graph-behaviour.md section 2).
ADVANCED_ONLY = frozenset(
    {
        "companyName",
        "employeeType",
        "employeeHireDate",
        "mobilePhone",
        "officeLocation",
        "onPremisesExtensionAttributes",
        "onPremisesImmutableId",
        "onPremisesSamAccountName",
        "postalCode",
        "preferredLanguage",
        "showInAddressList",
        "streetAddress",
        "passwordPolicies",
    }
)


@dataclass(frozen=True)
class Comparison:
    external: str  # Graph attribute path as configured: onPremisesExtensionAttributes.extensionAttribute1
    operator: Operator
    value: Any


@dataclass(frozen=True)
class FilterQuery:
    filter: str
    advanced: bool

    def params(self, select: str = "id") -> dict[str, str]:
        params = {"$filter": self.filter, "$select": select, "$top": "1"}
        if self.advanced:
            params["$count"] = "true"
        return params

    def headers(self) -> dict[str, str]:
        return {"ConsistencyLevel": "eventual"} if self.advanced else {}


def odata_path(external: str) -> str:
    """``a.b`` as OData's ``a/b``; list positions cannot be filtered on."""
    parts = external.split(".")
    if any(part.isdigit() for part in parts):
        raise ValueError(f"{external} addresses a list position, which $filter cannot compare")
    return "/".join(parts)


def build_filter(comparisons: Sequence[Comparison]) -> FilterQuery:
    if not comparisons:
        raise ValueError("the IF expression needs at least one comparison")
    clauses = []
    advanced = False
    for comparison in comparisons:
        path = odata_path(comparison.external)
        operator = _OPERATORS[comparison.operator]
        clauses.append(f"{path} {operator} {literal(comparison.value)}")
        if operator == "ne" or comparison.value is None or comparison.external.split(".")[0] in ADVANCED_ONLY:
            advanced = True
    return FilterQuery(" and ".join(clauses), advanced)


def comparisons_from(
    conditions: Sequence[Mapping[str, Any]], mappings: Mapping[str, str]
) -> tuple[list[Comparison], list[tuple[int, str]]]:
    """Comparisons for ``conditions`` (``code``, ``operator``, ``value``) through ``mappings`` (local code ->
    Graph attribute), and the problems found as (index, message)."""
    found: list[Comparison] = []
    problems: list[tuple[int, str]] = []
    for index, condition in enumerate(conditions):
        code = condition["code"]
        external = mappings.get(code)
        if external is None:
            problems.append((index, f"{code} is not mapped to a Graph attribute in the event task"))
            continue
        try:
            odata_path(external)
            literal(condition["value"])
        except (TypeError, ValueError) as exc:
            problems.append((index, str(exc)))
            continue
        found.append(Comparison(external, condition["operator"], condition["value"]))
    return found, problems
