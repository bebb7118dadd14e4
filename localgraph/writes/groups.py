"""``POST /groups`` and ``PATCH /groups/{id}``, and which groups' memberships Graph writes [docs/graph-behaviour.md section 7]."""

from __future__ import annotations

import uuid
from typing import Any

from localgraph.context import ServerContext
from localgraph.errors import bad_request
from localgraph.routing import GraphRequest, GraphResponse, Router
from localgraph.tenant import DirObject, utc_now
from localgraph.writes.objects import (
    SYNC_MASTERED_MESSAGE,
    created_response,
    group_type,
    lookup,
    object_body,
    security_identifier,
    synced,
)
from localgraph.writes.properties import (
    check_mail_nickname,
    invalid_value,
    require_bool,
    require_text,
    validate,
)
from localgraph.writes.references import resolve_links

router = Router()

GROUP_SYNC_MASTERED = frozenset({
    "displayName", "description", "mailNickname", "mailEnabled", "securityEnabled", "groupTypes",
    "visibility",
})  # fmt: skip
MAIL_ENABLED_WRITE = (
    "The service does not currently support writes of mail-enabled groups. Please ensure that the "
    "mail-enablement property is unset and the security-enablement property is set."
)  # 3P capture (microsoft-graph-docs#372)
EXCHANGE_GROUP = "Cannot Update a mail-enabled security groups and or distribution list."  # 3P, many


def check_members_writable(group: DirObject) -> None:
    """Graph manages the membership of cloud security and Microsoft 365 groups only."""
    if synced(group):
        raise bad_request(SYNC_MASTERED_MESSAGE)
    if group_type(group) in ("mailsecurity", "distribution"):
        raise bad_request(EXCHANGE_GROUP)
    if "DynamicMembership" in (group.props.get("groupTypes") or []):
        # The rule is documented ("Not possible on dynamic groups", docs/graph-behaviour.md section 7); status and text are
        # UNCONFIRMED (a Microsoft support blog lists dynamic groups among the 403 causes).
        raise bad_request(
            "Members of a group with dynamic membership are managed by its membership rule and cannot be "
            "added or removed."
        )


def _check_group_shape(changes: dict[str, Any], current: dict[str, Any] | None) -> None:
    """Kinds of group Graph can write: security groups and Microsoft 365 groups [docs/graph-behaviour.md section 7]."""
    merged = {**(current or {}), **changes}
    group_types = merged.get("groupTypes") or []
    if not all(isinstance(t, str) for t in group_types):
        raise invalid_value("groupTypes", "group")
    unified = "Unified" in group_types
    if current is not None and unified != ("Unified" in (current.get("groupTypes") or [])):
        raise invalid_value("groupTypes", "group")  # a group's type can't change; UNCONFIRMED error
    if unified and merged.get("mailEnabled") is False:
        raise invalid_value("mailEnabled", "group")  # M365 groups are mail-enabled; UNCONFIRMED error
    if not unified and merged.get("mailEnabled"):
        raise bad_request(MAIL_ENABLED_WRITE)
    if not unified and not merged.get("securityEnabled"):
        raise invalid_value("securityEnabled", "group")  # neither mail nor security; UNCONFIRMED error
    if "DynamicMembership" in group_types:
        rule = merged.get("membershipRule")
        if not isinstance(rule, str) or not rule.strip():
            raise invalid_value("membershipRule", "group")
    if "visibility" in changes:
        allowed = ("Public", "Private", "HiddenMembership") if current is None else ("Public", "Private")
        if changes["visibility"] not in allowed or not unified:
            raise invalid_value("visibility", "group")


@router.route("POST", "/groups")
def create_group(ctx: ServerContext, req: GraphRequest) -> GraphResponse:
    """[docs/graph-behaviour.md section 7] Required: displayName (<= 256), mailEnabled, mailNickname, securityEnabled.
    ``members@odata.bind`` / ``owners@odata.bind``: at most 20 links in all; a bad one creates nothing."""
    tenant = ctx.tenant
    body = object_body(req)
    changes = validate(ctx, req, "group", body, creating=True)
    require_text(changes, "displayName", "group", max_length=256)
    require_bool(changes, "mailEnabled", "group")
    if "mailNickname" not in changes:
        raise invalid_value("mailNickname", "group")
    check_mail_nickname(changes["mailNickname"], "group")
    require_bool(changes, "securityEnabled", "group")
    _check_group_shape(changes, None)
    members, owners = resolve_links(ctx, req, None, body)
    dynamic = "DynamicMembership" in (changes.get("groupTypes") or [])
    if dynamic and members:
        raise bad_request(
            "Members of a group with dynamic membership are managed by its membership rule and "
            "cannot be added or removed."
        )
    object_id = str(uuid.uuid4())
    now = utc_now()
    props: dict[str, Any] = {
        "id": object_id,
        "groupTypes": [],
        "proxyAddresses": [],
        "resourceProvisioningOptions": [],
        "resourceBehaviorOptions": [],
        "isAssignableToRole": False,
        "renewedDateTime": now,
        "createdDateTime": now,
        "securityIdentifier": security_identifier(object_id),
        **changes,
    }
    if dynamic:
        props.setdefault("membershipRuleProcessingState", "On")
    if "Unified" in props["groupTypes"]:
        nickname = changes["mailNickname"]
        domain = next(
            (d for d in tenant.verified_domains if not d.lower().endswith(".onmicrosoft.com")), tenant.domain
        )
        props["mail"] = f"{nickname}@{domain}"
        props["proxyAddresses"] = [f"SMTP:{nickname}@{domain}"] + (
            [f"smtp:{nickname}@{tenant.domain}"] if domain != tenant.domain else []
        )
        props.setdefault("visibility", "Public")
    group = tenant.create("group", props)  # a duplicate mailNickname raises ObjectConflict
    for member in members:
        tenant.add_member(group.id, member.id)
    if owners:
        tenant.owners[group.id] = {owner.id: None for owner in owners}
    return created_response(ctx, req, group)


@router.route("PATCH", "/groups/{id}")
def update_group(ctx: ServerContext, req: GraphRequest, id: str) -> GraphResponse:
    """[docs/graph-behaviour.md section 7] 204. ``members@odata.bind`` adds up to 20 members; if any of them is bad, no
    member is added and no property changes."""
    group = lookup(ctx, "group", id)
    body = object_body(req)
    changes = validate(ctx, req, "group", body, creating=False)
    if synced(group) and GROUP_SYNC_MASTERED & changes.keys():
        raise bad_request(SYNC_MASTERED_MESSAGE)
    if changes and group_type(group) in ("mailsecurity", "distribution"):
        raise bad_request(EXCHANGE_GROUP)  # Exchange-mastered groups; UNCONFIRMED for properties
    if "displayName" in changes:
        require_text(changes, "displayName", "group", max_length=256)
    if "mailNickname" in changes:
        check_mail_nickname(changes["mailNickname"], "group")
    for name in ("mailEnabled", "securityEnabled"):
        if name in changes:
            require_bool(changes, name, "group")
    if changes:
        _check_group_shape(changes, group.props)
    members, owners = resolve_links(ctx, req, group, body)
    if members:
        check_members_writable(group)
    ctx.tenant.update(group.id, changes)
    for member in members:
        ctx.tenant.add_member(group.id, member.id)
    if owners:
        ctx.tenant.owners.setdefault(group.id, {}).update({owner.id: None for owner in owners})
    return GraphResponse(204)
