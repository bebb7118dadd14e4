"""The OData expressions behind :mod:`shared.odata`: build ``$filter`` values, parse and evaluate ``$filter`` and ``$search``.

The connector and the local Graph test-bed both use this module, so the text the connector sends and the
way the local Graph reads it cannot drift apart.

``$filter`` grammar (keywords and function names are case-insensitive), loosest binding first::

    or          := and ('or' and)*
    and         := comparison ('and' comparison)*
    comparison  := unary [('eq'|'ne'|'gt'|'ge'|'lt'|'le') unary | 'in' '(' literal (',' literal)* ')']
    unary       := 'not' unary | primary
    primary     := literal | '(' or ')' | function '(' or ',' or ')'
                 | path ['/' ('any'|'all') '(' [variable ':' or] ')']
    path        := name ('/' name)* ['/' '$count']

As in OData, ``not`` binds tighter than comparisons, so ``not displayName eq 'x'`` is ``(not displayName) eq
'x'`` and is rejected; write ``not(displayName eq 'x')``. A comparison needs a property path on one side and a
literal on the other; the parsed tree always holds the property on the left.

Parsed trees (``Node``) are frozen dataclasses: ``And``, ``Or``, ``Not``, ``Compare``, ``In``, ``Call`` and
``Lambda``, whose properties are ``Path`` values. Literal values are held as Python values: ``str`` (strings
and bare GUIDs), ``int``, ``float``, ``bool``, ``None``, aware ``datetime`` and ``date``.
"""

from __future__ import annotations

import math
import operator
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Any, NamedTuple


class FilterError(ValueError):
    """A ``$filter`` or ``$search`` text Graph would reject; the message suits a Graph error body."""


# ---------------------------------------------------------------------------------------------- tree


@dataclass(frozen=True)
class Path:
    """A property path such as ``onPremisesExtensionAttributes/extensionAttribute1`` or ``x/skuId``.

    ``variable`` names the lambda variable the path starts from (``None``: the object itself); a last
    segment ``$count`` means the length of the collection.
    """

    segments: tuple[str, ...]
    variable: str | None = None


@dataclass(frozen=True)
class And:
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class Compare:
    """``property op value`` with op one of eq, ne, gt, ge, lt, le."""

    op: str
    property: Path
    value: Any


@dataclass(frozen=True)
class In:
    property: Path
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Call:
    """``function(property, 'value')`` with function one of startsWith, endsWith, contains."""

    function: str
    property: Path
    value: str


@dataclass(frozen=True)
class Lambda:
    """``collection/any(variable: body)`` or ``collection/all(...)``; ``any()`` has no variable and body."""

    op: str
    collection: Path
    variable: str | None
    body: Node | None


Node = And | Or | Not | Compare | In | Call | Lambda


@dataclass(frozen=True)
class _Literal:
    """A literal while parsing; it ends up as the value of a Compare or In."""

    value: Any


# ----------------------------------------------------------------------------------------- tokenizer


class _Token(NamedTuple):
    kind: str  # string, guid, datetime, date, number, name, end, or the punctuation character itself
    text: str
    position: int


_NAME_END = r"(?![\w$])"
_FILTER_TOKEN = re.compile(
    r"(?P<space>\s+)"
    r"|(?P<string>'(?:[^']|'')*+')"
    rf"|(?P<guid>[0-9A-Fa-f]{{8}}-[0-9A-Fa-f]{{4}}-[0-9A-Fa-f]{{4}}-[0-9A-Fa-f]{{4}}-[0-9A-Fa-f]{{12}}{_NAME_END})"
    rf"|(?P<datetime>\d{{4}}-\d\d-\d\dT\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:Z|[+-]\d\d:\d\d){_NAME_END})"
    r"|(?P<date>\d{4}-\d\d-\d\d(?![\w$:]))"
    r"|(?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?![\w$.]))"
    r"|(?P<name>\$?[^\W\d]\w*)"
    r"|(?P<punct>[(),/:])"
)


def _syntax_error(text: str, position: int) -> FilterError:
    return FilterError(f"Invalid filter clause: Syntax error at position {position} in '{text}'.")


def _tokenize(text: str) -> list[_Token]:
    tokens = []
    position = 0
    while position < len(text):
        match = _FILTER_TOKEN.match(text, position)
        if match is None:
            if text[position] == "'":
                raise FilterError(
                    f"Invalid filter clause: Unterminated string literal at position {position} in '{text}'."
                )
            raise _syntax_error(text, position)
        kind = match.lastgroup or ""
        if kind == "punct":
            kind = match.group()
        if kind != "space":
            tokens.append(_Token(kind, match.group(), position))
        position = match.end()
    tokens.append(_Token("end", "", len(text)))
    return tokens


