"""The admin API (JSON) over :class:`AdminService`: Starlette routes under ``{root}/v1``.

Definitions answer with their ETag; changes need ``If-Match`` (428 without, 412 when stale); errors are
RFC 9457 problem details (``application/problem+json``) whose ``errors`` name every invalid field.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from shared.admin import signin, transfer
from shared.admin.contract import CopyRequest, ExportRequest, ImportRequest, SignInCheckRequest
from shared.admin.definitions import Definition, Kind
from shared.admin.errors import AdminError, Invalid
from shared.admin.service import AdminService
from shared.config import ConfigIssue

PROBLEM = "application/problem+json"
M = TypeVar("M", bound=BaseModel)


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status, media_type=PROBLEM)


def problem_of(exc: AdminError) -> JSONResponse:
    extra: dict[str, Any] = {}
    if isinstance(exc, Invalid):
        extra["errors"] = [{"path": issue.path, "message": issue.message} for issue in exc.issues]
    return problem(exc.status, exc.title, exc.detail, **extra)


def definition_json(definition: Definition) -> dict[str, Any]:
    return {
        "id": definition.id,
        "kind": definition.kind,
        "usage": definition.usage,
        "name": definition.name,
        "etag": definition.etag,
        "definition": definition.data,
    }


def _answer(definition: Definition, status: int = 200) -> JSONResponse:
    return JSONResponse(definition_json(definition), status, headers={"ETag": definition.etag})


async def _body(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except ValueError:
        raise Invalid([ConfigIssue("", "the body is not JSON")]) from None


def _parse(model: type[M], body: Any) -> M:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        issues = [
            ConfigIssue(
                ".".join(str(part) for part in error["loc"]), error["msg"].removeprefix("Value error, ")
            )
            for error in exc.errors(include_url=False, include_input=False)
        ]
        raise Invalid(issues) from None


def _force(request: Request) -> bool:
    return _flag(request, "force")


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "").lower() in ("1", "true", "yes")


def routes(admin: AdminService) -> list[Route]:
    def kind_of(request: Request) -> Kind:
        return (
            "connector" if request.url.path.rstrip("/").split("/v1/")[1].startswith("connectors") else "task"
        )

    async def list_definitions(request: Request) -> Response:
        kind = kind_of(request)
        items = await admin.definitions(kind)
        filters = request.query_params
        if kind == "task":
            items = [
                d
                for d in items
                if (not filters.get("kind") or d.usage == filters["kind"])
                and (not filters.get("connector") or d.data.get("connector") == filters["connector"])
            ]
        if filters.get("name"):
            items = [d for d in items if filters["name"].lower() in d.name.lower()]
        return JSONResponse({"value": [definition_json(d) for d in items]})

    async def create(request: Request) -> Response:
        return _answer(await admin.create(kind_of(request), await _body(request)), 201)

    async def read(request: Request) -> Response:
        return _answer(await admin.get(kind_of(request), request.path_params["id"]))

    async def update(request: Request) -> Response:
        definition = await admin.update(
            kind_of(request),
            request.path_params["id"],
            await _body(request),
            request.headers.get("if-match"),
            force=_force(request),
        )
        return _answer(definition)

    async def delete(request: Request) -> Response:
        await admin.delete(
            kind_of(request),
            request.path_params["id"],
            request.headers.get("if-match"),
            force=_force(request),
        )
        return Response(status_code=204)

    async def copy(request: Request) -> Response:
        body = _parse(CopyRequest, await _body(request))
        extra = body.model_dump(include={"protocol", "realm"}, exclude_none=True)
        copied = await admin.copy(
            kind_of(request), request.path_params["id"], body.name, usage=body.usage, extra=extra
        )
        return _answer(copied, 201)

    async def test_connection(request: Request) -> Response:
        return JSONResponse(await admin.test_connection(request.path_params["id"]))

    async def run_now(request: Request) -> Response:
        record = await admin.run_now(
            request.path_params["id"], full_resync=_flag(request, "full_resync"), force=_force(request)
        )
        return JSONResponse(record.model_dump(mode="json"), 202)

    async def stop(request: Request) -> Response:
        record = await admin.stop(request.path_params["id"])
        return JSONResponse({"task": record.task, "run_id": record.run_id, "stop": "requested"}, 202)

    async def clear_cache(request: Request) -> Response:
        await admin.clear_cache(request.path_params["id"])
        return Response(status_code=204)

    async def approve(request: Request) -> Response:
        await admin.approve(request.path_params["id"], request.path_params["run_id"])
        return Response(status_code=202)

    async def history(request: Request) -> Response:
        limit = min(max(int(request.query_params.get("limit", "20") or 20), 1), 200)
        records = await admin.history(request.path_params["id"], limit=limit)
        return JSONResponse({"value": [r.model_dump(mode="json") for r in records]})

    async def run(request: Request) -> Response:
        record = await admin.run(request.path_params["id"], request.path_params["run_id"])
        return JSONResponse(record.model_dump(mode="json"))

    async def run_log(request: Request) -> Response:
        text = await admin.run_log(request.path_params["id"], request.path_params["run_id"])
        name = f"{request.path_params['run_id']}.log"
        return Response(text, media_type="text/plain; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})  # fmt: skip

    async def overview(request: Request) -> Response:
        return JSONResponse({"value": [c.as_json() for c in await admin.overview()], **admin.settings()})

    async def settings(request: Request) -> Response:
        return JSONResponse(admin.settings())

    async def sign_in_check(request: Request) -> Response:
        body = _parse(SignInCheckRequest, await _body(request))
        return JSONResponse(await signin.may_sign_in(admin, request.path_params["id"], body.user))

    async def sign_in_configuration(request: Request) -> Response:
        return JSONResponse(await signin.sign_in_configuration(admin, request.path_params["id"]))

    async def export(request: Request) -> Response:
        body = _parse(ExportRequest, await _body(request))
        document = await transfer.export(
            admin, body.connectors, password=body.password, include_secrets=body.include_secrets
        )
        return JSONResponse(
            document, headers={"Content-Disposition": 'attachment; filename="connectors-export.json"'}
        )

    async def import_(request: Request) -> Response:
        body = _parse(ImportRequest, await _body(request))
        text = body.file if isinstance(body.file, str) else json.dumps(body.file)
        plan = await transfer.import_file(
            admin, text, password=body.password, dry_run=body.dry_run, key_vault_url=body.key_vault_url
        )
        return JSONResponse(plan.as_json())

    return [
        Route("/v1/overview", overview),
        Route("/v1/settings", settings),
        Route("/v1/connectors", list_definitions),
        Route("/v1/connectors", create, methods=["POST"]),
        Route("/v1/connectors/{id}", read),
        Route("/v1/connectors/{id}", update, methods=["PUT"]),
        Route("/v1/connectors/{id}", delete, methods=["DELETE"]),
        Route("/v1/connectors/{id}/copy", copy, methods=["POST"]),
        Route("/v1/connectors/{id}/test", test_connection, methods=["POST"]),
        Route("/v1/tasks", list_definitions),
        Route("/v1/tasks", create, methods=["POST"]),
        Route("/v1/tasks/{id}", read),
        Route("/v1/tasks/{id}", update, methods=["PUT"]),
        Route("/v1/tasks/{id}", delete, methods=["DELETE"]),
        Route("/v1/tasks/{id}/copy", copy, methods=["POST"]),
        Route("/v1/tasks/{id}/run", run_now, methods=["POST"]),
        Route("/v1/tasks/{id}/stop", stop, methods=["POST"]),
        Route("/v1/tasks/{id}/clear-cache", clear_cache, methods=["POST"]),
        Route("/v1/tasks/{id}/runs", history),
        Route("/v1/tasks/{id}/runs/{run_id}", run),
        Route("/v1/tasks/{id}/runs/{run_id}/approve", approve, methods=["POST"]),
        Route("/v1/tasks/{id}/runs/{run_id}/log", run_log),
        Route("/v1/tasks/{id}/sign-in-check", sign_in_check, methods=["POST"]),
        Route("/v1/tasks/{id}/sign-in-configuration", sign_in_configuration),
        Route("/v1/export", export, methods=["POST"]),
        Route("/v1/import", import_, methods=["POST"]),
    ]
