"""User activities: create, update, delete, enable / disable, reset password, read, verify, set photo
(docs/graph-behaviour.md section 7; https://learn.microsoft.com/graph/api/user-post-users,
https://learn.microsoft.com/graph/api/user-update, https://learn.microsoft.com/graph/api/profilephoto-update).

- **create** needs mappings for displayName, mailNickname and userPrincipalName (and their values); the
  password comes from the event task's policy (the default password's secret reference, or the request's
  password); ``accountEnabled`` is true unless mapped. A create whose outcome is unknown (a timeout, a 5xx:
  Graph may have created the user) is never sent again: the user is looked up by its userPrincipalName, and
  found means created, unless it was created before the call began (a 409: the POST cannot have made it). Groups named in the request are joined once Graph's replicas know the new user.
- **update** never writes the password (a mapping to ``passwordProfile`` is refused there).
- **delete** is Completed when the user is gone; a 404 after the client itself re-sent the DELETE (the first
  attempt did it) is Completed too.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from shared.activities import translation
from shared.activities.calls import REPLICATION_WINDOW_S, ActivityCall, user_path
from shared.activities.conditions import build_filter, comparisons_from
from shared.activities.contract import (
    ActivityResponse,
    PasswordResetRequest,
    PhotoRequest,
    UserCreateRequest,
    UserRequest,
    UserUpdateRequest,
    VerifyRequest,
    VerifyResponse,
)
from shared.activities.images import PhotoRefused, prepare_photo
from shared.activities.memberships import add_member
from shared.activities.problems import ActivityError, from_graph_error, invalid
from shared.config.event_tasks import EventMappings
from shared.graph.errors import GraphError, NotFound
from shared.retry import Action
from shared.secrets import SecretError, resolve_secret

REQUIRED_FOR_CREATE = ("displayName", "mailNickname", "userPrincipalName")
CLOCK_SKEW = timedelta(minutes=5)  # between this host's clock and Graph's createdDateTime


def created_since(item: dict[str, Any], moment: datetime) -> bool:
    """Whether Graph's ``createdDateTime`` of ``item`` is at or after ``moment``."""
    try:
        created = datetime.fromisoformat(str(item.get("createdDateTime")).replace("Z", "+00:00"))
    except ValueError:
        return False
    return created.tzinfo is not None and created >= moment


def user_mappings(call: ActivityCall) -> EventMappings:
    if call.task.users is None:
        raise invalid(
            [
                (
                    "task",
                    f"event task {call.task.name} has no user mappings (mappings_type {call.task.mappings_type})",
                )
            ]
        )
    return call.task.users


def graph_body(call: ActivityCall, values: dict[str, Any], mappings: EventMappings) -> dict[str, Any]:
    try:
        return translation.to_graph(values, mappings, call.task)
    except translation.TranslationProblems as exc:
        raise invalid(exc.problems) from None


def create_body(
    call: ActivityCall, values: dict[str, Any], mappings: EventMappings, required: tuple[str, ...], kind: str
) -> dict[str, Any]:
    """The Graph body of a create: the translated values, with every problem named at once (values that do not
    translate, required properties the task maps no code to or the call leaves empty)."""
    problems: list[tuple[str, str]] = []
    try:
        body = translation.to_graph(values, mappings, call.task)
    except translation.TranslationProblems as exc:
        problems, body = list(exc.problems), exc.body
    for prop in required:
        code = translation.mapped(mappings, prop)
        if code is None:
            problems.append(("task", f"event task {call.task.name} maps no local code to {prop}"))
        elif body.get(prop) in (None, ""):
            problems.append((f"values.{code}", f"required to create a {kind} ({prop})"))
    if problems:
        raise invalid(problems)
    return body


def response(call: ActivityCall, **fields: Any) -> dict[str, Any]:
    return {
        "activity": call.activity,
        "task": call.task.name,
        "graph_request_ids": call.request_ids,
        **fields,
    }


