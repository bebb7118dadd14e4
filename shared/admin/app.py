"""The admin ASGI app: the JSON API (``{root}/v1/...``) and the management page (``{root}/...``) over one
:class:`AdminService`, behind one access check (:mod:`shared.admin.access`).

The Function App serves it through azure-functions' ASGI support (``functions/admin.py``); locally it runs
under uvicorn (``make ui``, ``python -m shared.admin``). A form POST from another origin is refused (the
browser sends ``Origin``), so a signed-in administrator's session cannot be used by another site.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from urllib.parse import quote, urlsplit

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount
from starlette.types import ASGIApp

from shared.admin import api, pages
from shared.admin.access import Access, AccessDenied, AccessMode
from shared.admin.errors import AdminError
from shared.admin.service import AdminService
from shared.services import Services

log = logging.getLogger(__name__)
SIGN_IN = "/.auth/login/aad"  # App Service authentication's Microsoft Entra sign-in
# https://learn.microsoft.com/azure/app-service/configure-authentication-customize-sign-in-out


class AdminAccess(BaseHTTPMiddleware):
    def __init__(self, app: ASGIApp, access: Access) -> None:
        super().__init__(app)
        self.access = access

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        try:
            caller = self.access.caller(request.headers)
        except AccessDenied as exc:
            if exc.sign_in and request.method in ("GET", "HEAD") and "/v1/" not in request.url.path:
                # A page, not the API: the browser signs in with App Service authentication and comes back.
                back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"{SIGN_IN}?post_login_redirect_uri={quote(back, safe='')}", 302)
            return api.problem(exc.status, "Unauthorized" if exc.status == 401 else "Forbidden", exc.detail)
        origin = request.headers.get("origin")
        if request.method not in ("GET", "HEAD") and origin and urlsplit(origin).netloc != request.url.netloc:
            return api.problem(403, "Forbidden", "a request from another origin is refused")
        request.state.caller = caller
        if request.method not in ("GET", "HEAD"):
            log.info("admin %s %s by %s", request.method, request.url.path, caller.name)
        return await call_next(request)


async def _admin_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AdminError)
    if "/v1/" in request.url.path:
        return api.problem_of(exc)
    return pages.templates.TemplateResponse(
        request,
        "error.html",
        {"base": pages._base(request), "version": pages.VERSION, "error": exc.detail, "title": exc.title},
        status_code=exc.status,
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if "/v1/" in request.url.path:
        return api.problem(
            exc.status_code, str(exc.detail), f"{request.method} {request.url.path}: {exc.detail}"
        )
    return pages.templates.TemplateResponse(
        request,
        "error.html",
        {"base": pages._base(request), "version": pages.VERSION, "error": exc.detail, "title": exc.detail},
        status_code=exc.status_code,
    )


def build_app(
    services: Services, *, mode: AccessMode, environ: Mapping[str, str], root: str = ""
) -> Starlette:
    """The app for one access mode, serving under ``root`` (e.g. ``/api/admin``)."""
    access = Access(mode, environ)  # refuses development mode on an Azure host
    admin = AdminService(services)
    inner = Starlette(
        routes=[*api.routes(admin), *pages.routes(admin)],
        middleware=[Middleware(AdminAccess, access=access)],
        exception_handlers={AdminError: _admin_error, HTTPException: _http_error},
    )
    if not root:
        return inner
    return Starlette(routes=[Mount(root, app=inner)])
