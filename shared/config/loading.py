"""Reading and validating a configuration: JSON text (duplicate keys reported) to a :class:`Config`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from shared.config.document import Config, reference_issues
from shared.config.issues import ConfigError, ConfigIssue, format_path
from shared.config.translation import issues_from_validation_error

# ------------------------------------------------------------------------------------------ loading


def parse_config(data: Mapping[str, Any]) -> Config:
    """Validate configuration data (parsed JSON). Raises ConfigError listing every problem found."""
    config, issues = _validate(data)
    if config is None:
        raise ConfigError(issues)
    return config


def load_config(path_or_text: str | bytes | PathLike[str]) -> Config:
    """Read and validate a configuration: a path (Path / PathLike) to a JSON file, or JSON text (str).

    Raises ConfigError listing every problem found; invalid JSON is reported with its line and column.
    """
    if isinstance(path_or_text, PathLike):
        try:
            text: str | bytes = Path(path_or_text).read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError([ConfigIssue("", f"cannot read {path_or_text}: {exc}")]) from None
    else:
        text = path_or_text
    data, issues = _parse_json(text)
    if data is None:
        raise ConfigError(issues)
    config, validation_issues = _validate(data)
    issues += validation_issues
    if config is None or issues:
        raise ConfigError(issues)
    return config


def _validate(data: Any) -> tuple[Config | None, list[ConfigIssue]]:
    if not isinstance(data, Mapping):
        return None, [ConfigIssue("", "the configuration must be a JSON object")]
    try:
        return Config.model_validate(data), []
    except ValidationError as exc:
        issues = issues_from_validation_error(exc)
    # The cross-object rules only run in pydantic when everything else is valid; run them here too so
    # that their problems are reported in the same pass (ConfigError drops the duplicates).
    return None, issues + reference_issues(data)


class _JsonObject(dict):
    """A parsed JSON object that remembers keys it saw more than once (json keeps the last silently)."""

    duplicate_keys: list[str]


def _object_pairs(pairs: list[tuple[str, Any]]) -> _JsonObject:
    result = _JsonObject()
    result.duplicate_keys = []
    for key, value in pairs:
        if key in result:
            result.duplicate_keys.append(key)
        result[key] = value
    return result


def _parse_json(text: str | bytes) -> tuple[Any, list[ConfigIssue]]:
    """The JSON value (plain dicts and lists) and its duplicate-key problems, or None and a syntax problem."""
    try:
        data = json.loads(text, object_pairs_hook=_object_pairs)
    except json.JSONDecodeError as exc:
        return None, [ConfigIssue("", f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}")]
    except (UnicodeDecodeError, TypeError) as exc:
        return None, [ConfigIssue("", f"invalid JSON: {type(exc).__name__}")]
    issues: list[ConfigIssue] = []
    return _plain(data, [], issues), issues


def _plain(value: Any, parts: list[str | int], issues: list[ConfigIssue]) -> Any:
    if isinstance(value, _JsonObject):
        for key in dict.fromkeys(value.duplicate_keys):
            issues.append(
                ConfigIssue(format_path([*parts, key]), "key appears more than once in the same object")
            )
        return {key: _plain(item, [*parts, key], issues) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item, [*parts, index], issues) for index, item in enumerate(value)]
    return value
