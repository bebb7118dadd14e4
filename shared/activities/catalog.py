"""Every activity of the API: its name, route, request and response models, and the function that runs it.

The Function App registers one HTTP function per entry (``functions/activities.py``), and the OpenAPI
document is generated from this list, so the routes, the functions and the document agree.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from shared.activities import custom_objects, generic_calls, groups, memberships, users
from shared.activities.contract import (
    ActivityResponse,
    CustomCreateRequest,
    CustomObjectRequest,
    CustomUpdateRequest,
    GenericCallRequest,
    GroupCreateRequest,
    GroupRequest,
    GroupUpdateRequest,
    MembershipRequest,
    MembershipResponse,
    MembershipVerifyRequest,
    PasswordResetRequest,
    PhotoRequest,
    RunStatusResponse,
    RunTaskRequest,
    UserCreateRequest,
    UserRequest,
    UserUpdateRequest,
    VerifyRequest,
    VerifyResponse,
)

API_PREFIX = "v1/activities"


@dataclass(frozen=True)
class Activity:
    name: str  # users.create
    summary: str
    request: type[BaseModel]
    response: type[BaseModel]
    run: Callable[[Any, Any], Awaitable[Any]] | None  # (ActivityCall, request) -> response; None: special
    success_status: int = 200

    @property
    def route(self) -> str:
        """The Functions route (under ``/api``): ``v1/activities/users/create``."""
        return f"{API_PREFIX}/{self.name.replace('.', '/')}"

    @property
    def path(self) -> str:
        return f"/api/{self.route}"

    @property
    def function_name(self) -> str:
        """The function's name in the portal: ``activity_users_create``."""
        return "activity_" + self.name.replace(".", "_").replace("-", "_")


ACTIVITIES: tuple[Activity, ...] = (
    Activity("users.create", "Create a user", UserCreateRequest, ActivityResponse, users.create, 201),
    Activity(
        "users.update",
        "Update a user (never the password)",
        UserUpdateRequest,
        ActivityResponse,
        users.update,
    ),
    Activity("users.delete", "Delete a user", UserRequest, ActivityResponse, users.delete),
    Activity(
        "users.enable", "Activate a user (accountEnabled true)", UserRequest, ActivityResponse, users.enable
    ),
    Activity(
        "users.disable",
        "Deactivate a user (accountEnabled false)",
        UserRequest,
        ActivityResponse,
        users.disable,
    ),
    Activity(
        "users.reset-password",
        "Reset a user's password",
        PasswordResetRequest,
        ActivityResponse,
        users.reset_password,
    ),
    Activity("users.read", "Read a user's mapped attributes", UserRequest, ActivityResponse, users.read),
    Activity(
        "users.verify",
        "Verify that a user exists (IF expression)",
        VerifyRequest,
        VerifyResponse,
        users.verify,
    ),
    Activity("users.set-photo", "Set a user's photo", PhotoRequest, ActivityResponse, users.set_photo),
    Activity("groups.create", "Create a group", GroupCreateRequest, ActivityResponse, groups.create, 201),
    Activity("groups.update", "Update a group", GroupUpdateRequest, ActivityResponse, groups.update),
    Activity("groups.delete", "Delete a group", GroupRequest, ActivityResponse, groups.delete),
    Activity(
        "groups.verify",
        "Verify that a group exists (IF expression)",
        VerifyRequest,
        VerifyResponse,
        groups.verify,
    ),
    Activity(
        "memberships.add", "Add a user to groups", MembershipRequest, MembershipResponse, memberships.add
    ),
    Activity(
        "memberships.remove",
        "Remove a user from groups",
        MembershipRequest,
        MembershipResponse,
        memberships.remove,
    ),
    Activity(
        "memberships.verify",
        "Verify a direct membership",
        MembershipVerifyRequest,
        VerifyResponse,
        memberships.verify,
    ),
    Activity(
        "objects.create",
        "Create a custom object",
        CustomCreateRequest,
        ActivityResponse,
        custom_objects.create,
        201,
    ),
    Activity(
        "objects.update",
        "Update a custom object",
        CustomUpdateRequest,
        ActivityResponse,
        custom_objects.update,
    ),
    Activity(
        "objects.delete",
        "Delete a custom object",
        CustomObjectRequest,
        ActivityResponse,
        custom_objects.delete,
    ),
    Activity(
        "graph.call",
        "Generic REST call to Graph",
        GenericCallRequest,
        ActivityResponse,
        generic_calls.call_graph,
    ),
    Activity("tasks.run", "Run a scheduled task now", RunTaskRequest, RunStatusResponse, None),
)
BY_NAME = {activity.name: activity for activity in ACTIVITIES}

RUN_STATUS_ROUTE = f"{API_PREFIX}/tasks/runs/{{task}}/{{run_id}}"
OPENAPI_ROUTE = f"{API_PREFIX}/openapi.json"
