"""Workflow activities over HTTPS: one HTTP-triggered function per activity (``activity_users_create`` on
``POST /api/v1/activities/users/create``, ...), so the portal shows each one's invocations and failures
separately; plus the run-status poll and the OpenAPI document. Function keys by default (auth level
FUNCTION); Entra ID through App Service authentication in front (docs/activities.md).

Each handler adapts the trigger: the body and headers go to :meth:`ActivityApi.handle`, its answer comes back
as the HTTP response. All behaviour is in ``shared/activities``.
"""

import azure.functions as func

from functions.runtime import services
from shared.activities.api import HttpAnswer, activity_api
from shared.activities.catalog import ACTIVITIES, OPENAPI_ROUTE, RUN_STATUS_ROUTE, Activity
from shared.openapi import openapi_json

bp = func.Blueprint()


def _response(answer: HttpAnswer) -> func.HttpResponse:
    return func.HttpResponse(body=answer.body, status_code=answer.status, headers=answer.headers)


def _register(activity: Activity) -> None:
    async def handler(req: func.HttpRequest) -> func.HttpResponse:
        answer = await activity_api(services()).handle(activity.name, req.get_body(), dict(req.headers))
        return _response(answer)

    handler.__name__ = handler.__qualname__ = activity.function_name
    route = bp.route(route=activity.route, methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
    bp.function_name(activity.function_name)(route(handler))


for _activity in ACTIVITIES:
    _register(_activity)


@bp.function_name("activity_run_status")
@bp.route(route=RUN_STATUS_ROUTE, methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
async def activity_run_status(req: func.HttpRequest) -> func.HttpResponse:
    answer = await activity_api(services()).run_status(req.route_params["task"], req.route_params["run_id"])
    return _response(answer)


@bp.function_name("activities_openapi")
@bp.route(route=OPENAPI_ROUTE, methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
async def activities_openapi(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(
        body=openapi_json(), status_code=200, headers={"Content-Type": "application/json"}
    )