# -------------------------------------------------------------------------------------------- parser

_COMPARISONS = {"eq", "ne", "gt", "ge", "lt", "le"}
_MIRRORED = {"eq": "eq", "ne": "ne", "gt": "lt", "ge": "le", "lt": "gt", "le": "ge"}
_FUNCTIONS = {"startswith": "startsWith", "endswith": "endsWith", "contains": "contains"}
_BOOLEAN_NODES = (And, Or, Not, Compare, In, Call, Lambda)


def parse_filter(text: str) -> Node:
    """Parse a ``$filter`` value; raises FilterError for anything Graph would not accept as a filter."""
    return _FilterParser(text).parse()


class _FilterParser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.index = 0
        self.variables: list[str] = []  # lambda variables in scope, innermost last

    # -- token stream
    def peek(self) -> _Token:
        return self.tokens[self.index]

    def advance(self) -> _Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def at_keyword(self, *words: str) -> bool:
        token = self.peek()
        return token.kind == "name" and token.text.lower() in words

    def expect(self, kind: str) -> _Token:
        token = self.advance()
        if token.kind != kind:
            raise _syntax_error(self.text, token.position)
        return token

    def error(self, message: str, position: int) -> FilterError:
        return FilterError(f"Invalid filter clause: {message} at position {position} in '{self.text}'.")

    def require_boolean(self, node: Any, position: int) -> Node:
        if not isinstance(node, _BOOLEAN_NODES):
            raise self.error("Expected a boolean expression", position)
        return node

    # -- grammar
    def parse(self) -> Node:
        node = self.parse_or()
        self.expect("end")
        return self.require_boolean(node, 0)

    def parse_or(self) -> Any:
        return self.parse_chain("or", Or, self.parse_and)

    def parse_and(self) -> Any:
        return self.parse_chain("and", And, self.parse_comparison)

    def parse_chain(self, word: str, node_type: type, parse_operand: Callable[[], Any]) -> Any:
        positions = [self.peek().position]
        operands = [parse_operand()]
        while self.at_keyword(word):
            self.advance()
            positions.append(self.peek().position)
            operands.append(parse_operand())
        if len(operands) == 1:
            return operands[0]
        for operand, position in zip(operands, positions, strict=True):
            self.require_boolean(operand, position)
        return node_type(tuple(operands))

    def parse_comparison(self) -> Any:
        position = self.peek().position
        left = self.parse_unary()
        if self.at_keyword(*_COMPARISONS):
            op = self.advance().text.lower()
            right = self.parse_unary()
            if isinstance(left, Path) and isinstance(right, _Literal):
                return Compare(op, left, right.value)
            if isinstance(left, _Literal) and isinstance(right, Path):
                return Compare(_MIRRORED[op], right, left.value)
            raise self.error("A comparison needs a property on one side and a literal on the other", position)
        if self.at_keyword("in"):
            self.advance()
            if not isinstance(left, Path):
                raise self.error("'in' needs a property on its left", position)
            self.expect("(")
            values = [self.parse_literal().value]
            while self.peek().kind == ",":
                self.advance()
                values.append(self.parse_literal().value)
            self.expect(")")
            return In(left, tuple(values))
        return left

    def parse_unary(self) -> Any:
        if self.at_keyword("not"):
            self.advance()
            position = self.peek().position
            return Not(self.require_boolean(self.parse_unary(), position))
        return self.parse_primary()

    def parse_primary(self) -> Any:
        token = self.peek()
        if token.kind == "(":
            self.advance()
            node = self.parse_or()
            self.expect(")")
            return node
        if token.kind != "name" or token.text.lower() in ("true", "false", "null"):
            return self.parse_literal()
        self.advance()
        if self.peek().kind == "(":
            return self.parse_call(token)
        return self.parse_path(token)

    def parse_literal(self) -> _Literal:
        token = self.advance()
        kind, text = token.kind, token.text
        if kind == "string":
            return _Literal(text[1:-1].replace("''", "'"))
        if kind == "guid":
            return _Literal(text)
        if kind == "number":
            return _Literal(int(text) if text.lstrip("-").isdigit() else float(text))
        try:
            if kind == "datetime":
                return _Literal(datetime.fromisoformat(text))
            if kind == "date":
                return _Literal(date.fromisoformat(text))
        except ValueError:
            raise self.error(f"Invalid date or time '{text}'", token.position) from None
        if kind == "name" and text.lower() in ("true", "false", "null"):
            return _Literal({"true": True, "false": False, "null": None}[text.lower()])
        raise _syntax_error(self.text, token.position)

    def parse_call(self, name: _Token) -> Call:
        function = _FUNCTIONS.get(name.text.lower())
        if function is None:
            raise self.error(f"Unknown function '{name.text}'", name.position)
        self.expect("(")
        arguments = []
        if self.peek().kind != ")":
            arguments.append(self.parse_or())
            while self.peek().kind == ",":
                self.advance()
                arguments.append(self.parse_or())
        self.expect(")")
        if len(arguments) != 2:
            raise self.error(f"{function} takes 2 arguments, {len(arguments)} given", name.position)
        prop, value = arguments
        if not (isinstance(prop, Path) and isinstance(value, _Literal) and isinstance(value.value, str)):
            raise self.error(f"{function} needs a property and a string literal", name.position)
        return Call(function, prop, value.value)

    def parse_path(self, first: _Token) -> Path | Lambda:
        if first.text.startswith("$"):
            raise _syntax_error(self.text, first.position)
        variable = first.text if first.text in self.variables else None
        segments: list[str] = [] if variable else [first.text]
        while self.peek().kind == "/":
            self.advance()
            token = self.expect("name")
            if token.text.lower() in ("any", "all") and self.peek().kind == "(":
                return self.parse_lambda(token, Path(tuple(segments), variable))
            if token.text.lower() == "$count":
                return Path((*segments, "$count"), variable)
            if token.text.startswith("$"):
                raise _syntax_error(self.text, token.position)
            segments.append(token.text)
        return Path(tuple(segments), variable)

    def parse_lambda(self, name: _Token, collection: Path) -> Lambda:
        op = name.text.lower()
        self.expect("(")
        if self.peek().kind == ")":
            self.advance()
            if op == "all":
                raise self.error("all() needs a lambda expression", name.position)
            return Lambda("any", collection, None, None)
        variable = self.expect("name")
        if variable.text.startswith("$"):
            raise _syntax_error(self.text, variable.position)
        self.expect(":")
        position = self.peek().position
        self.variables.append(variable.text)
        body = self.parse_or()
        self.variables.pop()
        self.expect(")")
        return Lambda(op, collection, variable.text, self.require_boolean(body, position))


