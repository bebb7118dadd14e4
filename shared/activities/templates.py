"""``$code$`` and ``$reference:code$`` templates of the generic REST call.

A placeholder is ``$`` + a local attribute code + ``$``, or ``$`` + a reference code + ``:`` + a code of the
referenced data card + ``$``. The value comes from the request's ``values``: the key ``code``, or for
``$reference:code$`` the key ``reference:code`` or ``values["reference"]["code"]``. Anything else between
dollars is literal text (``$filter=``, ``$ref``, ``$count`` are left alone), and ``$$`` is a literal ``$``. A
placeholder whose value is missing is an error naming it, so a typo cannot call Graph with a hole in it.

- In a **URL** each value is percent-encoded (every character but ``A-Z a-z 0-9 - . _ ~``), so a value can
  never add a path segment, a query parameter or a host. Inside a quoted OData string literal of the
  template (``$filter=surname eq '$surname$'``; the quote written ``'`` or ``%27``) a value's ``'`` is first
  doubled, as OData escapes it, so ``O'Brien`` matches and a value cannot end the literal and add conditions
  (Graph decodes ``%27`` back to ``'`` before it reads the filter).
- In a **body** the template is JSON with placeholders. Inside a JSON string a value is inserted with JSON
  string escaping (quotes, backslashes, newlines and control characters escaped), so it stays inside that
  string; outside strings the value is inserted as a JSON value (``true``, ``12``, ``null``, ``"text"``,
  objects and lists as JSON). The result must parse as JSON, or the call is refused.
- A body that is exactly one placeholder (``$generated_body$``) is that attribute's value as the whole body:
  a JSON object or list as it is, or text holding JSON (parsed; refused when it is not JSON).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

_CODE = r"[A-Za-z_][A-Za-z0-9_.-]{0,127}"
PLACEHOLDER = re.compile(rf"\$({_CODE}(?::{_CODE})?)\$")
_WHOLE = re.compile(rf"\s*\$({_CODE}(?::{_CODE})?)\$\s*")
_ODATA_QUOTE = re.compile(r"'|%27", re.IGNORECASE)


class TemplateError(ValueError):
    """A template cannot be filled in; ``codes`` names the placeholders at fault."""

    def __init__(self, message: str, codes: list[str] | None = None) -> None:
        super().__init__(message)
        self.codes = codes or []


def lookup(code: str, values: Mapping[str, Any]) -> Any:
    if code in values:
        return values[code]
    reference, _, inner = code.partition(":")
    if inner:
        card = values.get(reference)
        if isinstance(card, Mapping) and inner in card:
            return card[inner]
    raise KeyError(code)


def placeholders(template: str) -> list[str]:
    return [code for _, code in _pieces(template) if code is not None]


def _missing(template: str, values: Mapping[str, Any]) -> list[str]:
    missing = []
    for code in placeholders(template):
        try:
            lookup(code, values)
        except KeyError:
            if code not in missing:
                missing.append(code)
    return missing


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def render_url(template: str, values: Mapping[str, Any]) -> str:
    missing = _missing(template, values)
    if missing:
        raise TemplateError(
            f"the URL uses {', '.join(f'${c}$' for c in missing)} but the request has no value for it",
            missing,
        )
    out: list[str] = []
    in_literal = False  # inside an OData string literal ('...')
    for literal, code in _pieces(template):
        out.append(literal)
        in_literal ^= len(_ODATA_QUOTE.findall(literal)) % 2 == 1
        if code is not None:
            text = _as_text(lookup(code, values))
            out.append(quote(text.replace("'", "''") if in_literal else text, safe=""))
    return "".join(out)


def _pieces(template: str) -> list[tuple[str, str | None]]:
    """(literal text, placeholder code or None) pairs; ``$$`` becomes ``$`` in the literal text."""
    pieces: list[tuple[str, str | None]] = []
    position = 0
    literal: list[str] = []
    while position < len(template):
        if template.startswith("$$", position):
            literal.append("$")
            position += 2
            continue
        match = PLACEHOLDER.match(template, position)
        if match:
            pieces.append(("".join(literal), match.group(1)))
            literal = []
            position = match.end()
            continue
        literal.append(template[position])
        position += 1
    pieces.append(("".join(literal), None))
    return pieces


def render_body(template: str, values: Mapping[str, Any]) -> Any:
    """The JSON body for ``template`` (None for an empty template)."""
    if not template.strip():
        return None
    whole = _WHOLE.fullmatch(template)
    if whole:
        code = whole.group(1)
        try:
            value = lookup(code, values)
        except KeyError:
            raise TemplateError(f"the body is ${code}$ but the request has no value for it", [code]) from None
        if isinstance(value, dict | list):
            return value
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError as exc:
                raise TemplateError(f"${code}$ holds the whole body but is not JSON: {exc}", [code]) from None
        raise TemplateError(f"${code}$ holds the whole body and must be a JSON object or list", [code])
    missing = _missing(template, values)
    if missing:
        raise TemplateError(
            f"the body uses {', '.join(f'${c}$' for c in missing)} but the request has no value for it",
            missing,
        )
    out: list[str] = []
    in_string = False
    for literal, code in _pieces(template):
        in_string = _scan(literal, in_string)
        out.append(literal)
        if code is None:
            continue
        value = lookup(code, values)
        if in_string:
            out.append(json.dumps(_as_text(value), ensure_ascii=False)[1:-1])
        else:
            out.append(json.dumps(value, ensure_ascii=False))
    text = "".join(out)
    try:
        return json.loads(text)
    except ValueError as exc:
        raise TemplateError(f"the body is not JSON once filled in: {exc}") from None


def _scan(text: str, in_string: bool) -> bool:
    """Whether a JSON text is inside a string literal after ``text``, starting in or out of one."""
    escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
    return in_string