async def password_for(call: ActivityCall, given: str | None) -> str:
    policy = call.task.password
    if policy is None:
        raise invalid([("task", f"event task {call.task.name} has no password policy")])
    if policy.source == "workflow":
        if not given:
            raise invalid([("password", "required: the event task's password policy is 'workflow'")])
        return given
    if given:
        raise invalid(
            [
                (
                    "password",
                    "not allowed: the event task's password policy is 'default' (the default password)",
                )
            ]
        )
    ref = policy.default_password
    assert ref is not None
    try:
        if ref.app_setting is not None:  # no I/O: the platform resolved any Key Vault reference already
            return resolve_secret(ref, environ=call.environ)
        return await asyncio.to_thread(resolve_secret, ref, environ=call.environ, key_vault=call.key_vault)
    except SecretError as exc:
        raise ActivityError(
            502, "secret-unavailable", f"the default password cannot be read: {exc}"
        ) from None


async def create(call: ActivityCall, request: UserCreateRequest) -> ActivityResponse:
    mappings = user_mappings(call)
    body = create_body(call, request.values, mappings, REQUIRED_FOR_CREATE, "user")
    password = await password_for(call, request.password.get_secret_value() if request.password else None)
    body.setdefault("accountEnabled", True)
    body["passwordProfile"] = {
        "password": password,
        "forceChangePasswordNextSignIn": request.force_change_password,
    }
    upn = str(body["userPrincipalName"])
    resolved_by_lookup = False
    sent_at = datetime.now(UTC)
    try:
        created = (await call.send("POST", "/users", json_body=body)).json()
    except GraphError as error:
        if error.action not in (Action.LOOKUP, Action.RETRY) or error.status not in (0, 500, 502, 503, 504):
            raise from_graph_error(error) from None
        created = await _look_up_after_unknown_outcome(call, upn, error)
        if not created_since(created, sent_at - CLOCK_SKEW):
            raise ActivityError(
                409,
                "graph-conflict",
                f"creating {upn} had no answer from Graph ({error}); a user with this userPrincipalName already "
                f"existed before the call (id {created['id']}, created {created.get('createdDateTime')})",
                graph=error,
            ) from None
        resolved_by_lookup = True
    user_id = created["id"]
    result = translation.from_graph({**_without_password(body), **created}, mappings, call.task)
    for group in request.groups:
        try:
            await call.replicated(partial(add_member, call, group, user_id))
        except GraphError as error:
            if error.action == Action.NONE and not isinstance(error, NotFound):
                continue  # already a member
            failure = from_graph_error(error)
            failure.detail = (
                f"the user {user_id} was created, but adding it to group {group} failed: {failure.detail}"
            )
            failure.result = result
            raise failure from None
    return ActivityResponse(
        **response(call, object_id=user_id, result={**result, "resolved_by_lookup": resolved_by_lookup})
    )


def _without_password(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "passwordProfile"}


async def _look_up_after_unknown_outcome(call: ActivityCall, upn: str, error: GraphError) -> dict[str, Any]:
    """The POST may or may not have created the user: look it up by its UPN (never send it again)."""
    try:
        return await call.replicated(
            lambda: call.get_json(
                user_path(upn), params={"$select": "id,userPrincipalName,displayName,createdDateTime"}
            ),
            not_found_window_s=REPLICATION_WINDOW_S,
        )
    except NotFound:
        raise ActivityError(
            503,
            "outcome-unknown",
            f"creating {upn} had no answer from Graph ({error}) and Graph does not show the user; "
            "it was not created: the call can be repeated",
            graph=error,
            retry_after_s=5,
        ) from None
    except GraphError as lookup_error:
        raise from_graph_error(lookup_error) from None


async def update(call: ActivityCall, request: UserUpdateRequest) -> ActivityResponse:
    mappings = user_mappings(call)
    body = graph_body(call, request.values, mappings)
    if "passwordProfile" in body:
        code = next(m.local for m in mappings.mappings if m.external.startswith("passwordProfile"))
        raise invalid([(f"values.{code}", "the password cannot be updated here; use users/reset-password")])
    await _patch(call, request.user, body)
    return ActivityResponse(**response(call, object_id=request.user, result=dict(request.values)))


async def _patch(call: ActivityCall, user: str, body: dict[str, Any]) -> None:
    try:
        await call.send("PATCH", user_path(user), json_body=body)
    except GraphError as error:
        raise from_graph_error(error) from None


async def delete(call: ActivityCall, request: UserRequest) -> ActivityResponse:
    await delete_object(call, user_path(request.user))
    return ActivityResponse(**response(call, object_id=request.user, result={"deleted": True}))


