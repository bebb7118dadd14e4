"""Administration over HTTPS: the admin API and the management page (``shared/admin``), one ASGI app served
through azure-functions' ASGI support, on two catch-all routes that differ only in who gets in:

- ``/api/mgmt/{*path}``, auth level ADMIN: automation with the app's admin-level (master) key, checked by
  the Functions host before the app sees the request.
- ``/api/manage/{*path}``, auth level ANONYMOUS: administrators in a browser, signed in by App Service
  authentication (Entra ID); the app requires the administrators' app role from the principal the platform
  passes, and refuses every request when App Service authentication is off (``shared/admin/access.py``).

Neither route nor function name starts with ``admin``: the host reserves it for its own admin API and refuses
such routes ("The specified route conflicts with one or more built in routes", azure-functions-host#1781).
"""

import os
from functools import cache

import azure.functions as func

from functions.runtime import services
from shared.admin.app import build_app

bp = func.Blueprint()
METHODS = ["GET", "POST", "PUT", "DELETE"]


@cache
def _middleware(mode: str, root: str) -> func.AsgiMiddleware:
    return func.AsgiMiddleware(build_app(services(), mode=mode, environ=os.environ, root=root))  # type: ignore[arg-type]


@bp.function_name("management_api")
@bp.route(route="mgmt/{*path}", methods=METHODS, auth_level=func.AuthLevel.ADMIN)
async def management_api(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await _middleware("function_key", "/api/mgmt").handle_async(req, context)


@bp.function_name("management_page")
@bp.route(route="manage/{*path}", methods=METHODS, auth_level=func.AuthLevel.ANONYMOUS)
async def management_page(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await _middleware("app_service", "/api/manage").handle_async(req, context)
