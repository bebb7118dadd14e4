"""Problems in a configuration: each with the path where it is, collected into one :class:`ConfigError`."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pydantic_core import PydanticCustomError

# ---------------------------------------------------------------------------------------- issues


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a configuration: where (``tasks[0].users.query``; empty for the whole file) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path or '(root)'}: {self.message}"


def _issue_order(issue: ConfigIssue) -> tuple[list[str | int], str]:
    # Natural order, so tasks[2] comes before tasks[10].
    parts = re.split(r"(\d+)", issue.path)
    return [int(part) if index % 2 else part for index, part in enumerate(parts)], issue.message


class ConfigError(ValueError):
    """The configuration is invalid; ``errors`` holds every problem found, sorted by path."""

    def __init__(self, errors: Iterable[ConfigIssue]) -> None:
        self.errors: list[ConfigIssue] = sorted(dict.fromkeys(errors), key=_issue_order)
        super().__init__("\n".join(str(issue) for issue in self.errors))

    def __reduce__(self) -> tuple[type[ConfigError], tuple[list[ConfigIssue]]]:
        return type(self), (self.errors,)


def format_path(parts: Sequence[str | int]) -> str:
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z0-9_$-]+", part):
            text += f".{part}" if text else part
        else:
            text += f"[{json.dumps(part)}]"
    return text


def join_path(base: str, sub: str) -> str:
    if not sub:
        return base
    if not base or sub.startswith("["):
        return base + sub
    return f"{base}.{sub}"


def raise_if_any(issues: Sequence[ConfigIssue]) -> None:
    """Raise the issues (paths relative to the model or field being validated) as one validation error.

    The issues travel in the error's context so that ConfigError can report each at its own path.
    """
    if issues:
        raise PydanticCustomError(
            "config_rules",
            "{summary}",
            {
                "summary": "; ".join(str(issue) if issue.path else issue.message for issue in issues),
                "issues": tuple(issues),
            },
        )
