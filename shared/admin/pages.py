"""The management page: server-rendered HTML over :class:`AdminService` (Jinja2 templates in ``templates/``,
plain CSS and a little progressive JavaScript in ``static/``; no build step, no CDN). Every action is a
plain form POST answered by a redirect (POST-redirect-GET) with a message, so it works without JavaScript.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from shared.admin import signin, transfer
from shared.admin.definitions import Definition
from shared.admin.errors import AdminError, Invalid
from shared.admin.service import VERSION, AdminService

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
STATUSES = ("ok", "failed", "running", "waiting", "held", "stopped", "never run", "not scheduled")
KINDS = ("scheduled", "event", "authentication")
# Fields of a task edited as single inputs, per kind; the other top-level fields are edited as JSON blocks.
SIMPLE_FIELDS = {
    "scheduled": ("name", "connector", "description", "schedule", "mode", "mappings_type"),
    "event": ("name", "connector", "description", "mappings_type"),
    "authentication": ("name", "connector", "description", "protocol", "realm"),
}


CHOICES = {
    "scheduled": {
        "mode": ("full", "incremental"),
        "mappings_type": ("identity_and_access", "identity", "access"),
    },
    "event": {"mappings_type": ("identity_and_access", "identity", "access", "generic")},
    "authentication": {"protocol": ("saml2", "openid_connect")},
}


def _base(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def _back(request: Request, path: str, **message: str) -> RedirectResponse:
    query = f"?{urlencode(message)}" if message else ""
    return RedirectResponse(f"{_base(request)}{path}{query}", status_code=303)


def _render(request: Request, name: str, status: int = 200, **context: Any) -> Response:
    context.update(
        base=_base(request),
        version=VERSION,
        message=request.query_params.get("message"),
        error=context.get("error") or request.query_params.get("error"),
    )
    return templates.TemplateResponse(request, name, context, status_code=status)


def _form_fields(definition: dict[str, Any], usage: str) -> tuple[dict[str, Any], dict[str, str]]:
    """A definition split into simple inputs and JSON blocks (indented) for the edit form."""
    simple_fields = SIMPLE_FIELDS.get(usage, ())
    simple = {k: definition.get(k) for k in simple_fields}
    blocks = {
        k: json.dumps(v, indent=2)
        for k, v in definition.items()
        if k not in simple_fields and k not in ("id", "usage", "enabled")
    }
    return simple, blocks


def _definition_from_form(form: Any, usage: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The posted form as a definition, and the fields whose JSON could not be read."""
    data: dict[str, Any] = {} if usage == "scheduled" else {"usage": usage}
    problems: dict[str, str] = {}
    for key, value in form.multi_items():
        if key in ("etag", "force", "usage") or not isinstance(value, str):
            continue
        if key.startswith("json:"):
            field = key[5:]
            if value.strip():
                try:
                    data[field] = json.loads(value)
                except ValueError as exc:
                    problems[field] = f"not valid JSON: {exc}"
        elif key == "enabled":
            continue
        elif value.strip():
            data[key] = value.strip()
    data["enabled"] = form.get("enabled") == "on"
    return data, problems


def _issues_by_field(exc: Invalid) -> dict[str, list[str]]:
    fields: dict[str, list[str]] = {}
    for issue in exc.issues:
        top = issue.path.split(".")[0].split("[")[0] or "_"
        fields.setdefault(top, []).append(
            f"{issue.path}: {issue.message}" if issue.path != top else issue.message
        )
    return fields


