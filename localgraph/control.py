"""The control API (``/_control``), outside Graph's paths: what tests, the benchmark and the demo use to
act as a tenant administrator, read the request log, and switch behaviours and faults.

It needs no token (the server listens on loopback only). Endpoints:

- ``GET  /_control/info``: connection facts and tenant counts.
- ``GET  /_control/requests`` (summary: HTTP calls, batch steps, RU, by path); ``DELETE`` clears the log.
- ``GET|PATCH /_control/settings``: latency, page sizes, token lifetime, budgets... (see GraphSettings).
- ``GET|PUT|DELETE /_control/faults``: ``{"rules": [FaultRule...]}``.
- ``GET  /_control/objects/{collection}``: every object with all its properties (``members`` and
  ``manager`` included), for comparing a connector's output with the tenant.
- ``POST /_control/objects/{collection}``: create (as an admin would in the portal);
  ``PATCH|DELETE /_control/objects/{collection}/{id}`` (``?hard=true`` purges);
  ``POST /_control/objects/{collection}/{id}/restore``.
- ``POST /_control/groups/{id}/members``: ``{"add": [ids], "remove": [ids]}``.
- ``PUT  /_control/users/{id}/manager``: ``{"id": managerId | null}``.
- ``POST /_control/churn``: ``{"fraction": 0.01, "seed": 1}`` changes that share of users and groups
  (updates, creates, soft and hard deletes, membership adds and removes) and reports what it did.
- ``POST /_control/delta/invalidate``: ``{"mode": "syncStateNotFound" | "reset"}``: every delta token
  issued so far stops working, the way chosen.
- ``POST /_control/tokens/revoke``: every access token issued so far is refused from now on (401).
- ``POST /_control/apps``: register another app (``{"roles": [...]}``), e.g. one with fewer permissions.
"""

from __future__ import annotations

import json
import random
import secrets
import time
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from localgraph.context import ServerContext
from localgraph.errors import GraphError
from localgraph.tenant import COLLECTIONS, AppRegistration, DirObject, Tenant


async def json_body(request: Request) -> Any:
    """A control request's JSON body ({} when empty)."""
    raw = await request.body()
    return json.loads(raw) if raw.strip() else {}


def guarded(handler):
    """A control handler as a route endpoint: its result as JSON, Graph-style errors, bad input as 400."""

    async def run(request: Request) -> Response:
        try:
            result = await handler(request)
        except GraphError as error:
            return JSONResponse(error.body("control", None), error.status)
        except (ValueError, TypeError, KeyError) as error:
            return JSONResponse({"error": {"code": "BadRequest", "message": str(error)}}, 400)
        return result if isinstance(result, Response) else JSONResponse(result)

    return run


def export(tenant: Tenant, obj: DirObject) -> dict[str, Any]:
    item = dict(obj.view)
    item["@odata.type"] = obj.odata_type
    if obj.kind == "group":
        item["members"] = list(tenant.members.get(obj.id, {}))
    if obj.kind == "user":
        # As Graph shows it: a manager in deleted items (or purged) is no manager.
        manager = tenant.objects.get(tenant.manager.get(obj.id) or "")
        item["manager"] = manager.id if manager is not None and manager.deleted is None else None
    return item