# ---------------------------------------------------------------------------------------- evaluation

_Predicate = Callable[[Mapping[str, Any], dict[str, Any]], bool]  # (object, lambda variables) -> match
_ORDER = {"eq": operator.eq, "gt": operator.gt, "ge": operator.ge, "lt": operator.lt, "le": operator.le}
_STRING_TESTS: dict[str, Callable[[str, str], bool]] = {
    "startsWith": str.startswith,
    "endsWith": str.endswith,
    "contains": operator.contains,
}


def compile_filter(text: str) -> Callable[[Mapping[str, Any]], bool]:
    """Parse ``text`` once and return a predicate over Graph JSON objects."""
    predicate = _compile(parse_filter(text))
    return lambda obj: predicate(obj, {})


def evaluate(node: Node, obj: Mapping[str, Any]) -> bool:
    """Whether the Graph JSON object ``obj`` matches ``node``; a missing property counts as null."""
    entry = _compiled_nodes.get(id(node))
    if entry is None or entry[0] is not node:
        if len(_compiled_nodes) >= 256:
            _compiled_nodes.clear()
        entry = _compiled_nodes[id(node)] = (node, _compile(node))
    return entry[1](obj, {})


# Predicates of recently evaluated trees, by identity: equal trees may differ (``n eq 1`` == ``n eq true``).
_compiled_nodes: dict[int, tuple[Node, _Predicate]] = {}


