"""The generic REST call: any Graph request the workflow builds, limited to the connector's Graph host.

The URL and the body are templates (:mod:`shared.activities.templates`); the URL is joined and checked by
:mod:`shared.activities.addresses` before any request is sent. Completed for answers 200-399 (a redirect is
returned as it is, never followed); otherwise Graph's error, as a problem. A POST without an answer is a
502 ``outcome-unknown`` (never re-sent, by the client or, under the same ``Idempotency-Key``, by a repeat).
"""

from __future__ import annotations

from typing import Any

from shared.activities import addresses, templates
from shared.activities.calls import ActivityCall
from shared.activities.contract import ActivityResponse, GenericCallRequest
from shared.activities.problems import ActivityError, from_graph_error, invalid
from shared.activities.users import response
from shared.graph.errors import GraphError
from shared.retry import Action


def prepare(call: ActivityCall, request: GenericCallRequest) -> tuple[str, Any]:
    """The URL and JSON body to send; every problem (template, URL, body) named, nothing sent."""
    problems: list[tuple[str, str]] = []
    url = ""
    body: Any = None
    try:
        url = addresses.join(
            call.graph_root, call.task.base_query, templates.render_url(request.url, request.values)
        )
    except templates.TemplateError as exc:
        problems.append(("url", str(exc)))
    except addresses.AddressRefused as exc:
        problems.append(("url", f"refused: {exc}"))
    if request.body is not None:
        try:
            body = templates.render_body(request.body, request.values)
        except templates.TemplateError as exc:
            problems.append(("body", str(exc)))
    if body is not None and request.method in ("GET", "DELETE"):
        problems.append(("body", f"a {request.method} request takes no body"))
    if problems:
        raise invalid(problems)
    return url, body


async def call_graph(call: ActivityCall, request: GenericCallRequest) -> ActivityResponse:
    url, body = prepare(call, request)
    try:
        answer = await call.send(request.method, url, json_body=body)
    except GraphError as error:
        if error.action == Action.LOOKUP:
            # A POST without an answer (a timeout, a 5xx): Graph may have done it, and a generic call has no
            # object to look up. Not "try again" (a 503): repeating could do it twice.
            raise ActivityError(
                502,
                "outcome-unknown",
                f"the {request.method} had no answer from Graph ({error}); it may or may not have been done: "
                "check before repeating the call",
                graph=error,
            ) from None
        raise from_graph_error(error) from None
    content: Any = None
    if answer.content:
        try:
            content = answer.json()
        except ValueError:
            content = answer.text
    result: dict[str, Any] = {"status_code": answer.status_code, "response": content}
    if 300 <= answer.status_code < 400:
        result["location"] = answer.headers.get("Location")
    return ActivityResponse(**response(call, result=result))
