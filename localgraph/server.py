"""The HTTPS server: identity endpoints, Graph v1.0 under ``/v1.0``, the control API under ``/_control``.

Every Graph request goes through one pipeline (:func:`dispatch`): authenticate the bearer token, match
the route, apply injected faults, charge the request's resource units (429 when the budget is spent),
admit it (application permissions and the replication window, :mod:`localgraph.admission`), run the
handler, record what it created, log it. ``$batch`` steps go through the same pipeline, so they are
charged, throttled, admitted and logged one by one, as Graph does.

:class:`LocalGraph` runs the server in a background thread (for tests and the benchmark);
``python -m localgraph`` runs it in the foreground and prints how to reach it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import secrets
import socket
import ssl
import tempfile
import threading
import time
import uuid
from collections.abc import Generator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from localgraph import admission, batch, control, delta, intune, platform, reads, subscriptions, writes
from localgraph.context import GraphSettings, LogEntry, ServerContext
from localgraph.errors import GraphError, new_request_id
from localgraph.generate import TenantShape, build_tenant
from localgraph.identity import TokenError, TokenService, register_certificate
from localgraph.routing import GraphRequest, GraphResponse, Router
from localgraph.tenant import AppRegistration
from localgraph.throttling import Faults, Throttle, request_cost
from localgraph.tls import TlsMaterial, load_or_write_material
from shared import jsoncodec

log = logging.getLogger(__name__)

GRAPH_ROUTER = Router()
# delta first: `/users/delta` before `/users/{id}`
for _module in (delta, reads, intune, writes, subscriptions, batch):
    GRAPH_ROUTER.include(_module.router)

APP_ROLES = [
    "User.ReadWrite.All", "Group.ReadWrite.All", "GroupMember.ReadWrite.All", "Directory.ReadWrite.All",
    "Device.ReadWrite.All", "Application.ReadWrite.All", "User-PasswordProfile.ReadWrite.All",
    "User.EnableDisableAccount.All", "DeviceManagementManagedDevices.Read.All", "AuditLog.Read.All",
    "OrgContact.Read.All", "ProfilePhoto.ReadWrite.All",
]  # fmt: skip


def dispatch(ctx: ServerContext, req: GraphRequest, *, caller=None) -> GraphResponse:
    """Serve one Graph request (or batch step) synchronously; errors become Graph error responses."""
    return batch.drain(dispatch_steps(ctx, req, caller=caller))


def dispatch_steps(
    ctx: ServerContext, req: GraphRequest, *, caller=None
) -> Generator[None, None, GraphResponse]:
    """:func:`dispatch`, pausing between the steps of a ``$batch`` (``localgraph.batch.batch_steps``)."""
    template = "?"
    cost = 0
    throttled = False
    try:
        req.caller = caller or ctx.identity.authenticate(req.header("Authorization"), ctx.graph_origins)
        route, params = GRAPH_ROUTER.match(req.method, req.path)
        template = route.template
        ctx.faults.check(req.method, req.path, req.in_batch)
        cost, write = request_cost(req.method, template, req.query)
        extra_headers = {}
        if ctx.settings.enforce_budgets and cost:
            extra_headers = ctx.throttle.admit(
                template,
                cost,
                write,
                with_retry_after=ctx.settings.throttle_retry_after,
                tenant_id=ctx.tenant.tenant_id,
                app_id=req.caller.client_id,
            )
        admission.admit(ctx, req, template, params)  # app permissions, replication window
        if route.handler is batch.run_batch:
            response = yield from batch.batch_steps(ctx, req, dispatch=dispatch)
        else:
            response = route.handler(ctx, req, **params)
            admission.record(ctx, req, template, response)
        response.headers.update(extra_headers)
    except GraphError as error:
        throttled = error.status == 429
        response = GraphResponse(
            error.status,
            error.body(req.request_id, req.header("client-request-id")),
            dict(error.headers),
            content_type="application/json",
        )
    response.headers.setdefault("x-ms-resource-unit", str(cost))
    ctx.log.add(
        LogEntry(time.time(), req.method, req.path, template, response.status, cost, req.in_batch, throttled)
    )
    return response


DIAGNOSTIC = json.dumps({"ServerInfo": {"DataCenter": "Local", "Slice": "E", "Ring": "5"}})


def _render(req: GraphRequest, response: GraphResponse) -> Response:
    headers = {
        "request-id": req.request_id,
        "client-request-id": req.header("client-request-id") or req.request_id,
        "x-ms-ags-diagnostic": DIAGNOSTIC,
        "Cache-Control": "no-store",
        "Strict-Transport-Security": "max-age=31536000",
        "OData-Version": "4.0",
        **response.headers,
    }
    body = response.body
    if body is None:
        return Response(status_code=response.status, headers=headers)
    if isinstance(body, bytes):
        return Response(
            body, response.status, headers, media_type=response.content_type or "application/octet-stream"
        )
    if isinstance(body, str):
        return Response(body, response.status, headers, media_type=response.content_type or "text/plain")
    return Response(
        jsoncodec.dumps(body),
        response.status,
        headers,
        media_type=response.content_type or "application/json",
    )


def build_app(ctx: ServerContext) -> Starlette:
    async def graph(request: Request) -> Response:
        body = await request.body()
        origin = f"https://{request.headers.get('host', ctx.origin.split('://')[1])}"
        # The path as sent (still percent-encoded): a decoded one would cut a guest's UPN at its "#EXT#".
        raw_path = request.scope.get("raw_path")
        path = raw_path.decode("latin-1") if raw_path else quote(request.url.path)
        url = path[len("/v1.0") :] + (f"?{request.url.query}" if request.url.query else "")
        req = GraphRequest.from_url(
            request.method, url, dict(request.headers), body, f"{origin}/v1.0", request_id=new_request_id()
        )
        # The server's own time (dispatch and rendering, not the added latency, nor other requests served
        # between a batch's steps): the benchmark's floor adds it, since the server shares the machine's cores
        # with the connector.
        steps = dispatch_steps(ctx, req)
        service = 0.0
        while True:
            started = time.perf_counter()
            try:
                next(steps)
            except StopIteration as done:
                response = done.value
                service += time.perf_counter() - started
                break
            service += time.perf_counter() - started
            await asyncio.sleep(0)  # a batch step is done: requests that arrived meanwhile go next
        entry = ctx.log.entries[-1] if ctx.log.entries else None  # dispatch's own, added as it finished
        if isinstance(response, subscriptions.Pending):  # the validation handshake first
            response = await response.settle()
        latency = ctx.settings.latency_ms + random.random() * ctx.settings.latency_jitter_ms
        if latency > 0:
            await asyncio.sleep(latency / 1000)
        started = time.perf_counter()
        rendered = _render(req, response)
        if entry is not None:
            entry.service_s = service + time.perf_counter() - started
        return rendered

    async def openid_configuration(request: Request) -> Response:
        try:
            return JSONResponse(ctx.identity.openid_configuration(ctx.origin, request.path_params["tenant"]))
        except TokenError as error:
            return JSONResponse(error.body(), error.status)

    async def keys(request: Request) -> Response:
        return JSONResponse(ctx.identity.jwks())

    async def token(request: Request) -> Response:
        tenant = request.path_params["tenant"]
        ctx.log.token_requests += 1
        try:
            body = ctx.identity.issue(
                tenant, await request.body(), f"{ctx.origin}/{tenant}/oauth2/v2.0/token", ctx.graph_origins
            )
        except TokenError as error:
            ctx.log.token_failures += 1
            return JSONResponse(error.body(), error.status, headers={"Cache-Control": "no-store"})
        return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    async def instance_discovery(request: Request) -> Response:
        # MSAL's instance discovery for hosts it does not know; the connector turns it off, but answer it.
        host = ctx.origin.split("://")[1]
        return JSONResponse(
            {
                "tenant_discovery_endpoint": f"{ctx.origin}/{{tenant}}/v2.0/.well-known/openid-configuration",
                "api-version": "1.1",
                "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
            }
        )

    routes = [
        Route("/v1.0/{path:path}", graph, methods=["GET", "POST", "PATCH", "PUT", "DELETE"]),
        Route("/v1.0", graph, methods=["GET"]),
        Route("/{tenant}/v2.0/.well-known/openid-configuration", openid_configuration),
        Route("/{tenant}/discovery/v2.0/keys", keys),
        Route("/{tenant}/oauth2/v2.0/token", token, methods=["POST"]),
        Route("/common/discovery/instance", instance_discovery),
        *control.routes(ctx),
        *subscriptions.control_routes(ctx),
        *platform.routes(ctx),
    ]
    return Starlette(routes=routes)


@dataclass(frozen=True)
class ConnectionInfo:
    """How to reach a running local Graph (what ``python -m localgraph`` prints)."""

    graph_url: str  # the Graph root, as a connector's graph_url: https://127.0.0.1:PORT
    graph_base_url: str  # graph_url + /v1.0
    authority_url: str  # the login host, as a connector's login_url
    tenant_id: str
    tenant_domain: str
    client_id: str
    client_secret: str
    client_certificate: str  # PEM file with the private key and the certificate
    ca_file: str  # trust this CA for both hosts
    control_url: str
    identity_endpoint: str  # managed identity (App Service protocol): set IDENTITY_ENDPOINT to this
    identity_header: str  # ... and IDENTITY_HEADER to this
    managed_identity_client_id: str  # the managed identity's client id
    key_vault_url: str  # a Key Vault: secrets at {key_vault_url}/secrets/{name}

    def connector(self, name: str, secret_setting: str) -> dict[str, Any]:
        """A connector definition (configuration JSON) that reaches this local Graph with the client
        secret held in the app setting ``secret_setting`` (and ``CONNECTOR_CA_BUNDLE`` set to ``ca_file``)."""
        return {
            "name": name,
            "tenant_id": self.tenant_id,
            "client_id": self.client_id,
            "login_url": self.authority_url,
            "graph_url": self.graph_url,
            "disable_instance_discovery": True,
            "credential": {"type": "client_secret", "secret": {"app_setting": secret_setting}},
        }

    def tls_context(self) -> ssl.SSLContext:
        """A client TLS context that trusts the local Graph's CA (for httpx ``verify=``)."""
        return ssl.create_default_context(cafile=self.ca_file)

    def as_env(self) -> dict[str, str]:
        return {f"LOCALGRAPH_{k.upper()}": v for k, v in asdict(self).items()}


