"""What can go wrong in an administration operation, each with the HTTP status the API answers with.

The API turns them into RFC 9457 problem details; the page shows their message (and, for invalid
definitions, each problem next to its field); the CLI prints them and exits 1.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.config import ConfigIssue


class AdminError(Exception):
    """An operation refused; ``status`` is the HTTP status, ``title`` a short summary, the message the detail."""

    status = 400
    title = "Bad request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(AdminError):
    status = 404
    title = "Not found"


class Conflict(AdminError):
    """The operation conflicts with the current state (a name in use, a task still referencing a connector)."""

    status = 409
    title = "Conflict"


class ForceRequired(Conflict):
    """A change that would break callers (workflows calling an event task) and needs an explicit force."""

    title = "Needs force"


class PreconditionFailed(AdminError):
    """The definition changed since the caller read it (its ETag no longer matches): read it again."""

    status = 412
    title = "Precondition failed"


class PreconditionRequired(AdminError):
    """A change to an existing definition without If-Match: the caller must say which version it edits."""

    status = 428
    title = "Precondition required"


class Invalid(AdminError):
    """A definition (or a request) is invalid; ``issues`` names every bad field by its path."""

    status = 422
    title = "Invalid definition"

    def __init__(self, issues: Iterable[ConfigIssue], detail: str | None = None) -> None:
        self.issues = list(issues)
        super().__init__(detail or "\n".join(str(issue) for issue in self.issues))


class Refused(AdminError):
    """A file or password that cannot be used (import): the message says why; nothing was changed."""

    status = 422
    title = "Refused"


class VaultRefused(AdminError):
    """Key Vault refused the app's own identity (import of secret values): the message names the secret and
    the role it lacks; nothing was imported."""

    status = 403
    title = "Key Vault refused the app's identity"
