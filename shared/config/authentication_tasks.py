"""Authentication tasks: which of the tenant's users may sign in to the platform through Entra ID, and how.

An authentication task names its connector, a user filter (an OData ``$filter`` on the user, evaluated by the
connector exactly as Graph would, plus ids to leave out), a group filter (the user must be a member, directly
or through nested groups, of at least one of these groups; none listed: no group condition), the sign-in
protocol (SAML 2.0 or OpenID Connect) and the realm the platform's sign-in component files the configuration
under. ``shared.admin.signin`` answers "may this user sign in, and if not why" and exports the sign-in
configuration (issuer, metadata URLs, client id, protocol, realm) for the tenant's cloud.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, field_validator

from shared.config.fields import ID_DESCRIPTION, ConfigModel, EntityId, Guid, Name
from shared.odata import FilterError, analyze, parse_filter

SignInProtocol = Literal["saml2", "openid_connect"]
REALM_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$"
Realm = Annotated[str, StringConstraints(pattern=REALM_PATTERN)]
# Properties a user filter may test: what GET /users/{id} returns with $select (docs/graph-behaviour.md
# section 1); navigation properties (memberOf, manager) are not selectable there, so they are refused.
_NOT_FILTERABLE = frozenset({"memberOf", "transitiveMemberOf", "manager", "directReports", "members"})


class UserSignInFilter(ConfigModel):
    """Which users may sign in, by their own attributes."""

    filter: str | None = Field(
        default=None,
        description=(
            "An OData $filter on the user, e.g. accountEnabled eq true and userType eq 'Member'; evaluated "
            "against the user's attributes read from Graph. Absent: every user."
        ),
    )
    excluded_ids: list[Guid] = Field(
        default_factory=list, description="User object ids that may never sign in."
    )

    @field_validator("filter")
    @classmethod
    def _parses(cls, text: str | None) -> str | None:
        if text is None:
            return None
        try:
            node = parse_filter(text)
        except FilterError as exc:
            raise ValueError(f"$filter: {exc}") from None
        bad = sorted(analyze(node).properties & _NOT_FILTERABLE)
        if bad:
            raise ValueError(
                f"$filter: {', '.join(bad)} cannot be tested here; use groups.member_of for memberships"
            )
        return text


class GroupSignInFilter(ConfigModel):
    """Which users may sign in, by the groups they are in."""

    member_of: list[Guid] = Field(
        default_factory=list,
        description=(
            "Group object ids; a user may sign in only when a member of at least one of them, directly or "
            "through nested groups (transitive membership). Empty: no group condition."
        ),
    )
    excluded_member_of: list[Guid] = Field(
        default_factory=list,
        description="Group object ids whose members (transitively) may never sign in.",
    )


class AuthenticationTask(ConfigModel):
    """Who may sign in to the platform through this tenant, with which protocol and realm."""

    usage: Literal["authentication"] = Field(description="The task's kind: sign-in to the platform.")
    id: EntityId | None = Field(default=None, description=ID_DESCRIPTION)
    name: Name = Field(description="Unique task name.")
    connector: Name = Field(description="Name of the connector whose tenant users sign in from.")
    enabled: bool = True
    description: str | None = None
    protocol: SignInProtocol = Field(description="saml2 (SAML 2.0) or openid_connect (OpenID Connect).")
    realm: Realm = Field(description="The platform's authentication realm this configuration belongs to.")
    users: UserSignInFilter = Field(default_factory=UserSignInFilter)
    groups: GroupSignInFilter = Field(default_factory=GroupSignInFilter)