def churn(tenant: Tenant, fraction: float, seed: int) -> dict[str, int]:
    """Change ``fraction`` of users and groups the way a busy directory changes."""
    rng = random.Random(seed)
    users = [u for u in tenant.live("user")]
    groups = [g for g in tenant.live("group")]
    done = {"users_updated": 0, "users_created": 0, "users_soft_deleted": 0, "users_hard_deleted": 0,
            "groups_updated": 0, "groups_created": 0, "groups_deleted": 0, "members_added": 0,
            "members_removed": 0}  # fmt: skip
    n_users = max(1, round(len(users) * fraction))
    n_groups = max(1, round(len(groups) * fraction))
    victims = rng.sample(users, min(len(users), n_users))
    for index, user in enumerate(victims):
        action = index % 10
        if action < 6:
            title = f"Changed title {rng.randrange(10**6)}"  # drawn before the department, as always
            department = rng.choice(["Sales", "Finance", "Legal", "Operations"])
            tenant.update(user.id, {"jobTitle": title, "department": department})
            done["users_updated"] += 1
        elif action < 8:
            tenant.delete(user.id)
            done["users_soft_deleted"] += 1
        else:
            tenant.purge(user.id)
            done["users_hard_deleted"] += 1
    for index in range(max(1, n_users // 5)):
        nickname = f"churn.user.{seed}.{index}"
        tenant.create("user", {
            "displayName": f"Churn User {index}", "givenName": "Churn", "surname": f"User {index}",
            "userPrincipalName": f"{nickname}@{tenant.domain}", "mailNickname": nickname,
            "accountEnabled": True, "userType": "Member", "department": "Sales",
            "businessPhones": [], "otherMails": [], "proxyAddresses": [], "imAddresses": [], "identities": [],
            "assignedLicenses": [],
        })  # fmt: skip
        done["users_created"] += 1
    live_users = [u for u in tenant.live("user")]
    for index, group in enumerate(rng.sample(groups, min(len(groups), n_groups))):
        if group.deleted:
            continue
        action = index % 5
        if action == 0:
            tenant.update(group.id, {"description": f"Changed {rng.randrange(10**6)}"})
            done["groups_updated"] += 1
        elif action == 4 and index % 3 == 0:
            tenant.delete(group.id)
            done["groups_deleted"] += 1
        else:
            current = list(tenant.members.get(group.id, {}))
            for member_id in rng.sample(current, min(len(current), 2)):
                tenant.remove_member(group.id, member_id)
                done["members_removed"] += 1
            for user in rng.sample(live_users, min(len(live_users), 3)):
                if user.id not in tenant.members.get(group.id, {}):
                    tenant.add_member(group.id, user.id)
                    done["members_added"] += 1
    for index in range(max(1, n_groups // 5)):
        nickname = f"churn-group-{seed}-{index}"
        group = tenant.create("group", {
            "displayName": f"Churn Group {index}", "mailNickname": nickname, "mailEnabled": False,
            "securityEnabled": True, "groupTypes": [], "proxyAddresses": [],
        })  # fmt: skip
        for user in rng.sample(live_users, min(len(live_users), 5)):
            tenant.add_member(group.id, user.id)
            done["members_added"] += 1
        done["groups_created"] += 1
    return done


def routes(ctx: ServerContext) -> list[Route]:
    tenant = ctx.tenant

    def kind_of(collection: str) -> str:
        kind = COLLECTIONS.get(collection)
        if kind is None:
            raise GraphError(404, "NotFound", f"unknown collection {collection}")
        return kind

    async def info(request: Request):
        return {
            "tenant_id": tenant.tenant_id,
            "domain": tenant.domain,
            "counts": {collection: tenant.count(kind) for collection, kind in COLLECTIONS.items()},
            "memberships": sum(
                len(m)
                for g, m in tenant.members.items()
                if g in tenant.objects and tenant.objects[g].deleted is None
            ),
            "managed_devices": len(tenant.managed_devices),
            "group_sizes": [len(tenant.members.get(g.id, {})) for g in tenant.live("group")],
            "seq": tenant.seq,
            "apps": sorted(tenant.apps),
        }

    async def requests_(request: Request):
        if request.method == "DELETE":
            ctx.log.clear()
            return {"cleared": True}
        return ctx.log.summary()

    async def settings(request: Request):
        if request.method == "PATCH":
            ctx.settings.update(await json_body(request))
        from dataclasses import asdict

        return asdict(ctx.settings)

    async def faults(request: Request):
        if request.method == "PUT":
            ctx.faults.replace((await json_body(request)).get("rules", []))
        elif request.method == "DELETE":
            ctx.faults.replace([])
        return {"rules": ctx.faults.describe()}

    async def objects(request: Request):
        kind = kind_of(request.path_params["collection"])
        if request.method == "POST":
            return export(tenant, tenant.create(kind, await json_body(request)))
        return {"value": [export(tenant, obj) for obj in tenant.live(kind)]}

    async def one_object(request: Request):
        kind = kind_of(request.path_params["collection"])
        object_id = request.path_params["id"]
        if request.method == "PATCH":
            tenant.get(object_id, kind)
            return export(tenant, tenant.update(object_id, await json_body(request)))
        if request.method == "DELETE":
            tenant.get(object_id, kind, include_deleted=True)
            if request.query_params.get("hard", "").lower() == "true":
                tenant.purge(object_id)
            else:
                tenant.delete(object_id)
            return {"deleted": object_id}
        return export(tenant, tenant.get(object_id, kind, include_deleted=True))

    async def restore(request: Request):
        kind_of(request.path_params["collection"])
        return export(tenant, tenant.restore(request.path_params["id"]))

    async def members(request: Request):
        group_id = request.path_params["id"]
        data = await json_body(request)
        for member_id in data.get("add", []):
            tenant.add_member(group_id, member_id)
        for member_id in data.get("remove", []):
            tenant.remove_member(group_id, member_id)
        return {"members": list(tenant.members.get(group_id.lower(), {}))}

    async def manager(request: Request):
        tenant.set_manager(request.path_params["id"], (await json_body(request)).get("id"))
        return {"manager": tenant.manager.get(request.path_params["id"].lower())}

    async def churn_(request: Request):
        data = await json_body(request)
        started = time.perf_counter()
        done = churn(tenant, float(data.get("fraction", 0.01)), int(data.get("seed", 1)))
        done["seconds"] = round(time.perf_counter() - started, 3)
        return done

    async def invalidate(request: Request):
        mode = (await json_body(request)).get("mode", "syncStateNotFound")
        if mode not in ("syncStateNotFound", "reset"):
            raise ValueError("mode must be syncStateNotFound or reset")
        ctx.settings.delta_token_failure = mode
        ctx.delta_generation += 1
        return {"generation": ctx.delta_generation, "mode": mode}

    async def apps(request: Request):
        data = await json_body(request)
        client_id = str(uuid.uuid4())
        app = AppRegistration(
            client_id=client_id,
            display_name=data.get("display_name", "Extra app"),
            secrets=[secrets.token_urlsafe(30)],
            roles=list(data.get("roles", [])),
        )
        tenant.apps[client_id] = app
        return {"client_id": client_id, "client_secret": app.secrets[0], "roles": app.roles}

    async def revoke(request: Request):
        return {"revoked": ctx.identity.revoke_all()}

    return [
        Route("/_control/tokens/revoke", guarded(revoke), methods=["POST"]),
        Route("/_control/info", guarded(info)),
        Route("/_control/requests", guarded(requests_), methods=["GET", "DELETE"]),
        Route("/_control/settings", guarded(settings), methods=["GET", "PATCH"]),
        Route("/_control/faults", guarded(faults), methods=["GET", "PUT", "DELETE"]),
        Route("/_control/objects/{collection}", guarded(objects), methods=["GET", "POST"]),
        Route("/_control/objects/{collection}/{id}", guarded(one_object), methods=["GET", "PATCH", "DELETE"]),
        Route("/_control/objects/{collection}/{id}/restore", guarded(restore), methods=["POST"]),
        Route("/_control/groups/{id}/members", guarded(members), methods=["POST"]),
        Route("/_control/users/{id}/manager", guarded(manager), methods=["PUT"]),
        Route("/_control/churn", guarded(churn_), methods=["POST"]),
        Route("/_control/delta/invalidate", guarded(invalidate), methods=["POST"]),
        Route("/_control/apps", guarded(apps), methods=["POST"]),
    ]
