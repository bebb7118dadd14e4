"""Group activities: create, update, delete, verify (docs/graph-behaviour.md section 7;
https://learn.microsoft.com/graph/api/group-post-groups, https://learn.microsoft.com/graph/api/group-update).

- **create** needs mappings for displayName, mailEnabled, mailNickname and securityEnabled (and values);
  ``groupTypes`` is ``[]`` (a security group) unless mapped. Members named in the request are added once the
  new group is on Graph's replicas (``members@odata.bind`` at creation holds at most 20, and the replication
  retry is the same either way). A create whose outcome is unknown is resolved by looking the group up,
  never by sending it again: by its mailNickname and displayName, created since the call began (give or
  take ``CLOCK_SKEW``), as neither name is unique for security groups: an older group with the same names is
  not the one this call created, and two candidates are not guessed between.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from typing import Any

from shared.activities import translation
from shared.activities.calls import REPLICATION_WINDOW_S, ActivityCall
from shared.activities.conditions import Comparison, build_filter
from shared.activities.contract import (
    ActivityResponse,
    GroupCreateRequest,
    GroupRequest,
    GroupUpdateRequest,
    VerifyRequest,
    VerifyResponse,
)
from shared.activities.memberships import add_member
from shared.activities.problems import ActivityError, from_graph_error, invalid
from shared.activities.users import (
    CLOCK_SKEW,
    create_body,
    created_since,
    delete_object,
    graph_body,
    response,
    verify_in,
)
from shared.config.event_tasks import EventMappings
from shared.graph.errors import Conflict, GraphError, NotFound
from shared.retry import Action

REQUIRED_FOR_CREATE = ("displayName", "mailEnabled", "mailNickname", "securityEnabled")


def group_mappings(call: ActivityCall) -> EventMappings:
    if call.task.groups is None:
        raise invalid(
            [
                (
                    "task",
                    f"event task {call.task.name} has no group mappings (mappings_type {call.task.mappings_type})",
                )
            ]
        )
    return call.task.groups


async def create(call: ActivityCall, request: GroupCreateRequest) -> ActivityResponse:
    mappings = group_mappings(call)
    body = create_body(call, request.values, mappings, REQUIRED_FOR_CREATE, "group")
    body.setdefault("groupTypes", [])
    resolved_by_lookup = False
    sent_at = datetime.now(UTC)
    try:
        created = (await call.send("POST", "/groups", json_body=body)).json()
    except GraphError as error:
        if error.action not in (Action.LOOKUP, Action.RETRY) or error.status not in (0, 500, 502, 503, 504):
            raise from_graph_error(error) from None
        created = await _look_up_after_unknown_outcome(
            call, str(body["mailNickname"]), str(body["displayName"]), sent_at, error
        )
        resolved_by_lookup = True
    group_id = created["id"]
    result = translation.from_graph({**body, **created}, mappings, call.task)
    for member in request.members:
        try:
            await call.replicated(partial(add_member, call, group_id, member))
        except Conflict:
            continue
        except GraphError as error:
            failure = from_graph_error(error)
            failure.detail = (
                f"the group {group_id} was created, but adding member {member} failed: {failure.detail}"
            )
            failure.result = result
            raise failure from None
    return ActivityResponse(
        **response(call, object_id=group_id, result={**result, "resolved_by_lookup": resolved_by_lookup})
    )


async def _look_up_after_unknown_outcome(
    call: ActivityCall, nickname: str, name: str, sent_at: datetime, error: GraphError
) -> dict[str, Any]:
    query = build_filter(
        [Comparison("mailNickname", "equal", nickname), Comparison("displayName", "equal", name)]
    )
    params = {**query.params("id,displayName,mailNickname,createdDateTime"), "$top": "50"}

    async def find() -> dict[str, Any]:
        page = await call.get_json("/groups", params=params, headers=query.headers())
        items = [item for item in page.get("value") or [] if created_since(item, sent_at - CLOCK_SKEW)]
        if not items:
            raise NotFound(f"no group with mailNickname {nickname} created since the call", status=404)
        if len(items) > 1:
            raise ActivityError(
                502,
                "outcome-unknown",
                f"creating group {nickname} had no answer from Graph ({error}), and {len(items)} groups with "
                f"its names were created since ({', '.join(item['id'] for item in items)}): check which one "
                "before repeating",
                graph=error,
            )
        return items[0]

    try:
        return await call.replicated(find, not_found_window_s=REPLICATION_WINDOW_S)
    except NotFound:
        raise ActivityError(
            503,
            "outcome-unknown",
            f"creating group {nickname} had no answer from Graph ({error}) and Graph does not show it; "
            "it was not created: the call can be repeated",
            graph=error,
            retry_after_s=5,
        ) from None
    except GraphError as lookup_error:
        raise from_graph_error(lookup_error) from None


async def update(call: ActivityCall, request: GroupUpdateRequest) -> ActivityResponse:
    body = graph_body(call, request.values, group_mappings(call))
    try:
        await call.send("PATCH", f"/groups/{request.group}", json_body=body)
    except GraphError as error:
        raise from_graph_error(error) from None
    return ActivityResponse(**response(call, object_id=request.group, result=dict(request.values)))


async def delete(call: ActivityCall, request: GroupRequest) -> ActivityResponse:
    await delete_object(call, f"/groups/{request.group}")
    return ActivityResponse(**response(call, object_id=request.group, result={"deleted": True}))


async def verify(call: ActivityCall, request: VerifyRequest) -> VerifyResponse:
    return await verify_in(call, request, "/groups", group_mappings(call))
