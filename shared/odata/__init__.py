"""Microsoft Graph OData query text: ``$filter`` builders (escaped values), the ``$filter`` and ``$search``
parsers and their evaluators.

A neutral package: the connector's configuration (validation), its Graph reads (client-side filtering of
delta results) and the local Graph test-bed all use it, so the text the connector sends and the way the
local Graph reads it cannot drift apart. It imports nothing from the rest of the project.
"""

from shared.odata.expressions import (
    And,
    Call,
    Compare,
    FilterError,
    FilterFeatures,
    In,
    Lambda,
    Node,
    Not,
    Or,
    Path,
    SearchAnd,
    SearchNode,
    SearchOr,
    SearchTerm,
    analyze,
    any_of,
    compile_filter,
    eq,
    evaluate,
    evaluate_search,
    literal,
    parse_filter,
    parse_search,
    search_properties,
)

__all__ = [
    "And",
    "Call",
    "Compare",
    "FilterError",
    "FilterFeatures",
    "In",
    "Lambda",
    "Node",
    "Not",
    "Or",
    "Path",
    "SearchAnd",
    "SearchNode",
    "SearchOr",
    "SearchTerm",
    "analyze",
    "any_of",
    "compile_filter",
    "eq",
    "evaluate",
    "evaluate_search",
    "literal",
    "parse_filter",
    "parse_search",
    "search_properties",
]