class LocalGraph:
    """A local Graph server in a background thread.

    >>> with LocalGraph(TenantShape(users=100)) as graph:
    ...     graph.info.graph_url

    ``loop`` and ``http`` are uvicorn's event-loop and HTTP-parser choices. The default, ``"auto"``, uses
    ``uvloop`` and ``httptools`` when they are installed (faster) and falls back to ``asyncio`` and ``h11``
    (uvicorn's own dependency) when they are not, e.g. where uvloop does not build (Windows).
    """

    def __init__(
        self,
        shape: TenantShape | None = None,
        settings: GraphSettings | None = None,
        *,
        state_dir: Path | None = None,
        port: int = 0,
        loop: str = "auto",
        http: str = "auto",
    ) -> None:
        self.shape = shape or TenantShape()
        self.settings = settings or GraphSettings()
        self._state_dir = state_dir
        self._port = port
        self._loop = loop
        self._http = http
        self._thread: threading.Thread | None = None
        self._server: uvicorn.Server | None = None
        self.ctx: ServerContext | None = None
        self.info: ConnectionInfo | None = None
        self.tls: TlsMaterial | None = None

    # ----------------------------------------------------------------------------------------------
    def prepare(self) -> tuple[ServerContext, socket.socket]:
        state_dir = self._state_dir or Path(tempfile.mkdtemp(prefix="localgraph-"))
        self.tls = load_or_write_material(state_dir)
        tenant = build_tenant(self.shape)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self._port))
        port = sock.getsockname()[1]
        origin = f"https://127.0.0.1:{port}"
        ctx = ServerContext(
            tenant=tenant,
            settings=self.settings,
            origin=origin,
            graph_origins={origin, f"https://localhost:{port}"},
        )
        ctx.identity = TokenService(tenant, self.tls.server.key, lambda: ctx.settings.token_lifetime_s)
        ctx.throttle = Throttle(tenant.count("user"), ctx.settings)
        ctx.faults = Faults()
        subscriptions.attach(ctx, str(self.tls.ca_file))
        rng = random.Random(self.shape.seed + 7)
        client_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        app = AppRegistration(
            client_id=client_id,
            display_name="Entra Graph Connector (local)",
            secrets=[secrets.token_urlsafe(30)],
            roles=list(APP_ROLES),
        )
        register_certificate(app, self.tls.client.cert)
        tenant.apps[client_id] = app
        identity = AppRegistration(
            client_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            display_name="Entra Graph Connector Function App (managed identity)",
            roles=list(APP_ROLES),
        )
        tenant.apps[identity.client_id] = identity
        ctx.managed_identity_client_id = identity.client_id
        ctx.identity_header = secrets.token_urlsafe(24)
        self.ctx = ctx
        self.info = ConnectionInfo(
            graph_url=origin,
            graph_base_url=f"{origin}/v1.0",
            authority_url=origin,
            tenant_id=tenant.tenant_id,
            tenant_domain=tenant.domain,
            client_id=client_id,
            client_secret=app.secrets[0],
            client_certificate=str(self.tls.client_cert_file),
            ca_file=str(self.tls.ca_file),
            control_url=f"{origin}/_control",
            identity_endpoint=f"{origin}/msi/token",
            identity_header=ctx.identity_header,
            managed_identity_client_id=identity.client_id,
            key_vault_url=origin,
        )
        return ctx, sock

    def _uvicorn(self, ctx: ServerContext) -> uvicorn.Server:
        config = uvicorn.Config(
            build_app(ctx),
            ssl_certfile=str(self.tls.server_cert_file),
            ssl_keyfile=str(self.tls.server_key_file),
            log_level="warning",
            access_log=False,
            lifespan="off",
            loop=self._loop,
            http=self._http,
            timeout_keep_alive=30,
            timeout_graceful_shutdown=2,
        )
        return uvicorn.Server(config)

    def start(self) -> LocalGraph:
        ctx, sock = self.prepare()
        self._server = self._uvicorn(ctx)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="localgraph", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the local Graph did not start")
            time.sleep(0.01)
        return self

    def serve_forever(self, on_ready) -> None:
        """Run in the foreground (the CLI); ``on_ready(info)`` is called once the server listens."""
        ctx, sock = self.prepare()
        self._server = self._uvicorn(ctx)

        async def main() -> None:
            task = asyncio.create_task(self._server.serve(sockets=[sock]))
            while not self._server.started:
                if task.done():
                    await task
                    return
                await asyncio.sleep(0.01)
            on_ready(self.info)
            await task

        # The event loop uvicorn's configuration names (uvloop when installed, else asyncio).
        with asyncio.Runner(loop_factory=self._server.config.get_loop_factory()) as runner:
            runner.run(main())

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            # Idle keep-alive TLS connections (a client not closed yet, e.g. a credential's session held
            # by a reference cycle) would keep uvicorn waiting for close_notify; after a short grace,
            # stop without waiting for them.
            self._thread.join(timeout=0.3)
            if self._thread.is_alive() and self._server is not None:
                self._server.force_exit = True
            self._thread.join(timeout=10)

    def __enter__(self) -> LocalGraph:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