def _compile(node: Node) -> _Predicate:
    if isinstance(node, And | Or):
        parts = tuple(_compile(operand) for operand in node.operands)
        wanted = isinstance(node, Or)  # the answer that stops the loop early

        def chain(obj: Mapping[str, Any], env: dict[str, Any]) -> bool:
            for part in parts:
                if part(obj, env) is wanted:
                    return wanted
            return not wanted

        return chain
    if isinstance(node, Not):
        inner = _compile(node.operand)
        return lambda obj, env: not inner(obj, env)
    if isinstance(node, Compare):
        return _compile_compare(node)
    if isinstance(node, In):
        return _over_values(_getter(node.property), _in_test(node.values), None in node.values)
    if isinstance(node, Call):
        test, value = _STRING_TESTS[node.function], node.value.casefold()
        return _over_values(
            _getter(node.property), lambda v: isinstance(v, str) and test(v.casefold(), value)
        )
    if isinstance(node, Lambda):
        return _compile_lambda(node)
    raise TypeError(f"not a filter node: {node!r}")


def _getter(path: Path) -> Callable[[Mapping[str, Any], dict[str, Any]], Any]:
    """A function returning the value at ``path`` (None when missing), or the collection length for $count."""
    variable, segments = path.variable, path.segments
    counts = segments[-1:] == ("$count",)
    if counts:
        segments = segments[:-1]
    if variable is None and len(segments) == 1 and not counts:
        key = segments[0]
        return lambda obj, env: obj.get(key)

    def get(obj: Mapping[str, Any], env: dict[str, Any]) -> Any:
        value = obj if variable is None else env[variable]
        for segment in segments:
            try:
                value = value.get(segment)
            except AttributeError:  # a string, number, list or null has no properties
                return None
        if counts:
            return len(value) if isinstance(value, list) else 0 if value is None else None
        return value

    return get


def _over_values(get: Callable, test: Callable[[Any], bool], null_result: bool = False) -> _Predicate:
    """Apply ``test`` to a property's value, or to each element of a collection (any element matching)."""

    def predicate(obj: Mapping[str, Any], env: dict[str, Any]) -> bool:
        value = get(obj, env)
        if value is None:
            return null_result
        if isinstance(value, list):
            return any(test(item) for item in value)
        return test(value)

    return predicate


def _compile_compare(node: Compare) -> _Predicate:
    get, op, value = _getter(node.property), node.op, node.value
    if value is None:
        if op in ("eq", "ne"):
            wanted = op == "eq"
            return lambda obj, env: (get(obj, env) is None) is wanted
        return lambda obj, env: False
    if op == "ne":
        equal = _over_values(get, _scalar_test("eq", value))
        return lambda obj, env: not equal(obj, env)
    return _over_values(get, _scalar_test(op, value))


def _scalar_test(op: str, literal: Any) -> Callable[[Any], bool]:
    """``value op literal`` for a non-null value: strings case-insensitive, types never coerced."""
    compare = _ORDER[op]
    if isinstance(literal, bool):
        return lambda v: isinstance(v, bool) and compare(v, literal)
    if isinstance(literal, int | float):
        return lambda v: isinstance(v, int | float) and not isinstance(v, bool) and compare(v, literal)
    if isinstance(literal, str):
        folded = literal.casefold()
        return lambda v: isinstance(v, str) and compare(v.casefold(), folded)
    if isinstance(literal, datetime):
        return lambda v: (moment := _as_datetime(v)) is not None and compare(moment, literal)
    return lambda v: (moment := _as_datetime(v)) is not None and compare(moment.date(), literal)


