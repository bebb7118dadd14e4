"""The activities API's part of the app's OpenAPI 3.1 document, generated from the request and response models
and the activity catalog. The document itself (this part and the admin API's) is assembled by
:mod:`shared.openapi`, which serves it and writes ``schema/openapi.json``.
"""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from shared.activities.catalog import ACTIVITIES, OPENAPI_ROUTE, RUN_STATUS_ROUTE
from shared.activities.contract import Problem, RunStatusResponse

VERSION = "1.0.0"
REF = "#/components/schemas/{model}"
ERROR_STATUSES = {
    "400": "Invalid request (every invalid field in errors) or refused by Graph as a bad request",
    "403": "Graph refused: the connector's app lacks a permission or directory role",
    "404": "Graph: the object does not exist",
    "409": "Graph: the object or reference already exists; or the Idempotency-Key is in use",
    "413": "The body is too large",
    "422": "The Idempotency-Key was used with another body",
    "502": "Graph failed or could not be reached",
    "503": "Graph throttled or is unavailable (see Retry-After)",
}
DESCRIPTION = """\
HTTPS endpoints the platform's workflow engine calls to provision identities in Microsoft Entra ID through
Microsoft Graph. Each request names an event task of the connector's configuration and passes values by local
attribute code; the task's mappings translate them to Graph attributes.

Successful answers carry `status: Completed`, `outcome: Completed`, result values by local code and
`exception: null`. Failures are RFC 9457 problem details (`application/problem+json`) whose `status` is the
HTTP status and whose `outcome` is `Exception`, with `exception` holding the text for the workflow's
provisioning-exception attribute and `errors` naming every invalid field.

Send `Idempotency-Key` to make retries safe: the same key and body return the first outcome without calling
Graph again; the same key with another body is refused (422). Keys expire after 24 hours.

Authentication: a function key (`x-functions-key` header or `code` query parameter), or Entra ID tokens through
App Service authentication in front of the app.
"""


def _tag(name: str) -> str:
    return name.split(".")[0]


def activities_openapi() -> dict[str, Any]:
    """The document of the activities API alone (:func:`shared.openapi.build` adds the admin API's part)."""
    models: list[tuple[Any, Any]] = []
    for activity in ACTIVITIES:
        models.append((activity.request, "validation"))
        models.append((activity.response, "serialization"))
    models.append((Problem, "serialization"))
    models.append((RunStatusResponse, "serialization"))
    refs, defs = models_json_schema(models, ref_template=REF, title="Activities")
    schemas = dict(sorted(defs.get("$defs", {}).items()))

    def ref(model: Any, mode: Any) -> dict[str, Any]:
        return refs[(model, mode)]

    problem = {"application/problem+json": {"schema": ref(Problem, "serialization")}}
    errors = {status: {"description": text, "content": problem} for status, text in ERROR_STATUSES.items()}
    paths: dict[str, Any] = {}
    for activity in ACTIVITIES:
        responses: dict[str, Any] = {
            str(activity.success_status): {
                "description": "Completed",
                "content": {"application/json": {"schema": ref(activity.response, "serialization")}},
            }
        }
        if activity.name == "tasks.run":
            responses["202"] = {
                "description": "The run is queued or running: poll the URL in Location (and in the body's poll)",
                "headers": {
                    "Location": {"schema": {"type": "string"}},
                    "Retry-After": {"schema": {"type": "integer"}},
                },
                "content": {"application/json": {"schema": ref(RunStatusResponse, "serialization")}},
            }
        responses.update(errors)
        paths[activity.path] = {
            "post": {
                "operationId": activity.function_name,
                "summary": activity.summary,
                "tags": [_tag(activity.name)],
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "description": "Makes a retried call return the first outcome (1-255 printable ASCII).",
                        "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": ref(activity.request, "validation")}},
                },
                "responses": responses,
            }
        }
    name_schema = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,100}$"}
    paths[f"/api/{RUN_STATUS_ROUTE}"] = {
        "get": {
            "operationId": "activity_run_status",
            "summary": "The status of a run started by tasks/run",
            "tags": ["tasks"],
            "parameters": [
                {"name": "task", "in": "path", "required": True, "schema": name_schema},
                {"name": "run_id", "in": "path", "required": True, "schema": name_schema},
            ],
            "responses": {
                "200": {
                    "description": "The run finished",
                    "content": {"application/json": {"schema": ref(RunStatusResponse, "serialization")}},
                },
                "202": {
                    "description": "The run is queued or running",
                    "content": {"application/json": {"schema": ref(RunStatusResponse, "serialization")}},
                },
                **{status: errors[status] for status in ("400", "502", "503")},
            },
        }
    }
    paths[f"/api/{OPENAPI_ROUTE}"] = {
        "get": {
            "operationId": "activities_openapi",
            "summary": "This document",
            "tags": ["meta"],
            "responses": {
                "200": {"description": "The OpenAPI document", "content": {"application/json": {}}}
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Entra ID connector: workflow activities",
            "version": VERSION,
            "description": DESCRIPTION,
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "functionKey": {"type": "apiKey", "in": "header", "name": "x-functions-key"},
                "functionKeyQuery": {"type": "apiKey", "in": "query", "name": "code"},
            },
        },
        "security": [{"functionKey": []}, {"functionKeyQuery": []}],
    }
