"""Graph change notifications: the HTTPS endpoint Graph calls, and the timer that keeps the subscriptions.

The endpoint is at auth level FUNCTION: the key travels in the notification URL's ``code`` query parameter,
which Graph sends back on every call. All behaviour is in ``shared/notifications``.
"""

import logging

import azure.functions as func

from functions.runtime import services
from shared.notifications.address import ROUTE
from shared.notifications.endpoint import receive
from shared.notifications.upkeep import upkeep

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.function_name("graph_notifications")
@bp.route(route=ROUTE, methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
async def graph_notifications(req: func.HttpRequest) -> func.HttpResponse:
    query = {name: value for name, value in req.params.items() if name != "code"}
    answer = await receive(services(), query, req.get_body())
    return func.HttpResponse(answer.body, status_code=answer.status, mimetype=answer.content_type)


@bp.function_name("subscription_upkeep")
@bp.timer_trigger(
    arg_name="timer", schedule="%SUBSCRIPTIONS_SCHEDULE%", run_on_startup=False, use_monitor=True
)
async def subscription_upkeep(timer: func.TimerRequest) -> None:
    report = await upkeep(services())
    log.info("subscription upkeep: %s", report.summary())
