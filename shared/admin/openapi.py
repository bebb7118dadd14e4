"""The admin API's part of the OpenAPI document: its paths (under ``/api/mgmt``, the admin-key route) and
schemas, generated from :mod:`shared.admin.contract` and added to the app's one document by
:func:`shared.openapi.build`. Operations are tagged ``admin``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic.json_schema import models_json_schema

from shared.admin import contract as c

PREFIX = "/api/mgmt"
TAG = "admin"
REF = "#/components/schemas/{model}"
_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,63}$"},
}
_RUN = {
    "name": "run_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
}
_IF_MATCH = {
    "name": "If-Match",
    "in": "header",
    "required": True,
    "schema": {"type": "string", "minLength": 1},
}
_FORCE = {"name": "force", "in": "query", "required": False, "schema": {"type": "boolean"}}
_RUN_PARAMS = [
    {
        "name": "force",
        "in": "query",
        "required": False,
        "description": "Run a disabled task anyway (without it: 409)",
        "schema": {"type": "boolean"},
    },
    {
        "name": "full_resync",
        "in": "query",
        "required": False,
        "description": "Read everything, even for an incremental task",
        "schema": {"type": "boolean"},
    },
]
_ERRORS = {
    "404": "No such connector, task or run",
    "409": "Conflicts with the current state, or needs force (an event task in use by workflows)",
    "412": "The definition changed since it was read (If-Match): read it again",
    "422": "Invalid: every invalid field in errors; or an import file refused (password, tampering, version)",
    "428": "If-Match is required",
    "403": "Key Vault refused the app's identity (import of secret values): the detail names the secret and the "
    "role it needs; nothing was imported",
}


def admin_openapi() -> tuple[dict[str, Any], dict[str, Any]]:
    """The admin paths and the schemas they reference (to merge into the document's components)."""
    models: list[tuple[Any, Any]] = [
        (c.ConnectorBody, "validation"),
        (c.TaskBody, "validation"),
        (c.CopyRequest, "validation"),
        (c.SignInCheckRequest, "validation"),
        (c.ExportRequest, "validation"),
        (c.ImportRequest, "validation"),
        (c.AdminProblem, "serialization"),
        (c.DefinitionAnswer, "serialization"),
        (c.DefinitionList, "serialization"),
        (c.RunList, "serialization"),
        (c.OverviewAnswer, "serialization"),
        (c.SettingsAnswer, "serialization"),
        (c.ConnectionTest, "serialization"),
        (c.SignInAnswer, "serialization"),
        (c.SignInConfiguration, "serialization"),
        (c.ImportPlanAnswer, "serialization"),
    ]
    refs, defs = models_json_schema(models, ref_template=REF, title="Admin")
    schemas = dict(sorted(defs.get("$defs", {}).items()))

    def ref(model: Any, mode: Literal["validation", "serialization"] = "serialization") -> dict[str, Any]:
        return refs[(model, mode)]

    problem = {"application/problem+json": {"schema": ref(c.AdminProblem)}}

    def op(
        op_id: str,
        summary: str,
        ok: str,
        answer: Any | None,
        *,
        body: Any | None = None,
        params: list[dict[str, Any]] | None = None,
        errors: tuple[str, ...] = ("404",),
    ) -> dict[str, Any]:
        responses: dict[str, Any] = {
            ok: {"description": summary}
            if answer is None
            else {"description": summary, "content": {"application/json": {"schema": ref(answer)}}}
        }
        for status in errors:
            responses[status] = {"description": _ERRORS[status], "content": problem}
        operation: dict[str, Any] = {
            "operationId": op_id,
            "summary": summary,
            "tags": [TAG],
            "responses": responses,
        }
        if params:
            operation["parameters"] = params
        if body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": ref(body, "validation")}},
            }
        return operation

    paths: dict[str, Any] = {}
    for plural, body in (("connectors", c.ConnectorBody), ("tasks", c.TaskBody)):
        one = plural[:-1]
        paths[f"{PREFIX}/v1/{plural}"] = {
            "get": op(f"admin_list_{plural}", f"List {plural}", "200", c.DefinitionList, errors=()),
            "post": op(
                f"admin_create_{one}",
                f"Create a {one}",
                "201",
                c.DefinitionAnswer,
                body=body,
                errors=("422",),
            ),
        }
        paths[f"{PREFIX}/v1/{plural}/{{id}}"] = {
            "get": op(
                f"admin_read_{one}", f"Read a {one} (ETag header)", "200", c.DefinitionAnswer, params=[_ID]
            ),
            "put": op(
                f"admin_update_{one}",
                f"Replace a {one} (If-Match)",
                "200",
                c.DefinitionAnswer,
                body=body,
                params=[_ID, _IF_MATCH, _FORCE],
                errors=("404", "409", "412", "422", "428"),
            ),
            "delete": op(
                f"admin_delete_{one}",
                f"Delete a {one} (If-Match)",
                "204",
                None,
                params=[_ID, _IF_MATCH, _FORCE],
                errors=("404", "409", "412", "428"),
            ),
        }
        paths[f"{PREFIX}/v1/{plural}/{{id}}/copy"] = {
            "post": op(
                f"admin_copy_{one}",
                f"Copy a {one} under a new name",
                "201",
                c.DefinitionAnswer,
                body=c.CopyRequest,
                params=[_ID],
                errors=("404", "422"),
            )
        }
    paths[f"{PREFIX}/v1/connectors/{{id}}/test"] = {
        "post": op(
            "admin_test_connection", "Test a connector's connection", "200", c.ConnectionTest, params=[_ID]
        )
    }
    paths[f"{PREFIX}/v1/tasks/{{id}}/run"] = {
        "post": op(
            "admin_run_task",
            "Queue a run now",
            "202",
            None,
            params=[_ID, *_RUN_PARAMS],
            errors=("404", "409"),
        )
    }
    paths[f"{PREFIX}/v1/tasks/{{id}}/stop"] = {
        "post": op("admin_stop", "Ask the running run to stop at its next page boundary", "202", None,
                   params=[_ID], errors=("404", "409"))
    }  # fmt: skip
    paths[f"{PREFIX}/v1/tasks/{{id}}/clear-cache"] = {
        "post": op(
            "admin_clear_cache", "Clear the task's cache", "204", None, params=[_ID], errors=("404", "409")
        )
    }
    paths[f"{PREFIX}/v1/tasks/{{id}}/runs"] = {
        "get": op("admin_history", "A task's run history, newest first", "200", c.RunList, params=[_ID])
    }
    paths[f"{PREFIX}/v1/tasks/{{id}}/runs/{{run_id}}"] = {
        "get": op("admin_run", "One run: counts, files, details", "200", None, params=[_ID, _RUN])
    }
    log_op = op("admin_run_log", "The run's own log lines (text/plain)", "200", None, params=[_ID, _RUN])
    log_op["responses"]["200"]["content"] = {"text/plain": {"schema": {"type": "string"}}}
    paths[f"{PREFIX}/v1/tasks/{{id}}/runs/{{run_id}}/log"] = {"get": log_op}
    paths[f"{PREFIX}/v1/tasks/{{id}}/runs/{{run_id}}/approve"] = {
        "post": op(
            "admin_approve", "Approve a held run", "202", None, params=[_ID, _RUN], errors=("404", "409")
        )
    }
    paths[f"{PREFIX}/v1/tasks/{{id}}/sign-in-check"] = {
        "post": op(
            "admin_sign_in_check",
            "May this user sign in (authentication tasks)",
            "200",
            c.SignInAnswer,
            body=c.SignInCheckRequest,
            params=[_ID],
            errors=("404", "409", "422"),
        )
    }
    paths[f"{PREFIX}/v1/tasks/{{id}}/sign-in-configuration"] = {
        "get": op(
            "admin_sign_in_configuration",
            "The sign-in configuration for the platform",
            "200",
            c.SignInConfiguration,
            params=[_ID],
            errors=("404", "409"),
        )
    }
    paths[f"{PREFIX}/v1/overview"] = {
        "get": op("admin_overview", "Status of every connector and task", "200", c.OverviewAnswer, errors=())
    }
    paths[f"{PREFIX}/v1/settings"] = {
        "get": op("admin_settings", "Environment type and version", "200", c.SettingsAnswer, errors=())
    }
    paths[f"{PREFIX}/v1/export"] = {
        "post": op(
            "admin_export",
            "Export connectors with their tasks",
            "200",
            None,
            body=c.ExportRequest,
            errors=("422",),
        )
    }
    paths[f"{PREFIX}/v1/import"] = {
        "post": op(
            "admin_import",
            "Import an export file (dry run by default)",
            "200",
            c.ImportPlanAnswer,
            body=c.ImportRequest,
            errors=("403", "422"),
        )
    }
    return paths, schemas