def routes(admin: AdminService) -> list[Route | Mount]:
    async def overview(request: Request) -> Response:
        summaries = await admin.overview()
        name = request.query_params.get("name", "").strip().lower()
        status = request.query_params.get("status", "")
        kind = request.query_params.get("kind", "")
        for connector in summaries:
            connector.tasks = [
                t
                for t in connector.tasks
                if (not name or name in t.name.lower() or name in connector.name.lower())
                and (not status or t.status == status)
                and (not kind or t.usage == kind)
            ]
        return _render(
            request,
            "overview.html",
            connectors=summaries,
            filters={"name": name, "status": status, "kind": kind},
            statuses=STATUSES,
            kinds=KINDS,
            settings=admin.settings(),
        )

    async def connector_new(request: Request) -> Response:
        return _render(request, "new_connector.html", text=None, issues=None)

    async def connector_create(request: Request) -> Response:
        form = await request.form()
        text = str(form.get("definition", ""))
        try:
            created = await admin.create("connector", json.loads(text))
        except ValueError as exc:
            return _render(request, "new_connector.html", 422, text=text, issues=[f"not valid JSON: {exc}"])
        except Invalid as exc:
            return _render(request, "new_connector.html", 422, text=text, issues=[str(i) for i in exc.issues])
        return _back(request, f"/connectors/{created.id}", message="connector created")

    async def connector_action(request: Request) -> Response:
        id = request.path_params["id"]
        form = await request.form()
        try:
            if request.path_params["action"] == "copy":
                copied = await admin.copy("connector", id, str(form.get("name", "")))
                return _back(request, f"/connectors/{copied.id}", message="copied")
            if request.path_params["action"] == "delete":
                await admin.delete("connector", id, str(form.get("etag", "")))
                return _back(request, "/", message="connector deleted")
        except Invalid as exc:
            return _back(request, f"/connectors/{id}", error="; ".join(str(i) for i in exc.issues))
        except AdminError as exc:
            return _back(request, f"/connectors/{id}", error=exc.detail)
        return Response("unknown action", 404)

    async def connector_page(request: Request) -> Response:
        definition = await admin.get("connector", request.path_params["id"])
        tasks = [d for d in await admin.definitions("task") if d.data.get("connector") == definition.name]
        return _render(
            request,
            "connector.html",
            connector=definition,
            text=json.dumps({k: v for k, v in definition.data.items() if k != "id"}, indent=2),
            tasks=tasks,
            test=None,
        )

    async def connector_test(request: Request) -> Response:
        definition = await admin.get("connector", request.path_params["id"])
        tasks = [d for d in await admin.definitions("task") if d.data.get("connector") == definition.name]
        result = await admin.test_connection(definition.id)
        return _render(
            request,
            "connector.html",
            connector=definition,
            text=json.dumps({k: v for k, v in definition.data.items() if k != "id"}, indent=2),
            tasks=tasks,
            test=result,
        )

    async def connector_save(request: Request) -> Response:
        form = await request.form()
        id = request.path_params["id"]
        current = await admin.get("connector", id)
        text = str(form.get("definition", ""))
        try:
            data = json.loads(text)
        except ValueError as exc:
            return _render(request, "connector.html", 422, connector=current, text=text, tasks=[], test=None,
                           error=f"not valid JSON: {exc}")  # fmt: skip
        try:
            await admin.update("connector", id, data, str(form.get("etag", "")))
        except Invalid as exc:
            return _render(request, "connector.html", 422, connector=current, text=text, tasks=[], test=None,
                           issues=exc.issues)  # fmt: skip
        except AdminError as exc:
            return _render(request, "connector.html", exc.status, connector=current, text=text, tasks=[],
                           test=None, error=exc.detail)  # fmt: skip
        return _back(request, f"/connectors/{id}", message="connector saved")

    async def task_page(request: Request) -> Response:
        return await _task_view(request, await admin.get("task", request.path_params["id"]))

    async def _task_view(
        request: Request,
        definition: Definition,
        *,
        status: int = 200,
        data: dict[str, Any] | None = None,
        issues: dict[str, list[str]] | None = None,
        etag: str | None = None,
        error: str | None = None,
        check: dict[str, Any] | None = None,
    ) -> Response:
        simple, blocks = _form_fields(data if data is not None else definition.data, definition.usage)
        runs = await admin.history(definition.id, limit=20) if definition.usage == "scheduled" else []
        calls = await admin.activity_usage(definition.name) if definition.usage == "event" else []
        sign_in = None
        if definition.usage == "authentication":
            try:
                sign_in = await signin.sign_in_configuration(admin, definition.id)
            except (AdminError, KeyError, ValueError):
                sign_in = None
        return _render(
            request,
            "task.html",
            status,
            task=definition,
            simple=simple,
            blocks=blocks,
            enabled=(data or definition.data).get("enabled", True),
            etag=etag or definition.etag,
            issues=issues or {},
            choices=CHOICES.get(definition.usage, {}),
            runs=runs,
            calls=calls,
            sign_in=sign_in,
            check=check,
            connectors=[d.name for d in await admin.definitions("connector")],
            error=error,
        )

    async def task_save(request: Request) -> Response:
        form = await request.form()
        id = request.path_params["id"]
        current = await admin.get("task", id)
        usage = str(form.get("usage") or current.usage)
        data, problems = _definition_from_form(form, usage)
        etag = str(form.get("etag", ""))
        if problems:
            return await _task_view(request, current, status=422, data=data, etag=etag,
                                    issues={k: [v] for k, v in problems.items()})  # fmt: skip
        try:
            await admin.update("task", id, data, etag, force=form.get("force") == "on")
        except Invalid as exc:
            return await _task_view(
                request, current, status=422, data=data, etag=etag, issues=_issues_by_field(exc)
            )
        except AdminError as exc:
            return await _task_view(
                request, current, status=exc.status, data=data, etag=etag, error=exc.detail
            )
        return _back(request, f"/tasks/{id}", message="task saved")

    async def task_new(request: Request) -> Response:
        usage = request.query_params.get("usage", "scheduled")
        connector = request.query_params.get("connector", "")
        return _render(request, "new_task.html", usage=usage, connector=connector, kinds=KINDS,
                       connectors=[d.name for d in await admin.definitions("connector")], issues={}, text=None)  # fmt: skip

    async def task_create(request: Request) -> Response:
        form = await request.form()
        text = str(form.get("definition", ""))
        try:
            data = json.loads(text)
        except ValueError as exc:
            return _render(request, "new_task.html", 422, usage="", connector="", kinds=KINDS, connectors=[],
                           issues={"_": [f"not valid JSON: {exc}"]}, text=text)  # fmt: skip
        try:
            created = await admin.create("task", data)
        except Invalid as exc:
            return _render(request, "new_task.html", 422, usage="", connector="", kinds=KINDS, connectors=[],
                           issues=_issues_by_field(exc), text=text)  # fmt: skip
        return _back(request, f"/tasks/{created.id}", message="task created")

    async def task_action(request: Request) -> Response:
        id = request.path_params["id"]
        action = request.path_params["action"]
        form = await request.form()
        try:
            if action == "run":
                record = await admin.run_now(id, force=bool(form.get("force")))
                return _back(request, f"/tasks/{id}", message=f"run {record.run_id} queued")
            if action == "stop":
                record = await admin.stop(id)
                return _back(request, f"/tasks/{id}", message=f"run {record.run_id} asked to stop")
            if action == "clear-cache":
                await admin.clear_cache(id)
                return _back(request, f"/tasks/{id}", message="cache cleared")
            if action == "approve":
                await admin.approve(id, str(form.get("run_id", "")))
                return _back(request, f"/tasks/{id}", message="run approved")
            if action == "copy":
                extra = {k: str(form[k]) for k in ("protocol", "realm") if form.get(k)}
                copied = await admin.copy("task", id, str(form.get("name", "")), usage=str(form.get("usage") or "") or None,
                                          extra=extra)  # fmt: skip
                return _back(request, f"/tasks/{copied.id}", message="copied")
            if action == "delete":
                await admin.delete("task", id, str(form.get("etag", "")), force=form.get("force") == "on")
                return _back(request, "/", message="task deleted")
            if action == "sign-in-check":
                definition = await admin.get("task", id)
                check = await signin.may_sign_in(admin, id, str(form.get("user", "")))
                return await _task_view(request, definition, check=check)
        except Invalid as exc:
            return _back(request, f"/tasks/{id}", error="; ".join(str(i) for i in exc.issues))
        except AdminError as exc:
            return _back(request, f"/tasks/{id}", error=exc.detail)
        return Response("unknown action", 404)

    async def run_page(request: Request) -> Response:
        definition = await admin.get("task", request.path_params["id"])
        record = await admin.run(definition.id, request.path_params["run_id"])
        try:
            text = (await admin.run_log(definition.id, record.run_id)).decode(errors="replace")
        except AdminError:
            text = None
        tail = "\n".join(text.splitlines()[-200:]) if text else None
        return _render(request, "run.html", task=definition, run=record, log=tail)

    async def run_log(request: Request) -> Response:
        text = await admin.run_log(request.path_params["id"], request.path_params["run_id"])
        return Response(text, media_type="text/plain; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{request.path_params["run_id"]}.log"'})  # fmt: skip

    async def run_file(request: Request) -> Response:
        definition = await admin.get("task", request.path_params["id"])
        record = await admin.run(definition.id, request.path_params["run_id"])
        blob = record.files.get(request.path_params["stream"])
        if blob is None:
            return Response("no such file in this run", 404)
        downloader = admin.services.extracts.get_blob_client(blob).download_blob()
        filename = blob.rsplit("/", 1)[-1]
        return StreamingResponse(
            iter(downloader.chunks()),
            media_type="application/x-ndjson",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )

    async def transfer_page(request: Request) -> Response:
        return _render(request, "transfer.html", connectors=await admin.definitions("connector"), plan=None)

    async def export_file(request: Request) -> Response:
        form = await request.form()
        try:
            document = await transfer.export(
                admin,
                [str(v) for v in form.getlist("connector")],
                password=str(form.get("password") or "") or None,
                include_secrets=form.get("include_secrets") == "on",
            )
        except AdminError as exc:
            return _back(request, "/transfer", error=exc.detail)
        return Response(
            json.dumps(document, indent=2),
            media_type="application/json",
            headers={"Content-Disposition": 'attachment; filename="connectors-export.json"'},
        )

    async def import_file(request: Request) -> Response:
        form = await request.form()
        upload = form.get("file")
        text = await upload.read() if upload is not None and not isinstance(upload, str) else b""
        connectors = await admin.definitions("connector")
        try:
            plan = await transfer.import_file(
                admin,
                text,
                password=str(form.get("password") or "") or None,
                dry_run=form.get("apply") != "on",
                key_vault_url=str(form.get("key_vault_url") or "") or None,
            )
        except Invalid as exc:
            return _render(request, "transfer.html", 422, connectors=connectors, plan=None,
                           error="; ".join(str(i) for i in exc.issues))  # fmt: skip
        except AdminError as exc:
            return _render(
                request, "transfer.html", exc.status, connectors=connectors, plan=None, error=exc.detail
            )
        return _render(request, "transfer.html", connectors=await admin.definitions("connector"), plan=plan)

    async def settings_page(request: Request) -> Response:
        return _render(request, "settings.html", settings=admin.settings())

    return [
        Route("/", overview),
        Route("/connectors/new", connector_new),
        Route("/connectors/new", connector_create, methods=["POST"]),
        Route("/connectors/{id}", connector_page),
        Route("/connectors/{id}", connector_save, methods=["POST"]),
        Route("/connectors/{id}/test", connector_test, methods=["POST"]),
        Route("/connectors/{id}/{action}", connector_action, methods=["POST"]),
        Route("/tasks/new", task_new),
        Route("/tasks/new", task_create, methods=["POST"]),
        Route("/tasks/{id}", task_page),
        Route("/tasks/{id}", task_save, methods=["POST"]),
        Route("/tasks/{id}/runs/{run_id}", run_page),
        Route("/tasks/{id}/runs/{run_id}/files/{stream}", run_file),
        Route("/tasks/{id}/runs/{run_id}/log", run_log),
        Route("/tasks/{id}/{action}", task_action, methods=["POST"]),
        Route("/transfer", transfer_page),
        Route("/transfer/export", export_file, methods=["POST"]),
        Route("/transfer/import", import_file, methods=["POST"]),
        Route("/settings", settings_page),
        Mount("/static", app=StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
