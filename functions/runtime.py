"""The process-wide :class:`shared.services.Services`, created on first use (no import-time work)."""

from functools import cache

from shared import logs, telemetry
from shared.services import Services
from shared.settings import Settings


@cache
def services() -> Services:
    settings = Settings.from_environ()
    logs.attach_to_root()  # task, run id, activity and Graph request id on every record
    telemetry.configure(settings)  # once per process; on where APPLICATIONINSIGHTS_CONNECTION_STRING is set
    return Services(settings)
