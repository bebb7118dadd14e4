"""The Graph query options a selection may carry (``$filter``, ``$count``, ``$search``, ``$orderby``,
``$top``): splitting the text the user wrote, and checking it (filters are parsed when the file is validated)."""

from __future__ import annotations

import re
from urllib.parse import unquote

from shared.odata import FilterError, parse_filter, parse_search

QUERY_PARAMETERS = ("$filter", "$count", "$search", "$orderby", "$top")
FORBIDDEN_QUERY_PARAMETERS = {
    "$select": "$select is derived from the mappings; remove it",
    "$expand": "$expand is not supported; map the pseudo-attributes members/memberOf instead",
}
_ORDERBY = re.compile(
    r"\s*[A-Za-z_][A-Za-z0-9_/]*(\s+(asc|desc))?(\s*,\s*[A-Za-z_][A-Za-z0-9_/]*(\s+(asc|desc))?)*\s*",
    re.IGNORECASE,
)


def split_query(query: str) -> list[tuple[str, str]]:
    """Decode a query string and split it into (key, value) pairs, keys in canonical ``$name`` spelling.

    '&' inside quoted literals ('R&D' in a $filter, "a&b" in a $search) does not split.
    """
    text = unquote(query.strip())
    if text.startswith("?"):
        text = text[1:]
    pairs: list[tuple[str, str]] = []
    for part in _split_outside_quotes(text, "&"):
        if not part.strip():
            continue
        key, _, value = part.partition("=")
        key = key.strip().lower()
        if not key.startswith("$") and f"${key}" in (*QUERY_PARAMETERS, *FORBIDDEN_QUERY_PARAMETERS):
            key = f"${key}"  # Graph v1.0 accepts the system query options without '$'
        pairs.append((key, value.strip()))
    return pairs


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quote: str | None = None
    for char in text:
        if quote is None and char == separator:
            parts.append("".join(current))
            current = []
            continue
        if quote is None and char in "'\"":
            quote = char
        elif char == quote:
            quote = None
        current.append(char)
    parts.append("".join(current))
    return parts


def query_problems(query: str) -> list[str]:
    problems = []
    seen: set[str] = set()
    for key, value in split_query(query):
        if key in FORBIDDEN_QUERY_PARAMETERS:
            problems.append(FORBIDDEN_QUERY_PARAMETERS[key])
            continue
        if key not in QUERY_PARAMETERS:
            problems.append(f"unsupported query parameter '{key}'; allowed: {', '.join(QUERY_PARAMETERS)}")
            continue
        if key in seen:
            problems.append(f"{key} is given more than once")
            continue
        seen.add(key)
        if not value:
            problems.append(f"{key} has no value")
        elif key == "$top":
            if not value.isdigit() or not 1 <= int(value) <= 999:
                problems.append("$top must be a whole number from 1 to 999")
        elif key == "$count":
            if value.lower() not in ("true", "false"):
                problems.append("$count must be true or false")
        elif key == "$orderby":
            if not _ORDERBY.fullmatch(value):
                problems.append("$orderby must list attributes, each optionally followed by asc or desc")
        elif key == "$filter":
            try:
                parse_filter(value)
            except FilterError as exc:
                problems.append(f"$filter: {exc}")
        elif key == "$search":
            try:
                parse_search(value)
            except FilterError as exc:
                problems.append(f"$search: {exc}")
    return problems


def top_level(path: str) -> str:
    return path.partition(".")[0]