async def delete_object(call: ActivityCall, path: str) -> None:
    try:
        await call.send("DELETE", path)
    except NotFound as error:
        if call.last_retries > 0:
            return  # the client re-sent the DELETE after no answer: the first attempt deleted it
        raise from_graph_error(error) from None
    except GraphError as error:
        raise from_graph_error(error) from None


async def set_enabled(call: ActivityCall, request: UserRequest, enabled: bool) -> ActivityResponse:
    await _patch(call, request.user, {"accountEnabled": enabled})
    code = translation.mapped(call.task.users, "accountEnabled")
    result: dict[str, Any] = {code: enabled} if code else {}
    return ActivityResponse(
        **response(call, object_id=request.user, result={**result, "accountEnabled": enabled})
    )


async def enable(call: ActivityCall, request: UserRequest) -> ActivityResponse:
    return await set_enabled(call, request, True)


async def disable(call: ActivityCall, request: UserRequest) -> ActivityResponse:
    return await set_enabled(call, request, False)


async def reset_password(call: ActivityCall, request: PasswordResetRequest) -> ActivityResponse:
    password = await password_for(call, request.password.get_secret_value() if request.password else None)
    profile = {"password": password, "forceChangePasswordNextSignIn": request.force_change_password}
    await _patch(call, request.user, {"passwordProfile": profile})
    return ActivityResponse(
        **response(
            call,
            object_id=request.user,
            result={"forceChangePasswordNextSignIn": request.force_change_password},
        )
    )


async def read(call: ActivityCall, request: UserRequest) -> ActivityResponse:
    mappings = user_mappings(call)
    select = ",".join(translation.select_properties(mappings))
    try:
        obj = await call.get_json(user_path(request.user), params={"$select": select})
    except GraphError as error:
        raise from_graph_error(error) from None
    return ActivityResponse(
        **response(call, object_id=obj.get("id"), result=translation.from_graph(obj, mappings, call.task))
    )


async def verify(call: ActivityCall, request: VerifyRequest) -> VerifyResponse:
    return await verify_in(call, request, "/users", user_mappings(call))


async def verify_in(
    call: ActivityCall, request: VerifyRequest, collection: str, mappings: EventMappings
) -> VerifyResponse:
    by_local = {mapping.local: mapping.external for mapping in mappings.mappings}
    conditions = [c.model_dump() for c in request.conditions]
    value_problems: list[tuple[str, str]] = []
    for index, condition in enumerate(conditions):
        mapping = mappings.external_of().get(condition["code"])
        if mapping is not None:  # values in the task's date formats compare as Graph's dates
            try:
                condition["value"] = translation.typed_value(condition["value"], mapping, call.task)
            except ValueError as exc:
                value_problems.append((f"conditions[{index}].value", str(exc)))
    comparisons, problems = comparisons_from(conditions, by_local)
    if problems or value_problems:
        raise invalid(
            [(f"conditions[{index}].code", message) for index, message in problems] + value_problems
        )
    query = build_filter(comparisons)
    try:
        page = await call.get_json(collection, params=query.params(), headers=query.headers())
    except GraphError as error:
        raise from_graph_error(error) from None
    items = page.get("value") or []
    found = bool(items)
    return VerifyResponse(
        **response(
            call,
            object_id=items[0].get("id") if found else None,
            result={"found": found, "filter": query.filter, "advanced_query": query.advanced},
        ),
        found=found,
    )


async def set_photo(call: ActivityCall, request: PhotoRequest) -> ActivityResponse:
    try:
        data = base64.b64decode(request.photo, validate=True)
    except (binascii.Error, ValueError):
        raise invalid([("photo", "not base64")]) from None
    try:
        photo = await asyncio.to_thread(prepare_photo, data, max_bytes=call.task.photo_max_bytes)
    except PhotoRefused as exc:
        raise invalid([("photo", str(exc))]) from None
    try:
        await call.send(
            "PUT",
            f"{user_path(request.user)}/photo/$value",
            headers={"Content-Type": "image/jpeg"},
            content=photo.data,
        )
    except GraphError as error:
        raise from_graph_error(error) from None
    return ActivityResponse(
        **response(
            call,
            object_id=request.user,
            result={
                "bytes": len(photo.data),
                "width": photo.width,
                "height": photo.height,
                "source_format": photo.source_format,
                "source_bytes": photo.source_bytes,
            },
        )
    )
