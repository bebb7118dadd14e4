"""Monitoring: the daily check of when the connectors' Graph credentials expire (telemetry; alerted in Azure)."""

import logging

import azure.functions as func

from functions.runtime import services
from shared.credential_expiry import check_credentials

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.function_name("check_credential_expiry")
@bp.timer_trigger(
    arg_name="timer", schedule="%CREDENTIAL_CHECK_SCHEDULE%", run_on_startup=False, use_monitor=True
)
async def check_credential_expiry(timer: func.TimerRequest) -> None:
    found = await check_credentials(services())
    log.info("credential expiry checked: %d credential(s) reported", len(found))
