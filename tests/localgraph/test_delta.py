"""Delta queries of the local Graph, through real HTTP [docs/graph-behaviour.md section 3].

A small tenant with small pages (7 objects, 5 member entries per group appearance) forces every paging
path: rounds over many pages, and groups split across consecutive pages.
"""

from __future__ import annotations

import itertools
import random
from typing import Any

import httpx
import pytest

from localgraph.client import ControlClient
from localgraph.context import GraphSettings
from localgraph.generate import TenantShape
from localgraph.query import DEFAULT_PROPERTIES

PAGE_SIZE = 7
MEMBER_SLICE = 5
USER_TYPE = "#microsoft.graph.user"
GROUP_TYPE = "#microsoft.graph.group"
USER_PROPS = ["displayName", "jobTitle", "mobilePhone"]
GROUP_PROPS = ["displayName", "description"]
# The random mix of the end-to-end test (repeats weigh an action more).
ACTIONS = [
    "create_user", "update_user", "update_user", "clear_user", "hidden_user", "delete_user", "purge_user",
    "restore", "create_group", "update_group", "hidden_group", "delete_group", "purge_group", "add_member",
    "add_member", "remove_member", "remove_member", "nest_group",
]  # fmt: skip


@pytest.fixture
def graph_shape() -> TenantShape:
    return TenantShape(users=40, groups=10, memberships=200, seed=11)


@pytest.fixture
def graph_settings() -> GraphSettings:
    return GraphSettings(delta_page_size=PAGE_SIZE, delta_member_slice=MEMBER_SLICE)


# ------------------------------------------------------------------------------------------ helpers


def check_page(body: dict[str, Any]) -> None:
    """What every delta page must look like."""
    assert ("@odata.nextLink" in body) != ("@odata.deltaLink" in body), "exactly one of the two links"
    assert len(body["value"]) <= PAGE_SIZE
    for item in body["value"]:
        assert "id" in item


def fetch_round(
    http: httpx.Client, url: str, params: dict[str, str] | None = None, headers=None, between_pages=None
) -> tuple[list[dict[str, Any]], str]:
    """Every page of a round, and its deltaLink. ``between_pages(n)`` runs after page n (changes while
    the client is paging)."""
    pages = []
    response = http.get(url, params=params, headers=headers)
    while True:
        assert response.status_code == 200, response.text
        body = response.json()
        check_page(body)
        pages.append(body)
        if "@odata.deltaLink" in body:
            return pages, body["@odata.deltaLink"]
        if between_pages is not None:
            between_pages(len(pages))
        response = http.get(body["@odata.nextLink"], headers=headers)


