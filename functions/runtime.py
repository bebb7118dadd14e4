"""The process-wide :class:`shared.services.Services`, created on first use (no import-time work)."""

from functools import cache

from shared import logs
from shared.services import Services
from shared.settings import Settings


@cache
def services() -> Services:
    logs.attach_to_root()  # task, run id, activity and Graph request id on every record
    return Services(Settings.from_environ())