def _as_datetime(value: Any) -> datetime | None:
    """A Graph DateTimeOffset string (or a date string, as midnight UTC) as an aware datetime."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _in_test(values: tuple[Any, ...]) -> Callable[[Any], bool]:
    strings = frozenset(value.casefold() for value in values if isinstance(value, str))
    others = [_scalar_test("eq", value) for value in values if not isinstance(value, str | None)]
    if not others:
        return lambda v: isinstance(v, str) and v.casefold() in strings
    return lambda v: (isinstance(v, str) and v.casefold() in strings) or any(test(v) for test in others)


def _compile_lambda(node: Lambda) -> _Predicate:
    get = _getter(node.collection)
    if node.body is None:
        return lambda obj, env: isinstance(items := get(obj, env), list) and len(items) > 0
    body, is_any = _compile(node.body), node.op == "any"
    variable = node.variable or ""

    def predicate(obj: Mapping[str, Any], env: dict[str, Any]) -> bool:
        items = get(obj, env)
        if not isinstance(items, list):
            items = ()  # a missing collection is empty
        if is_any:
            return any(body(obj, {**env, variable: item}) for item in items)
        return all(body(obj, {**env, variable: item}) for item in items)

    return predicate


# ------------------------------------------------------------------------------------------ analysis


@dataclass(frozen=True)
class FilterFeatures:
    """What a filter uses, for deciding what Graph supports and what counts as an advanced query.

    ``operators`` holds comparison operators, functions and ``not``/``and``/``or``/``any``/``all``/``count``;
    ``eq null`` and ``ne null`` add ``eqNull``/``neNull`` besides ``eq``/``ne``. ``property_operators`` maps
    each top-level property to what was applied to it, including ``not`` when it is used under a ``not``.
    ``paths`` are written with ``/``, lambda variables replaced by their collection's path.
    """

    operators: frozenset[str]
    properties: frozenset[str]
    property_operators: Mapping[str, frozenset[str]]
    paths: frozenset[str]
    id_eq_values: tuple[str, ...] | None


@dataclass
class _FeatureCollector:
    operators: set[str] = field(default_factory=set)
    paths: set[str] = field(default_factory=set)
    property_operators: dict[str, set[str]] = field(default_factory=dict)

    def visit(self, node: Node, variables: dict[str, tuple[str, ...]], negated: bool) -> None:
        if isinstance(node, And | Or):
            self.operators.add("and" if isinstance(node, And) else "or")
            for operand in node.operands:
                self.visit(operand, variables, negated)
        elif isinstance(node, Not):
            self.operators.add("not")
            self.visit(node.operand, variables, True)
        elif isinstance(node, Compare):
            nulls = {f"{node.op}Null"} if node.value is None and node.op in ("eq", "ne") else set()
            self.use(node.property, {node.op, *nulls}, variables, negated)
        elif isinstance(node, In):
            self.use(node.property, {"in"}, variables, negated)
        elif isinstance(node, Call):
            self.use(node.property, {node.function}, variables, negated)
        else:
            collection = self.use(node.collection, {node.op}, variables, negated)
            if node.body is not None:
                self.visit(node.body, {**variables, node.variable or "": collection}, negated)

    def use(self, path: Path, ops: set[str], variables: dict, negated: bool) -> tuple[str, ...]:
        full = (*variables[path.variable], *path.segments) if path.variable else path.segments
        if full[-1] == "$count":
            ops = {*ops, "count"}
        self.operators.update(ops)
        self.paths.add("/".join(full))
        self.property_operators.setdefault(full[0], set()).update(ops | ({"not"} if negated else set()))
        return full


def analyze(node: Node) -> FilterFeatures:
    """Report the operators, properties and paths a parsed filter uses."""
    collector = _FeatureCollector()
    collector.visit(node, {}, False)
    return FilterFeatures(
        operators=frozenset(collector.operators),
        properties=frozenset(collector.property_operators),
        property_operators=MappingProxyType(
            {name: frozenset(ops) for name, ops in collector.property_operators.items()}
        ),
        paths=frozenset(collector.paths),
        id_eq_values=_id_eq_values(node),
    )


def _id_eq_values(node: Node) -> tuple[str, ...] | None:
    """The ids if ``node`` is only ``id eq '...'`` clauses joined by ``or`` (what Graph delta accepts)."""
    clauses = [node]
    values = []
    while clauses:
        clause = clauses.pop(0)
        if isinstance(clause, Or):
            clauses[:0] = clause.operands
        elif (
            isinstance(clause, Compare)
            and clause.op == "eq"
            and clause.property == Path(("id",))
            and isinstance(clause.value, str)
        ):
            values.append(clause.value)
        else:
            return None
    return tuple(values)


# ------------------------------------------------------------------------------------------ building

_PROPERTY_PATH = re.compile(r"[^\W\d]\w*(?:/(?:[^\W\d]\w*|\$count))*")


def literal(value: Any) -> str:
    """``value`` as an OData literal; strings (and UUIDs, which Graph compares as strings) are quoted."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | uuid.UUID):
        return "'" + str(value).replace("'", "''") + "'"
    if isinstance(value, int | float | Decimal):
        if isinstance(value, float | Decimal) and not math.isfinite(value):
            raise ValueError(f"no OData literal for {value!r}")
        return str(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"a datetime literal needs a time zone: {value!r}")
        text = value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")
        return text.removesuffix(".000000") + "Z"
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"no OData literal for {type(value).__name__}")


def _checked_property(prop: str) -> str:
    if not _PROPERTY_PATH.fullmatch(prop):
        raise ValueError(f"not a property path: {prop!r}")
    return prop


def eq(prop: str, value: Any) -> str:
    """``prop eq <literal>``, e.g. ``userPrincipalName eq 'o''brien@x.com'``."""
    return f"{_checked_property(prop)} eq {literal(value)}"