def items_of(pages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [item for page in pages for item in page["value"]]


def merged(pages: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """One item per id, appearances merged (members@delta concatenated), as a client merges them."""
    result: dict[str, dict[str, Any]] = {}
    for item in items_of(pages):
        entry = result.setdefault(item["id"], {})
        for key, value in item.items():
            if key == "members@delta":
                entry.setdefault(key, []).extend(value)
            else:
                entry[key] = value
    return result


def apply(state: dict[str, dict[str, Any]], pages: list[dict[str, Any]]) -> None:
    """Apply a round to a client's state: {id: {property: value, "members": set, "manager": id}}."""
    for item in items_of(pages):
        object_id = item["id"]
        if "@removed" in item:
            state.pop(object_id, None)
            continue
        entry = state.setdefault(object_id, {})
        for key, value in item.items():
            if key == "id" or key.startswith("@"):
                continue
            if key == "members@delta":
                members = entry.setdefault("members", set())
                for ref in value:
                    (members.discard if "@removed" in ref else members.add)(ref["id"])
            elif key == "manager@delta":
                entry["manager"] = None if not value or "@removed" in value[0] else value[0]["id"]
            elif value is None:
                entry.pop(key, None)
            else:
                entry[key] = value


def expected_state(control: ControlClient, collection: str, props: list[str], members: bool = False):
    """The tenant's current state, shaped like :func:`apply`'s."""
    state = {}
    for obj in control.objects(collection):
        entry = {name: obj[name] for name in props if obj.get(name) is not None}
        if members:
            entry["members"] = set(obj["members"])
        state[obj["id"]] = entry
    return state


def normalise(state: dict[str, dict[str, Any]], members: bool) -> dict[str, dict[str, Any]]:
    if not members:
        return state
    return {oid: {**entry, "members": entry.get("members", set())} for oid, entry in state.items()}


def error_code(response: httpx.Response) -> str:
    return response.json()["error"]["code"]


def new_user(control: ControlClient, name: str, **props: Any) -> dict[str, Any]:
    domain = control.tenant_info()["domain"]
    return control.create(
        "users",
        {"displayName": name, "userPrincipalName": f"{name}@{domain}", "mailNickname": name,
         "accountEnabled": True, **props},
    )  # fmt: skip


def new_group(control: ControlClient, name: str, **props: Any) -> dict[str, Any]:
    return control.create(
        "groups", {"displayName": name, "mailNickname": name, "securityEnabled": True, **props}
    )


# ------------------------------------------------------------------------------------- initial sync


def test_initial_user_sync_pages_to_a_delta_link_with_each_live_user_once(http, control, graph) -> None:
    new_user(control, "no.phone", jobTitle="Phoneless")
    pages, delta_link = fetch_round(http, "/users/delta", {"$select": ",".join(USER_PROPS)})
    base = graph.info.graph_base_url
    assert len(pages) > 1
    assert all(
        p["@odata.context"] == f"{base}/$metadata#users(displayName,jobTitle,mobilePhone)" for p in pages
    )
    assert all("@odata.nextLink" in p for p in pages[:-1])
    assert all(p["@odata.nextLink"].startswith(f"{base}/users/delta?$skiptoken=") for p in pages[:-1])
    assert all(len(p["value"]) == PAGE_SIZE for p in pages[:-1])
    assert delta_link.startswith(f"{base}/users/delta?$deltatoken=")
    items = items_of(pages)
    ids = [item["id"] for item in items]
    users = {u["id"]: u for u in control.objects("users")}
    assert sorted(ids) == sorted(users)  # every live user exactly once
    unset = 0
    for item in items:
        user = users[item["id"]]
        # Selected properties that are set; never-set ones are omitted (not null) in delta.
        assert item == {"id": user["id"], **{p: user[p] for p in USER_PROPS if user.get(p) is not None}}
        unset += "mobilePhone" not in item
    assert unset > 0  # the tenant has users without a mobile phone


def test_initial_user_sync_without_select_gives_default_properties(http, control) -> None:
    pages, _ = fetch_round(http, "/users/delta")
    assert pages[0]["@odata.context"].endswith("/$metadata#users")
    users = {u["id"]: u for u in control.objects("users")}
    items = items_of(pages)
    assert len(items) == len(users)
    for item in items:
        user = users[item["id"]]
        expected = {p: user[p] for p in DEFAULT_PROPERTIES["user"] if user.get(p) is not None}
        assert item == expected


def test_long_and_parenthesised_delta_segments_are_accepted(http) -> None:
    for path in ("/users/microsoft.graph.delta", "/users/delta()", "/groups/microsoft.graph.delta()"):
        response = http.get(path, params={"$select": "displayName"})
        assert response.status_code == 200, path
        assert "@odata.nextLink" in response.json()


def test_initial_group_sync_splits_large_groups_across_consecutive_pages(http, control) -> None:
    user_ids = [u["id"] for u in control.objects("users")]
    new_group(control, "empty-group")
    big = new_group(control, "big-group")["id"]
    control.members(big, add=user_ids[: 3 * MEMBER_SLICE + 1])  # spans four pages
    parent, child = new_group(control, "parent-group")["id"], new_group(control, "child-group")["id"]
    control.members(parent, add=[child, user_ids[0]])  # a nested group: its entry is typed as a group
    groups = {g["id"]: g for g in control.objects("groups")}
    pages, _ = fetch_round(http, "/groups/delta", {"$select": "displayName,description,members"})
    items = items_of(pages)
    assert sorted({item["id"] for item in items}) == sorted(groups)

    # Appearances of one group are consecutive: the last item of a page, then the first of the next.
    positions: dict[str, list[tuple[int, int]]] = {}
    for page_no, page in enumerate(pages):
        for index, item in enumerate(page["value"]):
            positions.setdefault(item["id"], []).append((page_no, index))
    for seen in positions.values():
        for (page_a, index_a), (page_b, index_b) in itertools.pairwise(seen):
            assert page_b == page_a + 1 and index_b == 0
            assert index_a == len(pages[page_a]["value"]) - 1
    assert len(positions[big]) == 4

    first_seen: set[str] = set()
    for item in items:
        group = groups[item["id"]]
        if item["id"] in first_seen:
            assert set(item) == {"id", "members@delta"}  # continuation: id and the next slice only
        else:
            first_seen.add(item["id"])
            assert item["displayName"] == group["displayName"]
        assert 1 <= len(item.get("members@delta", [1])) <= MEMBER_SLICE

    users = {u["id"] for u in control.objects("users")}
    merged_groups = merged(pages)
    for group_id, group in groups.items():
        entries = merged_groups[group_id].get("members@delta")
        if not group["members"]:
            assert entries is None  # no members: no members@delta
            continue
        assert sorted(e["id"] for e in entries) == sorted(group["members"])
        for entry in entries:
            assert entry == {
                "@odata.type": USER_TYPE if entry["id"] in users else GROUP_TYPE,
                "id": entry["id"],
            }
    assert merged_groups[parent]["members@delta"] == [
        {"@odata.type": GROUP_TYPE, "id": child},
        {"@odata.type": USER_TYPE, "id": user_ids[0]},
    ]


def test_groups_without_select_track_members_and_legacy_expand_members_too(http, control) -> None:
    groups = {g["id"]: g for g in control.objects("groups")}
    for params in ({}, {"$select": "displayName", "$expand": "members"}):
        pages, _ = fetch_round(http, "/groups/delta", params)
        result = merged(pages)
        for group_id, group in groups.items():
            assert sorted(e["id"] for e in result[group_id].get("members@delta", [])) == sorted(
                group["members"]
            )
    pages, _ = fetch_round(http, "/groups/delta", {"$select": "displayName"})
    assert not any("members@delta" in item for item in items_of(pages))


# -------------------------------------------------------------------------------------- change rounds


def test_user_round_reports_what_changed_in_selected_properties(http, control) -> None:
    users = control.objects("users")
    control.update("users", users[5]["id"], {"mobilePhone": "+358 40 123 4567"})
    _, link = fetch_round(http, "/users/delta", {"$select": ",".join(USER_PROPS)})
    users = control.objects("users")
    retitled, moved, soft, hard, cleared = users[1], users[2], users[3], users[4], users[5]
    created = new_user(control, "delta.new", jobTitle="Tester")
    control.update("users", retitled["id"], {"jobTitle": "Chief Delta Officer"})
    control.update("users", moved["id"], {"department": "Somewhere else"})  # not selected: not reported
    control.update("users", cleared["id"], {"mobilePhone": None})
    control.delete("users", soft["id"])
    control.delete("users", hard["id"], hard=True)

    pages, link = fetch_round(http, link)
    result = merged(pages)
    assert len(items_of(pages)) == len(result)  # each object once
    assert result == {
        created["id"]: {"id": created["id"], "displayName": "delta.new", "jobTitle": "Tester"},
        retitled["id"]: {
            "id": retitled["id"],
            "displayName": retitled["displayName"],
            "jobTitle": "Chief Delta Officer",
            **({"mobilePhone": retitled["mobilePhone"]} if retitled.get("mobilePhone") else {}),
        },
        cleared["id"]: {
            "id": cleared["id"],
            "displayName": cleared["displayName"],
            "jobTitle": cleared["jobTitle"],
            "mobilePhone": None,  # set before, cleared now: null, not omitted
        },
        soft["id"]: {"id": soft["id"], "@removed": {"reason": "changed"}},
        hard["id"]: {"id": hard["id"], "@removed": {"reason": "deleted"}},
    }

    # Restored: a new creation. Purged from deleted items: deleted.
    control.restore("users", soft["id"])
    control.delete("users", created["id"])
    control.delete("users", created["id"], hard=True)
    pages, link = fetch_round(http, link)
    assert merged(pages) == {
        soft["id"]: {"id": soft["id"], **{p: soft[p] for p in USER_PROPS if soft.get(p) is not None}},
        created["id"]: {"id": created["id"], "@removed": {"reason": "deleted"}},
    }

    # Nothing changed: an empty page and a new deltaLink.
    response = http.get(link)
    assert response.status_code == 200
    body = response.json()
    assert body["value"] == [] and "@odata.nextLink" not in body
    assert body["@odata.deltaLink"].split("$deltatoken=")[1]


def test_group_round_reports_membership_changes_and_selected_properties(http, control) -> None:
    users = [u["id"] for u in control.objects("users")]
    described = new_group(control, "described")["id"]  # no members: untouched by the user deletion
    adds_to = new_group(control, "adds-to")["id"]
    control.members(adds_to, add=users[:3])
    _, link = fetch_round(http, "/groups/delta", {"$select": "displayName,members"})
    groups = {g["id"]: g for g in control.objects("groups")}
    removes_from = max(groups, key=lambda g: len(groups[g]["members"]))
    renamed = next(g for g in groups if g not in (described, adds_to, removes_from))
    newcomer = users[3]
    leaver = next(m for m in groups[removes_from]["members"] if m in users and m != newcomer)
    founders = [u for u in users if u not in (newcomer, leaver)][:2]  # members of a new group
    doomed = next(
        u
        for u in users
        if u not in (newcomer, leaver, *founders)
        and u not in groups[described]["members"]
        and any(u in g["members"] for g in groups.values())
    )
    control.members(adds_to, add=[newcomer])
    control.members(removes_from, remove=[leaver])
    control.update("groups", renamed, {"displayName": "Renamed by delta test"})
    control.update("groups", described, {"description": "not selected"})  # not tracked
    control.delete("users", doomed)  # leaves all its groups: removals look like membership removals
    created = new_group(control, "delta-group")
    control.members(created["id"], add=founders)

    expected: dict[str, dict[str, Any]] = {}

    def entry(group_id: str) -> dict[str, Any]:
        return expected.setdefault(group_id, {"id": group_id, "displayName": groups[group_id]["displayName"]})

    entry(adds_to).setdefault("members@delta", []).append({"@odata.type": USER_TYPE, "id": newcomer})
    entry(removes_from).setdefault("members@delta", []).append(
        {"@odata.type": USER_TYPE, "id": leaver, "@removed": {"reason": "deleted"}}
    )
    entry(renamed)["displayName"] = "Renamed by delta test"
    for group_id, group in groups.items():
        if doomed in group["members"]:
            entry(group_id).setdefault("members@delta", []).append(
                {"@odata.type": USER_TYPE, "id": doomed, "@removed": {"reason": "deleted"}}
            )
    expected[created["id"]] = {
        "id": created["id"],
        "displayName": "delta-group",
        "members@delta": [{"@odata.type": USER_TYPE, "id": u} for u in founders],
    }
    assert described not in expected

    pages, _ = fetch_round(http, link)
    assert merged(pages) == expected


def test_membership_changes_are_not_reported_when_members_are_not_selected(http, control) -> None:
    group = new_group(control, "quiet-group")
    _, link = fetch_round(http, "/groups/delta", {"$select": "displayName,description"})
    control.members(group["id"], add=[control.objects("users")[0]["id"]])
    pages, _ = fetch_round(http, link)
    assert items_of(pages) == []


def test_prefer_return_minimal_returns_only_changed_properties(http, control) -> None:
    users = control.objects("users")
    phoned = users[1]
    control.update("users", phoned["id"], {"mobilePhone": "+358 40 765 4321"})
    group = new_group(control, "minimal-group")
    _, user_link = fetch_round(http, "/users/delta", {"$select": ",".join(USER_PROPS)})
    _, group_link = fetch_round(http, "/groups/delta", {"$select": "displayName,description,members"})
    control.update("users", users[0]["id"], {"jobTitle": "Minimal"})
    control.update("users", phoned["id"], {"mobilePhone": None})
    newcomer = users[2]["id"]
    control.members(group["id"], add=[newcomer])

    minimal = {"Prefer": "return=minimal"}
    response = http.get(user_link, headers=minimal)
    assert response.status_code == 200
    assert response.headers["Preference-Applied"] == "return=minimal"
    assert sorted(response.json()["value"], key=lambda i: i["id"]) == sorted(
        [{"id": users[0]["id"], "jobTitle": "Minimal"}, {"id": phoned["id"], "mobilePhone": None}],
        key=lambda i: i["id"],
    )
    pages, _ = fetch_round(http, group_link, headers=minimal)
    assert items_of(pages) == [
        {"id": group["id"], "members@delta": [{"@odata.type": USER_TYPE, "id": newcomer}]}
    ]


def test_select_manager_tracks_manager_changes(http, control) -> None:
    ids = [u["id"] for u in control.objects("users")]
    control.set_manager(ids[1], ids[0])
    if control.get("users", ids[2])["manager"]:
        control.set_manager(ids[2], None)
    pages, link = fetch_round(http, "/users/delta", {"$select": "displayName,manager"})
    users = {u["id"]: u for u in control.objects("users")}
    initial = merged(pages)
    for user_id, user in users.items():
        expected = [{"@odata.type": USER_TYPE, "id": user["manager"]}] if user["manager"] else None
        assert initial[user_id].get("manager@delta") == expected
    managed, unmanaged = users[ids[1]], users[ids[2]]
    control.set_manager(unmanaged["id"], managed["id"])
    control.set_manager(managed["id"], None)
    control.update("users", managed["id"], {"jobTitle": "Not selected"})
    pages, _ = fetch_round(http, link)
    assert merged(pages) == {
        unmanaged["id"]: {
            "id": unmanaged["id"],
            "displayName": unmanaged["displayName"],
            "manager@delta": [{"@odata.type": USER_TYPE, "id": managed["id"]}],
        },
        managed["id"]: {
            "id": managed["id"],
            "displayName": managed["displayName"],
            "manager@delta": [
                {"@odata.type": USER_TYPE, "id": managed["manager"], "@removed": {"reason": "deleted"}}
            ],
        },
    }


def test_rounds_applied_to_the_initial_sync_reproduce_the_tenant(http, control) -> None:
    """Seeded random changes, some made while the client is paging; after every round that had no
    concurrent changes, the client's state equals the tenant's (selected properties and memberships)."""
    rng = random.Random(20240611)
    user_params = {"$select": "displayName,jobTitle,mobilePhone,city"}
    group_params = {"$select": "displayName,description,members"}
    user_props, group_props = ["displayName", "jobTitle", "mobilePhone", "city"], GROUP_PROPS
    counter = iter(range(10_000))

    def live(collection: str) -> list[dict[str, Any]]:
        return control.objects(collection)

    deleted: dict[str, str] = {}  # id -> collection, soft-deleted by this test

    def change() -> None:
        users, groups = live("users"), live("groups")
        action = rng.choice(ACTIONS)
        n = next(counter)
        if action == "create_user":
            props = {"jobTitle": f"Title {n}"} if rng.random() < 0.5 else {}
            new_user(control, f"random.user.{n}", **props)
        elif action == "update_user" and users:
            name = rng.choice(["displayName", "jobTitle", "mobilePhone", "city"])
            control.update("users", rng.choice(users)["id"], {name: f"{name} {n}"})
        elif action == "clear_user" and users:
            control.update("users", rng.choice(users)["id"], {rng.choice(["jobTitle", "mobilePhone"]): None})
        elif action == "hidden_user" and users:
            control.update("users", rng.choice(users)["id"], {"department": f"Dept {n}"})
        elif action in ("delete_user", "delete_group"):
            collection = "users" if action == "delete_user" else "groups"
            pool = users if collection == "users" else groups
            if pool:
                victim = rng.choice(pool)["id"]
                control.delete(collection, victim)
                deleted[victim] = collection
        elif action in ("purge_user", "purge_group"):
            collection = "users" if action == "purge_user" else "groups"
            pool = [i for i, c in deleted.items() if c == collection] + [o["id"] for o in live(collection)]
            if pool:
                victim = rng.choice(pool)
                control.delete(collection, victim, hard=True)
                deleted.pop(victim, None)
        elif action == "restore" and deleted:
            victim = rng.choice(sorted(deleted))
            control.restore(deleted.pop(victim), victim)
        elif action == "create_group":
            group = new_group(control, f"random-group-{n}", description=f"Group {n}")
            if users:
                control.members(group["id"], add=[u["id"] for u in rng.sample(users, min(3, len(users)))])
        elif action == "update_group" and groups:
            name = rng.choice(group_props)
            control.update("groups", rng.choice(groups)["id"], {name: f"{name} {n}"})
        elif action == "hidden_group" and groups:
            control.update("groups", rng.choice(groups)["id"], {"classification": f"Class {n}"})
        elif action == "add_member" and groups and users:
            group, user = rng.choice(groups), rng.choice(users)
            if user["id"] not in group["members"]:
                control.members(group["id"], add=[user["id"]])
        elif action == "remove_member" and groups:
            group = rng.choice(groups)
            if group["members"]:
                control.members(group["id"], remove=[rng.choice(group["members"])])
        elif action == "nest_group" and len(groups) > 1:
            parent, child = rng.sample(groups, 2)
            if child["id"] not in parent["members"]:
                control.members(parent["id"], add=[child["id"]])

    def changes(count: int) -> None:
        for _ in range(count):
            change()

    user_pages, user_link = fetch_round(http, "/users/delta", user_params, between_pages=lambda n: changes(2))
    group_pages, group_link = fetch_round(
        http, "/groups/delta", group_params, between_pages=lambda n: changes(2)
    )
    users_state: dict[str, dict[str, Any]] = {}
    groups_state: dict[str, dict[str, Any]] = {}
    apply(users_state, user_pages)
    apply(groups_state, group_pages)
    for round_no in range(5):
        changes(15)
        if round_no % 2 == 0:  # a round with changes while paging, then a quiet one
            pages, user_link = fetch_round(http, user_link, between_pages=lambda n: changes(2))
            apply(users_state, pages)
            pages, group_link = fetch_round(http, group_link, between_pages=lambda n: changes(2))
            apply(groups_state, pages)
        pages, user_link = fetch_round(http, user_link)
        apply(users_state, pages)
        pages, group_link = fetch_round(http, group_link)
        apply(groups_state, pages)
        assert users_state == expected_state(control, "users", user_props), f"round {round_no}"
        assert normalise(groups_state, True) == expected_state(control, "groups", group_props, True), round_no


# ---------------------------------------------------------------------------------- tokens and options


def test_deltatoken_latest_returns_only_a_delta_link_then_later_changes(http, control, graph) -> None:
    response = http.get("/users/delta", params={"$select": "displayName", "$deltatoken": "latest"})
    assert response.status_code == 200
    body = response.json()
    assert body["value"] == [] and "@odata.nextLink" not in body
    assert body["@odata.context"] == f"{graph.info.graph_base_url}/$metadata#users(displayName)"
    user = control.objects("users")[0]
    control.update("users", user["id"], {"displayName": "From now on"})
    pages, _ = fetch_round(http, body["@odata.deltaLink"])
    assert items_of(pages) == [{"id": user["id"], "displayName": "From now on"}]


def test_id_filter_tracks_only_the_named_objects(http, control) -> None:
    users = control.objects("users")
    chosen = [users[3]["id"], users[5]["id"]]
    text = " or ".join(f"id eq '{i}'" for i in chosen)
    pages, link = fetch_round(http, "/users/delta", {"$select": "displayName", "$filter": text})
    assert sorted(item["id"] for item in items_of(pages)) == sorted(chosen)
    control.update("users", chosen[0], {"displayName": "Filtered"})
    control.update("users", users[4]["id"], {"displayName": "Not tracked"})
    pages, _ = fetch_round(http, link)
    assert items_of(pages) == [{"id": chosen[0], "displayName": "Filtered"}]


@pytest.mark.parametrize(
    "params",
    [
        {"$filter": " or ".join(f"id eq '00000000-0000-0000-0000-{n:012d}'" for n in range(51))},
        {"$filter": "displayName eq 'Adele'"},
        {"$filter": "id eq 'a' and id eq 'b'"},
        {"$orderby": "displayName"},
        {"$expand": "manager"},
        {"$count": "true"},
        {"$search": '"displayName:a"'},
    ],
)
def test_unsupported_delta_query_options_are_rejected(http, params) -> None:
    response = http.get("/users/delta", params=params)
    assert response.status_code == 400
    assert error_code(response) == "Request_UnsupportedQuery"


def test_fifty_filtered_ids_are_accepted_and_top_is_ignored(http) -> None:
    ids = " or ".join(f"id eq '00000000-0000-0000-0000-{n:012d}'" for n in range(50))
    response = http.get("/users/delta", params={"$filter": ids})
    assert response.status_code == 200 and response.json()["value"] == []
    response = http.get("/users/delta", params={"$select": "displayName", "$top": "2"})
    assert len(response.json()["value"]) == PAGE_SIZE


def test_unknown_select_property_is_rejected(http) -> None:
    response = http.get("/users/delta", params={"$select": "displayName,noSuchThing"})
    assert response.status_code == 400
    assert "noSuchThing" in response.json()["error"]["message"]


def test_query_options_repeated_with_a_token_are_rejected(http) -> None:
    first = http.get("/users/delta", params={"$select": "displayName"}).json()
    response = http.get(first["@odata.nextLink"] + "&$select=displayName")
    assert response.status_code == 400 and error_code(response) == "Request_BadRequest"
    _, link = fetch_round(http, "/users/delta", {"$select": "displayName"})
    response = http.get(link + "&$filter=id eq 'x'")
    assert response.status_code == 400 and error_code(response) == "Request_BadRequest"


def test_garbled_tampered_or_foreign_tokens_are_sync_state_not_found(http) -> None:
    _, link = fetch_round(http, "/users/delta", {"$select": "displayName"})
    token = link.split("$deltatoken=")[1]
    tampered = token[:20] + ("A" if token[20] != "A" else "B") + token[21:]
    for url in (
        f"/users/delta?$deltatoken={tampered}",
        "/users/delta?$deltatoken=not-a-token",
        "/users/delta?$skiptoken=garbage",
        f"/groups/delta?$deltatoken={token}",  # a users token on groups
        f"/users/delta?$skiptoken={token}",  # a delta token used as a skip token
    ):
        response = http.get(url)
        assert response.status_code == 400, url
        assert error_code(response) == "syncStateNotFound"


def test_delta_tokens_expire_by_age(http, control) -> None:
    first = http.get("/users/delta", params={"$select": "displayName"}).json()
    _, link = fetch_round(http, "/users/delta", {"$select": "displayName"})
    control.settings(delta_token_max_age_s=0)
    for url in (link, first["@odata.nextLink"]):
        response = http.get(url)
        assert response.status_code == 400
        assert error_code(response) == "syncStateNotFound"


def test_invalidated_tokens_fail_with_sync_state_not_found(http, control) -> None:
    in_progress = http.get("/users/delta", params={"$select": "displayName"}).json()["@odata.nextLink"]
    _, link = fetch_round(http, "/users/delta", {"$select": "displayName"})
    control.invalidate_delta_tokens("syncStateNotFound")
    for url in (link, in_progress):
        response = http.get(url)
        assert response.status_code == 400
        assert error_code(response) == "syncStateNotFound"
    _, fresh = fetch_round(http, "/users/delta", {"$select": "displayName"})
    assert http.get(fresh).status_code == 200  # tokens issued after the invalidation work


def test_invalidated_tokens_in_reset_mode_answer_410_with_the_initial_query(http, control, graph) -> None:
    params = {"$select": "displayName,jobTitle"}
    in_progress = http.get("/users/delta", params=params).json()["@odata.nextLink"]
    _, link = fetch_round(http, "/users/delta", params)
    control.invalidate_delta_tokens("reset")
    location = f"{graph.info.graph_base_url}/users/delta?$select=displayName,jobTitle&$deltatoken="
    for url in (link, in_progress):
        response = http.get(url)
        assert response.status_code == 410
        assert error_code(response) == "resyncRequired"
        assert response.headers["Location"] == location
    pages, _ = fetch_round(http, location)  # following Location starts a full sync
    assert len(items_of(pages)) == len(control.objects("users"))
    assert set(items_of(pages)[0]) <= {"id", "displayName", "jobTitle"}


def test_other_directory_collections_have_delta_too(http, control) -> None:
    for collection in ("devices", "applications", "servicePrincipals", "contacts"):
        pages, link = fetch_round(http, f"/{collection}/delta")
        assert sorted(item["id"] for item in items_of(pages)) == sorted(
            o["id"] for o in control.objects(collection)
        )
        target = control.objects(collection)[0] if control.objects(collection) else None
        if target is not None:
            control.update(collection, target["id"], {"displayName": f"Renamed {collection}"})
            pages, _ = fetch_round(http, link)
            (item,) = items_of(pages)
            assert item["id"] == target["id"] and item["displayName"] == f"Renamed {collection}"
    response = http.get("/devices/delta", params={"$expand": "members"})
    assert response.status_code == 400 and error_code(response) == "Request_UnsupportedQuery"


@pytest.mark.parametrize("graph_settings", [GraphSettings(delta_page_size=4, delta_replays=True)])
def test_replays_repeat_the_previous_pages_last_object(http, control):
    seen: list[str] = []
    link = "/users/delta?$select=displayName"
    pages = []
    while link:
        body = http.get(link).json()
        pages.append([item["id"] for item in body["value"]])
        seen.extend(pages[-1])
        link = body.get("@odata.nextLink")
    assert len(pages) > 2
    for previous, page in itertools.pairwise(pages):
        assert page[0] == previous[-1]  # each page opens with the previous page's last object
    assert set(seen) == {u["id"] for u in control.objects("users")}
    assert len(seen) > len(set(seen))
