"""pydantic's validation errors, translated into :class:`ConfigIssue` lines a person can act on: the path
as written in the file (union tags and dict-key markers dropped), and a message that names what is expected."""

from __future__ import annotations

import difflib
import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, Tag, ValidationError

from shared.config.credentials import CREDENTIAL_TYPES
from shared.config.document import Config
from shared.config.fields import PATTERN_MESSAGES
from shared.config.issues import ConfigIssue, format_path, join_path
from shared.config.selections import GroupSelection

# ------------------------------------------------------------------------------ pydantic error report

_TYPE_MESSAGES = {
    "missing": "required",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "int_type": "must be an integer",
    "list_type": "must be a list",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
}
_USERS_ONLY_KEYS = frozenset({"include_members_of", "exclude_members_of"})
_DISCRIMINATORS = ("type", "usage")  # the fields that tell the members of a union apart


def _walk_loc(loc: tuple[str | int, ...]) -> tuple[list[str | int], type[BaseModel] | None, Any]:
    """Path parts for a pydantic error location, dropping union tags and dict-key markers, the model
    whose key the last part is (None when it is not a model key), and the annotation found there."""
    parts: list[str | int] = []
    annotation: Any = Config
    owner: type[BaseModel] | None = None
    for item in loc:
        if item == "[key]":  # pydantic's marker for an invalid dict key, after the key itself
            continue
        annotation = _strip_optional(annotation)
        owner = None
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            owner = annotation
            field = next(
                (f for name, f in annotation.model_fields.items() if (f.alias or name) == item), None
            )
            annotation = field.annotation if field is not None else None
            parts.append(item)
        elif _is_union(annotation):
            # A discriminated union: pydantic puts the tag in the location; keep the member it names.
            annotation = next((m for m in get_args(annotation) if _tag_of(m) == item), None)
        elif get_origin(annotation) is dict:
            annotation = get_args(annotation)[1]
            parts.append(item)
        elif get_origin(annotation) is list:
            annotation = get_args(annotation)[0]
            parts.append(item)
        else:
            annotation = None
            parts.append(item)
    return parts, owner, annotation


def _strip_optional(annotation: Any) -> Any:
    while True:
        if get_origin(annotation) is Annotated:
            annotation = get_args(annotation)[0]
        elif _is_union(annotation):
            members = [m for m in get_args(annotation) if m is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation


def _is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType)


def _model_and_tag(member: Any) -> tuple[Any, Any]:
    """A union member's model and its tag: a ``Tag`` on it, else its ``type`` or ``usage`` literal."""
    tag = None
    if get_origin(member) is Annotated:
        member, *metadata = get_args(member)
        tag = next((m.tag for m in metadata if isinstance(m, Tag)), None)
    if tag is None and isinstance(member, type) and issubclass(member, BaseModel):
        field = _discriminator_field(member)
        literal = member.model_fields[field].annotation if field else None
        tag = get_args(literal)[0] if get_args(literal) else None
    return member, tag


def _discriminator_field(model: type[BaseModel]) -> str | None:
    return next((name for name in _DISCRIMINATORS if name in model.model_fields), None)


def _tag_of(member: Any) -> Any:
    return _model_and_tag(member)[1]


def _union_tags(annotation: Any) -> tuple[str, list[Any]]:
    """The discriminator field of a union (``type``, ``usage``) and the tags it accepts."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    members = [_model_and_tag(m) for m in get_args(annotation)] if _is_union(annotation) else []
    field = next((_discriminator_field(m) for m, _ in members if isinstance(m, type)), None)
    return field or "type", [tag for _, tag in members if tag is not None]


def issues_from_validation_error(exc: ValidationError) -> list[ConfigIssue]:
    issues = []
    for error in exc.errors(include_url=False, include_input=False):
        parts, owner, annotation = _walk_loc(error["loc"])
        path = format_path(parts)
        kind = error["type"]
        ctx = error.get("ctx") or {}
        if kind == "config_rules":
            issues += [ConfigIssue(join_path(path, issue.path), issue.message) for issue in ctx["issues"]]
            continue
        if kind in ("union_tag_invalid", "union_tag_not_found"):
            field, tags = _union_tags(annotation)
            path = join_path(path, field)
            message = "must be one of " + ", ".join(repr(tag) for tag in tags or CREDENTIAL_TYPES)
            if kind == "union_tag_not_found":
                message = "required: " + message
        elif kind == "extra_forbidden":
            message = _unknown_key_message(parts[-1] if parts else "", owner)
        elif kind == "string_pattern_mismatch":
            message = PATTERN_MESSAGES.get(str(ctx.get("pattern")), f"must match {ctx.get('pattern')}")
        elif kind == "literal_error":
            message = f"must be {ctx.get('expected')}"
        elif kind == "too_short" and ctx.get("min_length") == 1:
            message = "must not be empty"
        elif kind in _TYPE_MESSAGES:
            message = _TYPE_MESSAGES[kind]
        else:
            message = error["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        issues.append(ConfigIssue(path, message))
    return issues


def _unknown_key_message(key: str | int, owner: type[BaseModel] | None) -> str:
    if owner is GroupSelection and key in _USERS_ONLY_KEYS:
        return f"only users can be filtered by group membership; {key} belongs under users"
    message = "unknown key"
    if owner is not None and isinstance(key, str):
        known = [field.alias or name for name, field in owner.model_fields.items()]
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.7)
        if close:
            return f"{message}; did you mean {close[0]!r}?"
        return f"{message}; expected one of: {', '.join(known)}"
    return message
