"""The process-wide :class:`shared.services.Services`, created on first use (no import-time work)."""

from functools import cache

from shared.services import Services
from shared.settings import Settings


@cache
def services() -> Services:
    return Services(Settings.from_environ())
