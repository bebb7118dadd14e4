"""What each configured feature needs from Microsoft Graph: application permissions (app roles, the ``roles``
claim of an app-only token), any one of which is enough.

Sources: the permission tables of each API on Microsoft Learn, e.g.
https://learn.microsoft.com/graph/api/user-list#permissions, https://learn.microsoft.com/graph/api/user-delta,
https://learn.microsoft.com/graph/api/group-list-members#permissions,
https://learn.microsoft.com/graph/api/user-update#permissions (passwordProfile: User-PasswordProfile.ReadWrite.All
or User.ReadWrite.All), https://learn.microsoft.com/graph/api/group-post-members#permissions,
https://learn.microsoft.com/graph/api/user-list-transitivememberof#permissions; docs/graph-behaviour.md
section 6 (a missing permission answers 403 Authorization_RequestDenied).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_DIRECTORY_READ = ("Directory.Read.All", "Directory.ReadWrite.All")
USER_READ = ("User.Read.All", "User.ReadWrite.All", *_DIRECTORY_READ)
GROUP_MEMBER_READ = (
    "GroupMember.Read.All",
    "Group.Read.All",
    "GroupMember.ReadWrite.All",
    "Group.ReadWrite.All",
    *_DIRECTORY_READ,
)
USER_WRITE = ("User.ReadWrite.All", "Directory.ReadWrite.All")
USER_PASSWORD = ("User-PasswordProfile.ReadWrite.All", "User.ReadWrite.All")
GROUP_WRITE = ("Group.ReadWrite.All", "Directory.ReadWrite.All")
GROUP_MEMBER_WRITE = ("GroupMember.ReadWrite.All", "Group.ReadWrite.All", "Directory.ReadWrite.All")


@dataclass(frozen=True)
class Need:
    """One feature of one task and the permissions of which it needs any one."""

    task: str
    feature: str
    any_of: tuple[str, ...]

    def met_by(self, roles: set[str]) -> bool:
        return any(role in roles for role in self.any_of)


def needs_of(task: dict[str, Any]) -> list[Need]:
    """The Graph permissions a task definition (plain data) needs, feature by feature."""
    name = str(task.get("name"))
    usage = task.get("usage", "scheduled")
    mappings_type = task.get("mappings_type", "")
    needs: list[Need] = []
    if usage == "scheduled":
        if mappings_type in ("identity", "identity_and_access"):
            needs.append(Need(name, "read users", USER_READ))
            users = task.get("users") or {}
            if users.get("include_members_of") or users.get("exclude_members_of"):
                needs.append(Need(name, "scope users by group membership", GROUP_MEMBER_READ))
        if mappings_type in ("access", "identity_and_access"):
            needs.append(Need(name, "read groups and their members", GROUP_MEMBER_READ))
    elif usage == "event":
        if mappings_type in ("identity", "identity_and_access"):
            needs.append(Need(name, "create and update users", USER_WRITE))
            if task.get("password") is not None:
                needs.append(Need(name, "set and reset passwords", USER_PASSWORD))
        if mappings_type in ("access", "identity_and_access"):
            needs.append(Need(name, "create and update groups", GROUP_WRITE))
            needs.append(Need(name, "add and remove group members", GROUP_MEMBER_WRITE))
        if mappings_type == "identity_and_access":
            needs.append(Need(name, "verify memberships", GROUP_MEMBER_READ))
    elif usage == "authentication":
        needs.append(Need(name, "read the signing-in user", USER_READ))
        groups = task.get("groups") or {}
        if groups.get("member_of") or groups.get("excluded_member_of"):
            needs.append(Need(name, "read transitive group memberships", GROUP_MEMBER_READ))
    return needs