def any_of(prop: str, values: Iterable[Any]) -> str:
    """``prop in ('a','b')``; at least one value is required."""
    literals = [literal(value) for value in values]
    if not literals:
        raise ValueError(f"any_of({prop!r}) needs at least one value")
    return f"{_checked_property(prop)} in ({','.join(literals)})"


# -------------------------------------------------------------------------------------------- search


@dataclass(frozen=True)
class SearchTerm:
    """One ``"property:term"`` clause of a ``$search``."""

    property: str
    term: str


@dataclass(frozen=True)
class SearchAnd:
    operands: tuple[SearchNode, ...]


@dataclass(frozen=True)
class SearchOr:
    operands: tuple[SearchNode, ...]


SearchNode = SearchTerm | SearchAnd | SearchOr

_SEARCH_TOKEN = re.compile(r'\s+|"(?:[^"\\]|\\.)*+"|[()]|[A-Za-z]+')
_WORD_BREAK = re.compile(r"[\W_]+")
_WHOLE_VALUE_PREFIX = {"mail", "userprincipalname"}


def parse_search(text: str) -> SearchNode:
    """Parse ``$search``: ``"property:term"`` clauses joined by AND/OR (AND binds tighter), parentheses."""
    tokens: list[tuple[str, int]] = []
    position = 0
    while position < len(text):
        match = _SEARCH_TOKEN.match(text, position)
        if match is None:
            raise FilterError(f"Invalid search clause: Syntax error at position {position} in '{text}'.")
        if not match.group().isspace():
            tokens.append((match.group(), position))
        position = match.end()
    tokens.append(("", len(text)))
    index = 0

    def fail(position: int) -> FilterError:
        return FilterError(f"Invalid search clause: Syntax error at position {position} in '{text}'.")

    def chain(word: str, node_type: type, parse_operand: Callable[[], SearchNode]) -> SearchNode:
        nonlocal index
        operands = [parse_operand()]
        while tokens[index][0].upper() == word:
            index += 1
            operands.append(parse_operand())
        return operands[0] if len(operands) == 1 else node_type(tuple(operands))

    def parse_or() -> SearchNode:
        return chain("OR", SearchOr, lambda: chain("AND", SearchAnd, parse_clause))

    def parse_clause() -> SearchNode:
        nonlocal index
        token, position = tokens[index]
        index += 1
        if token == "(":
            node = parse_or()
            if tokens[index][0] != ")":
                raise fail(tokens[index][1])
            index += 1
            return node
        if not token.startswith('"'):
            raise fail(position)
        prop, colon, term = re.sub(r"\\(.)", r"\1", token[1:-1]).partition(":")
        if not colon or not re.fullmatch(r"[^\W\d]\w*", prop.strip()) or not term.strip():
            raise FilterError(f'Invalid search clause: expected "property:term" at position {position}.')
        return SearchTerm(prop.strip(), term.strip())

    node = parse_or()
    if tokens[index][0]:
        raise fail(tokens[index][1])
    return node


def evaluate_search(node: SearchNode, obj: Mapping[str, Any]) -> bool:
    """Tokenized, case-insensitive prefix match, as Entra ID does for ``$search``."""
    if isinstance(node, SearchAnd):
        return all(evaluate_search(operand, obj) for operand in node.operands)
    if isinstance(node, SearchOr):
        return any(evaluate_search(operand, obj) for operand in node.operands)
    value = obj.get(node.property)
    values = value if isinstance(value, list) else [value]
    return any(_term_matches(node.property, item, node.term) for item in values if isinstance(item, str))


def _term_matches(prop: str, value: str, term: str) -> bool:
    """Every word of ``term`` starts some word of ``value``; mail and UPN also match on the whole value."""
    folded_value, folded_term = value.casefold(), term.casefold()
    if prop.lower() in _WHOLE_VALUE_PREFIX and folded_value.startswith(folded_term):
        return True
    term_words = [word for word in _WORD_BREAK.split(folded_term) if word]
    value_words = [word for word in _WORD_BREAK.split(folded_value) if word]
    return bool(term_words) and all(any(v.startswith(t) for v in value_words) for t in term_words)


def search_properties(node: SearchNode) -> frozenset[str]:
    """The properties a parsed ``$search`` searches."""
    if isinstance(node, SearchTerm):
        return frozenset({node.property})
    return frozenset().union(*(search_properties(operand) for operand in node.operands))
