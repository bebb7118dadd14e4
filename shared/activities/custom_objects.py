"""Custom objects: create, update, delete objects of the event task's ``objects.object_class`` (any Graph
collection the app may write: applications, administrative units, ...).

Where Graph refuses an app-only write, the answer is Graph's refusal with an explanation
(docs/graph-behaviour.md section 7): organizational contacts "are read-only in Microsoft Graph"
(https://learn.microsoft.com/graph/api/resources/orgcontact), and ``POST /devices`` supports delegated callers
only (https://learn.microsoft.com/graph/api/device-post-devices: "Application: Not supported").
"""

from __future__ import annotations

from shared.activities.calls import ActivityCall
from shared.activities.contract import (
    ActivityResponse,
    CustomCreateRequest,
    CustomObjectRequest,
    CustomUpdateRequest,
)
from shared.activities.problems import ActivityError, from_graph_error, invalid
from shared.activities.translation import from_graph
from shared.activities.users import graph_body, response
from shared.config.event_tasks import CustomObjects
from shared.graph.errors import GraphError, NotFound
from shared.retry import Action

# object class (first path segment) -> why Graph refuses an app-only write of it
REFUSALS = {
    "contacts": (
        "Organizational contacts are synchronized from on-premises directories or Exchange Online and are "
        "read-only in Microsoft Graph"
    ),
    "devices": (
        "Microsoft Graph creates devices for delegated (signed-in) callers only; an app-only connector "
        "cannot create them, though it may update or delete them with Device.ReadWrite.All"
    ),
}


def objects_of(call: ActivityCall) -> CustomObjects:
    if call.task.objects is None:
        raise invalid(
            [("task", f"event task {call.task.name} has no custom object class (objects.object_class)")]
        )
    return call.task.objects


def _explanation(objects: CustomObjects, error: GraphError) -> str | None:
    if isinstance(error, NotFound) or not (400 <= error.status < 500):
        return None
    return REFUSALS.get(objects.object_class.split("/")[0].lower())


async def create(call: ActivityCall, request: CustomCreateRequest) -> ActivityResponse:
    objects = objects_of(call)
    body = graph_body(call, request.values, objects)
    try:
        created = (await call.send("POST", f"/{objects.object_class}", json_body=body)).json()
    except GraphError as error:
        if error.action == Action.LOOKUP:
            # No natural key to look the object up by: say so rather than invite a duplicate.
            raise ActivityError(
                502,
                "outcome-unknown",
                f"creating the {objects.object_class} object had no answer from Graph ({error}); it may or may "
                "not exist now: check before repeating the call",
                graph=error,
            ) from None
        raise from_graph_error(error, explanation=_explanation(objects, error)) from None
    return ActivityResponse(
        **response(
            call, object_id=created.get("id"), result=from_graph({**body, **created}, objects, call.task)
        )
    )


async def update(call: ActivityCall, request: CustomUpdateRequest) -> ActivityResponse:
    objects = objects_of(call)
    body = graph_body(call, request.values, objects)
    try:
        await call.send("PATCH", f"/{objects.object_class}/{request.object}", json_body=body)
    except GraphError as error:
        raise from_graph_error(error, explanation=_explanation(objects, error)) from None
    return ActivityResponse(**response(call, object_id=request.object, result=dict(request.values)))


async def delete(call: ActivityCall, request: CustomObjectRequest) -> ActivityResponse:
    objects = objects_of(call)
    try:
        await call.send("DELETE", f"/{objects.object_class}/{request.object}")
    except NotFound as error:
        if not call.last_retries:
            raise from_graph_error(error) from None
    except GraphError as error:
        raise from_graph_error(error, explanation=_explanation(objects, error)) from None
    return ActivityResponse(**response(call, object_id=request.object, result={"deleted": True}))
