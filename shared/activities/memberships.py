"""Group memberships: add a user to groups, remove a user from groups, verify a membership.

``POST /groups/{id}/members/$ref`` answers 204, or 400 when the user "is already a member"; ``DELETE
/groups/{id}/members/{userId}/$ref`` answers 204, or 404 when the user is not a member
(docs/graph-behaviour.md sections 6 and 7; https://learn.microsoft.com/graph/api/group-post-members,
https://learn.microsoft.com/graph/api/group-delete-members). Always with ``/$ref``: without it Graph deletes
the member object itself.

Each group gets its own outcome: ``done``, ``already`` (already a member / not a member: the wanted state,
unless the request is ``strict``), ``failed`` (with Graph's error). A 404 on remove is told apart by asking
whether the group exists (a missing group is ``failed``, not ``already``). Adds are retried while Graph's
replicas do not know a just-created user or group yet (:meth:`ActivityCall.replicated`). The call is
Completed only if every group ended in the wanted state.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from shared.activities.calls import ActivityCall
from shared.activities.contract import (
    MembershipOutcome,
    MembershipRequest,
    MembershipResponse,
    MembershipVerifyRequest,
    VerifyResponse,
)
from shared.activities.problems import ActivityError, from_graph_error
from shared.graph.errors import Conflict, GraphError, NotFound

CONCURRENT_GROUPS = 4


async def add_member(call: ActivityCall, group: str, member: str) -> None:
    await call.send(
        "POST",
        f"/groups/{group}/members/$ref",
        json_body={"@odata.id": call.directory_object_url(member)},
    )


async def _add_one(call: ActivityCall, group: str, user: str, strict: bool) -> Result:
    try:
        await call.replicated(lambda: add_member(call, group, user))
    except Conflict as error:
        if strict:
            return _failed(group, error, "the user is already a member (strict)")
        return _ok(group, "already")
    except GraphError as error:
        return _failed(group, error)
    return _ok(group, "done")


async def _remove_one(call: ActivityCall, group: str, user: str, strict: bool) -> Result:
    try:
        await call.send("DELETE", f"/groups/{group}/members/{user}/$ref")
    except NotFound as error:
        try:
            await call.get_json(f"/groups/{group}", params={"$select": "id"})
        except GraphError as group_error:
            return _failed(group, group_error)
        if strict or call.last_retries:
            if call.last_retries:
                return _ok(group, "done")  # the first DELETE removed it
            return _failed(group, error, "the user is not a member (strict)")
        return _ok(group, "already")
    except GraphError as error:
        return _failed(group, error)
    return _ok(group, "done")


Result = tuple[MembershipOutcome, GraphError | None]


def _failed(group: str, error: GraphError, note: str | None = None) -> Result:
    text = f"{error.status} {error.code}: {error.message}".strip()
    if note:
        text = f"{note}: {text}"
    return MembershipOutcome(group=group, outcome="failed", error=text, graph_code=error.code or None), error


def _ok(group: str, outcome: Literal["done", "already"]) -> Result:
    return MembershipOutcome(group=group, outcome=outcome), None


async def change(
    call: ActivityCall, request: MembershipRequest, direction: Literal["add", "remove"]
) -> MembershipResponse:
    one = _add_one if direction == "add" else _remove_one
    limit = asyncio.Semaphore(CONCURRENT_GROUPS)
    groups = list(dict.fromkeys(g.lower() for g in request.groups))

    async def guarded(group: str) -> Result:
        async with limit:
            return await one(call, group, request.user.lower(), request.strict)

    results = await asyncio.gather(*(guarded(group) for group in groups))
    outcomes = [outcome for outcome, _ in results]
    errors = [error for _, error in results if error is not None]
    if errors:
        raise _failure(outcomes, errors, direction)
    return MembershipResponse(
        activity=call.activity,
        task=call.task.name,
        object_id=request.user,
        result={
            "done": sum(o.outcome == "done" for o in outcomes),
            "already": sum(o.outcome == "already" for o in outcomes),
        },
        graph_request_ids=call.request_ids,
        groups=list(outcomes),
    )


def _failure(outcomes: list[MembershipOutcome], errors: list[GraphError], direction: str) -> ActivityError:
    failed = [o for o in outcomes if o.outcome == "failed"]
    worst = from_graph_error(errors[0])
    for error in errors[1:]:
        candidate = from_graph_error(error)
        if candidate.status >= 500 and (worst.status < 500 or candidate.status == 503):
            worst = candidate
    ok = len(outcomes) - len(failed)
    verb = "added to" if direction == "add" else "removed from"
    worst.detail = f"the user was {verb} {ok} of {len(outcomes)} groups; failed: " + "; ".join(
        f"{o.group}: {o.error}" for o in failed
    )
    worst.kind = "membership-incomplete" if worst.status < 500 else worst.kind
    worst.groups = outcomes
    return worst


async def add(call: ActivityCall, request: MembershipRequest) -> MembershipResponse:
    return await change(call, request, "add")


async def remove(call: ActivityCall, request: MembershipRequest) -> MembershipResponse:
    return await change(call, request, "remove")


async def verify(call: ActivityCall, request: MembershipVerifyRequest) -> VerifyResponse:
    """Direct membership: ``GET /groups/{id}/members?$filter=id eq '{user}'`` as an advanced query
    (docs/graph-behaviour.md section 2: filtering a relationship needs ``ConsistencyLevel: eventual`` and
    ``$count=true``)."""
    try:
        page = await call.get_json(
            f"/groups/{request.group}/members",
            params={"$filter": f"id eq '{request.user.lower()}'", "$count": "true", "$select": "id"},
            headers={"ConsistencyLevel": "eventual"},
        )
    except GraphError as error:
        raise from_graph_error(error) from None
    found = any(str(item.get("id", "")).lower() == request.user.lower() for item in page.get("value") or [])
    return VerifyResponse(
        activity=call.activity,
        task=call.task.name,
        object_id=request.group,
        result={"found": found},
        graph_request_ids=call.request_ids,
        found=found,
    )
