"""Writes on the local Graph: status codes, validation and errors as Graph gives them [docs/graph-behaviour.md sections 6,
7 and 8], application permissions, and that every write is visible to later reads, the control API and
delta.

Every test goes through real HTTP: a started local Graph and a token from ClientSecretCredential.
"""

from __future__ import annotations

import struct
import uuid
from typing import Any

import httpx
import pytest

from localgraph.client import ControlClient, graph_client
from tests.support import assert_error

GRAPH = "https://graph.microsoft.com/v1.0"
STRONG_PASSWORD = "xWwvJ]6NMw+bWH-d"  # docs/graph-behaviour.md section 7 example


# ------------------------------------------------------------------------------------------ helpers


def new_user(domain: str, alias: str | None = None, **extra: Any) -> dict[str, Any]:
    alias = alias or f"test.{uuid.uuid4().hex[:8]}"
    body = {
        "accountEnabled": True,
        "displayName": "Adele Vance",
        "mailNickname": alias,
        "userPrincipalName": f"{alias}@{domain}",
        "passwordProfile": {"forceChangePasswordNextSignIn": True, "password": STRONG_PASSWORD},
    }
    body.update(extra)
    return body


def create_user(http: httpx.Client, domain: str, **extra: Any) -> dict[str, Any]:
    response = http.post("/users", json=new_user(domain, **extra))
    assert response.status_code == 201, response.text
    return response.json()


def security_group(nickname: str | None = None, **extra: Any) -> dict[str, Any]:
    nickname = nickname or f"sg{uuid.uuid4().hex[:8]}"
    return {
        "displayName": "Operations group",
        "groupTypes": [],
        "mailEnabled": False,
        "mailNickname": nickname,
        "securityEnabled": True,
        **extra,
    }


def create_group(http: httpx.Client, **extra: Any) -> dict[str, Any]:
    response = http.post("/groups", json=security_group(**extra))
    assert response.status_code == 201, response.text
    return response.json()


def ref(object_id: str, collection: str = "directoryObjects") -> dict[str, str]:
    return {"@odata.id": f"{GRAPH}/{collection}/{object_id}"}


def cloud_users(control: ControlClient) -> list[dict[str, Any]]:
    return [
        u
        for u in control.objects("users")
        if u.get("userType") == "Member" and not u.get("onPremisesSyncEnabled")
    ]


def synced_user(control: ControlClient) -> dict[str, Any]:
    return next(u for u in control.objects("users") if u.get("onPremisesSyncEnabled"))


def control_object(control: ControlClient, collection: str, object_id: str) -> dict[str, Any] | None:
    return next((o for o in control.objects(collection) if o["id"] == object_id), None)


def png(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + b"\x00\x00\x00\x00"


def jpeg(width: int, height: int) -> bytes:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + app0 + sof0 + b"\xff\xd9"


@pytest.fixture
def domain(graph) -> str:
    return graph.info.tenant_domain


def limited_client(graph, control: ControlClient, roles: list[str]) -> httpx.Client:
    app = control.add_app(roles)
    return graph_client(graph.info, client_id=app["client_id"], secret=app["client_secret"])


# --------------------------------------------------------------------------------------- create user


def test_create_user_answers_201_with_default_properties_and_is_readable_afterwards(
    http, control, domain, graph
):
    body = new_user(domain, alias="adele.vance", jobTitle="Engineer")
    response = http.post("/users", json=body)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["@odata.context"] == f"{graph.info.graph_base_url}/$metadata#users/$entity"
    assert set(created) == {
        "@odata.context",
        "id",
        "businessPhones",
        "displayName",
        "givenName",
        "jobTitle",
        "mail",
        "mobilePhone",
        "officeLocation",
        "preferredLanguage",
        "surname",
        "userPrincipalName",
    }
    assert created["userPrincipalName"] == f"adele.vance@{domain}"
    assert created["jobTitle"] == "Engineer"
    assert STRONG_PASSWORD not in response.text
    assert response.headers["Location"].endswith(
        f"/directoryObjects/{created['id']}/Microsoft.DirectoryServices.User"
    )

    read = http.get(
        f"/users/{created['id']}", params={"$select": "id,accountEnabled,mailNickname,passwordProfile"}
    )
    assert read.status_code == 200
    assert read.json()["accountEnabled"] is True
    assert read.json()["mailNickname"] == "adele.vance"
    assert read.json()["passwordProfile"] is None  # never returned
    by_upn = http.get(f"/users/adele.vance@{domain}")
    assert by_upn.json()["id"] == created["id"]
    stored = control_object(control, "users", created["id"])
    assert stored["displayName"] == "Adele Vance" and stored["createdDateTime"]
    assert graph.ctx.tenant.objects[created["id"]].password == STRONG_PASSWORD


@pytest.mark.parametrize("missing", ["accountEnabled", "displayName", "mailNickname", "userPrincipalName"])
def test_create_user_without_a_required_property_is_invalid_value(http, domain, missing):
    body = new_user(domain)
    del body[missing]
    assert_error(
        http.post("/users", json=body),
        400,
        "Request_BadRequest",
        f"Invalid value specified for property '{missing}' of resource 'User'.",
    )


def test_create_user_without_password_is_refused(http, domain):
    for profile in (None, {"forceChangePasswordNextSignIn": True}):
        body = new_user(domain)
        if profile is None:
            del body["passwordProfile"]
        else:
            body["passwordProfile"] = profile
        assert_error(
            http.post("/users", json=body),
            400,
            "Request_BadRequest",
            "A password must be specified to create a new user.",
        )


@pytest.mark.parametrize("password", ["Sh0rt!", "alllowercaseletters", "lowercase123456", "ÄÖäö12345678"])
def test_create_user_with_a_weak_password_is_refused(http, domain, password):
    body = new_user(domain, passwordProfile={"password": password})
    assert_error(
        http.post("/users", json=body),
        400,
        "Request_BadRequest",
        "The specified password does not comply with password complexity requirements. "
        "Please provide a different password.",
    )


def test_create_user_in_an_unverified_domain_is_refused(http):
    body = new_user("fabrikam.com")
    assert_error(
        http.post("/users", json=body),
        400,
        "Request_BadRequest",
        "The domain portion of the userPrincipalName property is invalid. "
        "You must use one of the verified domain names in your organization.",
    )


def test_create_user_in_the_custom_verified_domain_works(http, domain):
    created = create_user(http, domain, userPrincipalName=f"custom.{uuid.uuid4().hex[:6]}@contoso.example")
    assert created["userPrincipalName"].endswith("@contoso.example")


@pytest.mark.parametrize("alias", ["josé", "first last", "a(b)", ".leading", "x" * 65])
def test_create_user_with_invalid_upn_characters_is_refused(http, domain, alias):
    body = new_user(domain)
    body["userPrincipalName"] = f"{alias}@{domain}"
    assert_error(
        http.post("/users", json=body),
        400,
        "Request_BadRequest",
        "Invalid value specified for property 'userPrincipalName' of resource 'User'.",
    )


def test_create_user_with_a_taken_upn_is_an_object_conflict(http, domain, control):
    first = create_user(http, domain, alias="dup.user")
    error = assert_error(
        http.post("/users", json=new_user(domain, alias="DUP.user")),
        400,
        "Request_BadRequest",
        "Another object with the same value for property userPrincipalName already exists.",
    )
    assert error["details"][0]["code"] == "ObjectConflict"
    assert error["details"][0]["target"] == "userPrincipalName"
    assert [
        u["id"] for u in control.objects("users") if u["userPrincipalName"].lower() == f"dup.user@{domain}"
    ] == [first["id"]]


def test_unknown_property_is_refused(http, domain):
    body = new_user(domain, favouriteColour="green")
    assert_error(
        http.post("/users", json=body),
        400,
        "Request_BadRequest",
        "Property 'favouriteColour' does not exist as a declared property or extension property.",
    )
    unregistered = "extension_0123456789abcdef0123456789abcdef_notRegistered"
    assert_error(
        http.post("/users", json=new_user(domain, **{unregistered: "x"})),
        400,
        "Request_BadRequest",
        f"Property '{unregistered}' does not exist as a declared property or extension property.",
    )


@pytest.mark.parametrize(
    "name, value",
    [
        ("id", str(uuid.uuid4())),
        ("createdDateTime", "2024-01-01T00:00:00Z"),
        ("onPremisesSyncEnabled", True),
        ("securityIdentifier", "S-1-12-1-1-2-3-4"),
        ("onPremisesSamAccountName", "adele"),
        ("proxyAddresses", ["SMTP:a@contoso.example"]),
    ],
)
def test_read_only_property_is_refused(http, domain, name, value):
    assert_error(
        http.post("/users", json=new_user(domain, **{name: value})),
        400,
        "Request_BadRequest",
        f"Property '{name}' is read-only and cannot be set.",
    )


@pytest.mark.parametrize(
    "name, value",
    [
        ("accountEnabled", "yes"),
        ("businessPhones", "+358 1"),
        ("jobTitle", 42),
        ("onPremisesExtensionAttributes", {"nope": "x"}),
    ],
)
def test_value_of_the_wrong_type_is_invalid(http, domain, name, value):
    body = new_user(domain)
    body[name] = value
    assert_error(
        http.post("/users", json=body),
        400,
        "Request_BadRequest",
        f"Invalid value specified for property '{name}' of resource 'User'.",
    )


def test_cloud_user_can_be_created_with_extension_attributes_and_directory_extensions(http, domain):
    app = next(
        a for a in http.get("/applications").json()["value"] if a["displayName"].startswith("Tenant Schema")
    )
    extension = next(
        e["name"]
        for e in http.get(f"/applications/{app['id']}/extensionProperties").json()["value"]
        if e["name"].endswith("_costCenter")
    )
    created = create_user(
        http,
        domain,
        **{
            "onPremisesExtensionAttributes": {"extensionAttribute1": "HR", "extensionAttribute15": "x"},
            extension: "CC-1234",
        },
    )
    read = http.get(
        f"/users/{created['id']}", params={"$select": f"onPremisesExtensionAttributes,{extension}"}
    ).json()
    assert read["onPremisesExtensionAttributes"]["extensionAttribute1"] == "HR"
    assert read["onPremisesExtensionAttributes"]["extensionAttribute15"] == "x"
    assert read["onPremisesExtensionAttributes"]["extensionAttribute2"] is None
    assert read[extension] == "CC-1234"


# --------------------------------------------------------------------------------------- update user


def test_patch_user_answers_204_and_changes_are_read_back(http, control, domain):
    user = create_user(http, domain)
    response = http.patch(f"/users/{user['id']}", json={"jobTitle": "Director", "department": "Legal"})
    assert response.status_code == 204
    assert response.content == b""
    read = http.get(f"/users/{user['id']}", params={"$select": "jobTitle,department"}).json()
    assert (read["jobTitle"], read["department"]) == ("Director", "Legal")
    assert control_object(control, "users", user["id"])["department"] == "Legal"
    by_upn = http.patch(f"/users/{user['userPrincipalName']}", json={"jobTitle": "CEO"})
    assert by_upn.status_code == 204
    assert http.get(f"/users/{user['id']}").json()["jobTitle"] == "CEO"


def test_patch_with_an_empty_body_is_refused(http, domain):
    user = create_user(http, domain)
    response = http.patch(f"/users/{user['id']}", content=b"", headers={"Content-Type": "application/json"})
    assert_error(response, 400, "BadRequest", "Empty Payload. JSON content expected.")


def test_patch_of_a_missing_user_is_not_found(http):
    missing = str(uuid.uuid4())
    assert_error(
        http.patch(f"/users/{missing}", json={"jobTitle": "x"}),
        404,
        "Request_ResourceNotFound",
        f"Resource '{missing}' does not exist or one of its queried reference-property objects are not "
        "present.",
    )


@pytest.mark.parametrize("value", [None, "", "   "])
def test_display_name_cannot_be_cleared(http, domain, value):
    user = create_user(http, domain)
    assert_error(
        http.patch(f"/users/{user['id']}", json={"displayName": value}),
        400,
        "Request_BadRequest",
        "Invalid value specified for property 'displayName' of resource 'User'.",
    )
    assert http.get(f"/users/{user['id']}").json()["displayName"] == "Adele Vance"


def test_reset_password_checks_complexity_and_stores_the_new_password(http, domain, graph):
    user = create_user(http, domain)
    weak = http.patch(f"/users/{user['id']}", json={"passwordProfile": {"password": "password"}})
    assert_error(weak, 400, "Request_BadRequest")
    assert graph.ctx.tenant.objects[user["id"]].password == STRONG_PASSWORD
    profile = {"forceChangePasswordNextSignIn": True, "password": "N3w-Secret!pass"}
    assert http.patch(f"/users/{user['id']}", json={"passwordProfile": profile}).status_code == 204
    assert graph.ctx.tenant.objects[user["id"]].password == "N3w-Secret!pass"
    read = http.get(
        f"/users/{user['id']}", params={"$select": "lastPasswordChangeDateTime,passwordProfile"}
    ).json()
    assert read["lastPasswordChangeDateTime"] and read["passwordProfile"] is None


def test_account_can_be_disabled_and_enabled(http, domain, control):
    user = create_user(http, domain)
    for enabled in (False, True):
        assert http.patch(f"/users/{user['id']}", json={"accountEnabled": enabled}).status_code == 204
        assert (
            http.get(f"/users/{user['id']}", params={"$select": "accountEnabled"}).json()["accountEnabled"]
            is enabled
        )
        assert control_object(control, "users", user["id"])["accountEnabled"] is enabled
    assert_error(http.patch(f"/users/{user['id']}", json={"accountEnabled": None}), 400, "Request_BadRequest")


@pytest.mark.parametrize(
    "change",
    [
        {"displayName": "New Name"},
        {"surname": "X"},
        {"onPremisesExtensionAttributes": {"extensionAttribute1": "x"}},
        {"passwordProfile": {"password": "N3w-Secret!pass"}},
        {"accountEnabled": False},
    ],
)
def test_synced_user_refuses_changes_to_ad_mastered_properties(http, control, change):
    user = synced_user(control)
    response = http.patch(f"/users/{user['id']}", json=change)
    assert_error(
        response,
        400,
        "Request_BadRequest",
        "Unable to update the specified properties for on-premises mastered Directory Sync objects or "
        "objects currently undergoing migration.",
    )
    assert control_object(control, "users", user["id"]) == user


def test_synced_user_cannot_be_deleted_in_the_cloud(http, control):
    user = synced_user(control)
    assert_error(http.delete(f"/users/{user['id']}"), 400, "Request_BadRequest")
    assert control_object(control, "users", user["id"]) is not None


def test_synced_group_refuses_member_changes(http, control):
    group = control.create(
        "groups",
        {
            "displayName": "SG synced",
            "mailNickname": "sgsynced",
            "groupTypes": [],
            "mailEnabled": False,
            "securityEnabled": True,
            "onPremisesSyncEnabled": True,
        },
    )
    user = cloud_users(control)[0]
    assert_error(
        http.post(f"/groups/{group['id']}/members/$ref", json=ref(user["id"])),
        400,
        "Request_BadRequest",
        "Unable to update the specified properties for on-premises mastered Directory Sync objects or "
        "objects currently undergoing migration.",
    )
    assert_error(http.patch(f"/groups/{group['id']}", json={"description": "x"}), 400, "Request_BadRequest")
    assert control_object(control, "groups", group["id"])["members"] == []


def test_change_of_upn_moves_the_user_and_checks_the_domain(http, domain):
    user = create_user(http, domain)
    new_upn = f"renamed.{uuid.uuid4().hex[:6]}@contoso.example"
    assert http.patch(f"/users/{user['id']}", json={"userPrincipalName": new_upn}).status_code == 204
    read = http.get(f"/users/{new_upn}", params={"$select": "id,identities"}).json()
    assert read["id"] == user["id"]
    assert read["identities"][0]["issuerAssignedId"] == new_upn
    assert_error(http.get(f"/users/{user['userPrincipalName']}"), 404, "Request_ResourceNotFound")
    assert_error(
        http.patch(f"/users/{user['id']}", json={"userPrincipalName": "x@fabrikam.com"}),
        400,
        "Request_BadRequest",
    )


def test_synced_user_accepts_cloud_only_properties(http, control):
    user = synced_user(control)
    assert http.patch(f"/users/{user['id']}", json={"usageLocation": "SE"}).status_code == 204
    assert control_object(control, "users", user["id"])["usageLocation"] == "SE"


def test_on_premises_extension_attributes_merge_per_key_and_null_clears_a_key(http, domain):
    user = create_user(
        http, domain, onPremisesExtensionAttributes={"extensionAttribute1": "a", "extensionAttribute2": "b"}
    )
    change = {"onPremisesExtensionAttributes": {"extensionAttribute2": None, "extensionAttribute3": "c"}}
    assert http.patch(f"/users/{user['id']}", json=change).status_code == 204
    read = http.get(f"/users/{user['id']}", params={"$select": "onPremisesExtensionAttributes"}).json()
    attributes = read["onPremisesExtensionAttributes"]
    assert len(attributes) == 15
    assert (
        attributes["extensionAttribute1"],
        attributes["extensionAttribute2"],
        attributes["extensionAttribute3"],
    ) == (
        "a",
        None,
        "c",
    )


def test_directory_extension_is_set_and_cleared_with_null(http, domain, graph):
    app = http.post("/applications", json={"displayName": "Schema app"}).json()
    definition = http.post(
        f"/applications/{app['id']}/extensionProperties",
        json={"name": "badgeNumber", "dataType": "Integer", "targetObjects": ["User"]},
    )
    assert definition.status_code == 201, definition.text
    name = definition.json()["name"]
    assert name == f"extension_{app['appId'].replace('-', '')}_badgeNumber"
    listed = http.get(f"/applications/{app['id']}/extensionProperties").json()["value"]
    assert [d["name"] for d in listed] == [name]
    user = create_user(http, domain)
    assert_error(
        http.patch(f"/users/{user['id']}", json={name: "not a number"}),
        400,
        "Request_BadRequest",
        f"Invalid value specified for property '{name}' of resource 'User'.",
    )
    assert http.patch(f"/users/{user['id']}", json={name: 1234}).status_code == 204
    assert http.get(f"/users/{user['id']}", params={"$select": name}).json()[name] == 1234
    assert http.patch(f"/users/{user['id']}", json={name: None}).status_code == 204
    assert name not in graph.ctx.tenant.objects[user["id"]].props
    assert name not in http.get(f"/users/{user['id']}", params={"$select": f"id,{name}"}).json()


# ----------------------------------------------------------------------------------- delete, restore


def test_delete_user_is_a_soft_delete_that_can_be_restored(http, domain, control):
    user = create_user(http, domain)
    group = create_group(http)
    assert http.post(f"/groups/{group['id']}/members/$ref", json=ref(user["id"])).status_code == 204
    assert http.delete(f"/users/{user['id']}").status_code == 204
    assert_error(http.get(f"/users/{user['id']}"), 404, "Request_ResourceNotFound")
    assert control_object(control, "users", user["id"]) is None
    deleted = http.get("/directory/deletedItems/microsoft.graph.user").json()["value"]
    assert user["id"] in [item["id"] for item in deleted]

    restored = http.post(f"/directory/deletedItems/{user['id']}/restore")
    assert restored.status_code == 200, restored.text
    assert restored.json()["@odata.type"] == "#microsoft.graph.user"
    assert restored.json()["id"] == user["id"]
    assert http.get(f"/users/{user['id']}").status_code == 200
    members = http.get(f"/groups/{group['id']}/members").json()["value"]
    assert [m["id"] for m in members] == [user["id"]]  # it rejoined its group


def test_restore_of_an_object_not_in_deleted_items_is_not_found(http, domain):
    user = create_user(http, domain)
    assert_error(http.post(f"/directory/deletedItems/{user['id']}/restore"), 404, "Request_ResourceNotFound")


def test_deleted_item_can_be_purged(http, domain):
    user = create_user(http, domain)
    assert http.delete(f"/users/{user['id']}").status_code == 204
    assert http.delete(f"/directory/deletedItems/{user['id']}").status_code == 204
    assert_error(http.get(f"/directory/deletedItems/{user['id']}"), 404, "Request_ResourceNotFound")
    assert_error(http.post(f"/directory/deletedItems/{user['id']}/restore"), 404, "Request_ResourceNotFound")


def test_writes_show_up_in_delta(http, domain):
    start = http.get("/users/delta", params={"$deltatoken": "latest"}).json()["@odata.deltaLink"]
    created = create_user(http, domain)
    assert http.patch(f"/users/{created['id']}", json={"jobTitle": "Tracked"}).status_code == 204
    victim = create_user(http, domain)
    assert http.delete(f"/users/{victim['id']}").status_code == 204
    items = {}
    link = start
    while link:
        page = http.get(link).json()
        for item in page["value"]:
            items[item["id"]] = item
        link = page.get("@odata.nextLink")
    assert items[created["id"]]["jobTitle"] == "Tracked"
    assert items[victim["id"]]["@removed"] == {"reason": "changed"}


# -------------------------------------------------------------------------------------------- groups


def test_create_security_group(http, control, graph):
    response = http.post("/groups", json=security_group("operations2019"))
    assert response.status_code == 201, response.text
    group = response.json()
    assert group["@odata.context"] == f"{graph.info.graph_base_url}/$metadata#groups/$entity"
    assert (group["securityEnabled"], group["mailEnabled"], group["groupTypes"]) == (True, False, [])
    assert group["mail"] is None and group["proxyAddresses"] == []
    assert group["securityIdentifier"].startswith("S-1-12-1-")
    assert response.headers["Location"].endswith(
        f"/directoryObjects/{group['id']}/Microsoft.DirectoryServices.Group"
    )
    assert http.get(f"/groups/{group['id']}").json()["mailNickname"] == "operations2019"
    assert control_object(control, "groups", group["id"])["members"] == []


def test_create_microsoft_365_group_gets_mail_and_proxy_addresses(http, domain):
    body = {
        "displayName": "Library Assist",
        "groupTypes": ["Unified"],
        "mailEnabled": True,
        "mailNickname": "library",
        "securityEnabled": False,
    }
    response = http.post("/groups", json=body)
    assert response.status_code == 201, response.text
    group = http.get(f"/groups/{response.json()['id']}").json()
    assert group["mail"] == "library@contoso.example"
    assert group["proxyAddresses"] == ["SMTP:library@contoso.example", f"smtp:library@{domain}"]
    assert group["visibility"] == "Public"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"mailNickname": None}, "Invalid value specified for property 'mailNickname' of resource 'Group'."),
        (
            {"mailNickname": "with space"},
            "Invalid value specified for property 'mailNickname' of resource 'Group'.",
        ),
        ({"mailNickname": "a.b"}, "Invalid value specified for property 'mailNickname' of resource 'Group'."),
        (
            {"mailNickname": "x" * 65},
            "Invalid value specified for property 'mailNickname' of resource 'Group'.",
        ),
        (
            {"displayName": "x" * 257},
            "Invalid value specified for property 'displayName' of resource 'Group'.",
        ),
        (
            {"securityEnabled": None},
            "Invalid value specified for property 'securityEnabled' of resource 'Group'.",
        ),
        (
            {"mailEnabled": True},
            "The service does not currently support writes of mail-enabled groups. Please ensure "
            "that the mail-enablement property is unset and the security-enablement property is set.",
        ),
        ({"mail": "x@contoso.example"}, "Property 'mail' is read-only and cannot be set."),
    ],
)
def test_create_group_validation(http, change, message):
    body = security_group()
    body.update(change)
    body = {k: v for k, v in body.items() if v is not None}
    assert_error(http.post("/groups", json=body), 400, "Request_BadRequest", message)


def test_create_group_with_a_taken_mail_nickname_is_an_object_conflict(http):
    create_group(http, nickname="taken")
    error = assert_error(http.post("/groups", json=security_group("TAKEN")), 400, "Request_BadRequest")
    assert error["details"] == [
        {"code": "ObjectConflict", "message": error["message"], "target": "mailNickname"}
    ]


def test_create_group_binds_members_and_owners(http, control):
    users = [u["id"] for u in cloud_users(control)[:3]]
    body = security_group(
        **{
            "members@odata.bind": [f"{GRAPH}/directoryObjects/{users[0]}", f"{GRAPH}/users/{users[1]}"],
            "owners@odata.bind": [f"{GRAPH}/users/{users[2]}"],
        }
    )
    response = http.post("/groups", json=body)
    assert response.status_code == 201, response.text
    group_id = response.json()["id"]
    members = {m["id"] for m in http.get(f"/groups/{group_id}/members").json()["value"]}
    assert members == set(users[:2])
    assert [o["id"] for o in http.get(f"/groups/{group_id}/owners").json()["value"]] == [users[2]]


def test_create_group_with_more_than_20_links_is_refused_and_creates_nothing(http, control):
    users = [u["id"] for u in control.objects("users")[:21]]
    before = len(control.objects("groups"))
    body = security_group(**{"members@odata.bind": [f"{GRAPH}/directoryObjects/{u}" for u in users]})
    assert_error(
        http.post("/groups", json=body),
        400,
        "Request_BadRequest",
        "A resource cannot contain more than 20 link changes.",
    )
    mixed = security_group(
        **{
            "members@odata.bind": [f"{GRAPH}/directoryObjects/{u}" for u in users[:15]],
            "owners@odata.bind": [f"{GRAPH}/users/{u}" for u in users[15:]],
        }
    )
    assert_error(
        http.post("/groups", json=mixed), 400, "Request_BadRequest"
    )  # members and owners count together
    assert len(control.objects("groups")) == before


def test_create_group_with_an_unknown_member_is_not_found_and_creates_nothing(http, control):
    missing = str(uuid.uuid4())
    users = [u["id"] for u in control.objects("users")[:2]]
    body = security_group(
        nickname="never",
        **{
            "members@odata.bind": [
                f"{GRAPH}/directoryObjects/{users[0]}",
                f"{GRAPH}/directoryObjects/{missing}",
            ]
        },
    )
    assert_error(http.post("/groups", json=body), 404, "Request_ResourceNotFound")
    assert not [g for g in control.objects("groups") if g["mailNickname"] == "never"]


def test_patch_group_binds_members_atomically(http, control):
    group = create_group(http)
    users = [u["id"] for u in control.objects("users")[:3]]
    bad = {
        "description": "changed",
        "members@odata.bind": [
            f"{GRAPH}/directoryObjects/{users[0]}",
            f"{GRAPH}/directoryObjects/{uuid.uuid4()}",
        ],
    }
    assert_error(http.patch(f"/groups/{group['id']}", json=bad), 404, "Request_ResourceNotFound")
    stored = control_object(control, "groups", group["id"])
    assert stored["members"] == [] and "description" not in stored
    good = {"description": "changed", "members@odata.bind": [f"{GRAPH}/directoryObjects/{u}" for u in users]}
    assert http.patch(f"/groups/{group['id']}", json=good).status_code == 204
    stored = control_object(control, "groups", group["id"])
    assert set(stored["members"]) == set(users) and stored["description"] == "changed"
    too_many = {
        "members@odata.bind": [f"{GRAPH}/directoryObjects/{u['id']}" for u in control.objects("users")[3:24]]
    }
    assert_error(http.patch(f"/groups/{group['id']}", json=too_many), 400, "Request_BadRequest")
    assert set(control_object(control, "groups", group["id"])["members"]) == set(users)


def test_delete_group_is_soft_and_restorable(http):
    group = create_group(http)
    assert http.delete(f"/groups/{group['id']}").status_code == 204
    assert_error(http.get(f"/groups/{group['id']}"), 404, "Request_ResourceNotFound")
    assert http.post(f"/directory/deletedItems/{group['id']}/restore").status_code == 200
    assert http.get(f"/groups/{group['id']}").status_code == 200


# ------------------------------------------------------------------------------------------- members


def test_add_member_ref(http, control):
    group = create_group(http)
    user = cloud_users(control)[0]
    response = http.post(f"/groups/{group['id']}/members/$ref", json=ref(user["id"]))
    assert response.status_code == 204 and response.content == b""
    assert [m["id"] for m in http.get(f"/groups/{group['id']}/members").json()["value"]] == [user["id"]]
    assert control_object(control, "groups", group["id"])["members"] == [user["id"]]
    assert group["id"] in [g["id"] for g in http.get(f"/users/{user['id']}/memberOf").json()["value"]]

    assert_error(
        http.post(f"/groups/{group['id']}/members/$ref", json=ref(user["id"], "users")),
        400,
        "Request_BadRequest",
        "One or more added object references already exist for the following modified properties: 'members'.",
    )
    missing = str(uuid.uuid4())
    assert_error(
        http.post(f"/groups/{group['id']}/members/$ref", json=ref(missing)), 404, "Request_ResourceNotFound"
    )
    for malformed in (
        {"@odata.id": user["id"]},
        {"@odata.id": f"https://example.com/v1.0/users/{user['id']}"},
        {"@odata.id": f"{GRAPH}/users/not-a-guid"},
        {},
    ):
        assert_error(
            http.post(f"/groups/{group['id']}/members/$ref", json=malformed),
            400,
            "Request_UnsupportedQuery",
            "Unsupported referenced-object resource identifier for link property 'members'.",
        )


def test_add_member_with_the_local_base_url(http, control, graph):
    group = create_group(http)
    user = cloud_users(control)[0]
    body = {"@odata.id": f"{graph.info.graph_base_url}/directoryObjects/{user['id']}"}
    assert http.post(f"/groups/{group['id']}/members/$ref", json=body).status_code == 204


def test_remove_member_ref(http, control):
    group = create_group(http)
    user = cloud_users(control)[0]
    http.post(f"/groups/{group['id']}/members/$ref", json=ref(user["id"]))
    assert http.delete(f"/groups/{group['id']}/members/{user['id']}/$ref").status_code == 204
    assert http.get(f"/groups/{group['id']}/members").json()["value"] == []
    assert http.get(f"/users/{user['id']}").status_code == 200  # the user itself is untouched
    assert_error(
        http.delete(f"/groups/{group['id']}/members/{user['id']}/$ref"),
        404,
        "Request_ResourceNotFound",
        f"Resource '{user['id']}' does not exist or one of its queried reference-property objects are not "
        "present.",
    )


def test_delete_member_without_ref_deletes_the_member_object(http, domain):
    group = create_group(http)
    user = create_user(http, domain)
    http.post(f"/groups/{group['id']}/members/$ref", json=ref(user["id"]))
    assert http.delete(f"/groups/{group['id']}/members/{user['id']}").status_code == 204
    assert_error(http.get(f"/users/{user['id']}"), 404, "Request_ResourceNotFound")
    deleted = http.get("/directory/deletedItems/microsoft.graph.user").json()["value"]
    assert user["id"] in [item["id"] for item in deleted]


def test_dynamic_group_refuses_manual_member_changes(http, control):
    body = security_group(groupTypes=["DynamicMembership"], membershipRule='(user.department -eq "Sales")')
    response = http.post("/groups", json=body)
    assert response.status_code == 201, response.text
    group = response.json()
    user = cloud_users(control)[0]
    assert_error(
        http.post(f"/groups/{group['id']}/members/$ref", json=ref(user["id"])), 400, "Request_BadRequest"
    )
    without_rule = security_group(groupTypes=["DynamicMembership"])
    assert_error(
        http.post("/groups", json=without_rule),
        400,
        "Request_BadRequest",
        "Invalid value specified for property 'membershipRule' of resource 'Group'.",
    )


def test_exchange_mastered_groups_refuse_member_changes(http, control):
    groups = control.objects("groups")
    distribution = next(g for g in groups if g["mailEnabled"] and "Unified" not in g["groupTypes"])
    user = cloud_users(control)[0]
    assert_error(
        http.post(f"/groups/{distribution['id']}/members/$ref", json=ref(user["id"])),
        400,
        "Request_BadRequest",
        "Cannot Update a mail-enabled security groups and or distribution list.",
    )


def test_owners_ref(http, control):
    group = create_group(http)
    user = cloud_users(control)[0]
    assert http.post(f"/groups/{group['id']}/owners/$ref", json=ref(user["id"], "users")).status_code == 204
    assert [o["id"] for o in http.get(f"/groups/{group['id']}/owners").json()["value"]] == [user["id"]]
    assert_error(
        http.post(f"/groups/{group['id']}/owners/$ref", json=ref(user["id"])), 400, "Request_BadRequest"
    )
    assert http.delete(f"/groups/{group['id']}/owners/{user['id']}/$ref").status_code == 204
    assert_error(
        http.delete(f"/groups/{group['id']}/owners/{user['id']}/$ref"), 404, "Request_ResourceNotFound"
    )


# ------------------------------------------------------------------------------------------- manager


def test_manager_set_read_and_removed(http, domain, control):
    user = create_user(http, domain)
    manager = create_user(http, domain)
    assert_error(http.delete(f"/users/{user['id']}/manager/$ref"), 404, "Request_ResourceNotFound")
    assert http.put(f"/users/{user['id']}/manager/$ref", json=ref(manager["id"], "users")).status_code == 204
    read = http.get(f"/users/{user['id']}/manager")
    assert read.status_code == 200 and read.json()["id"] == manager["id"]
    assert control_object(control, "users", user["id"])["manager"] == manager["id"]
    reports = http.get(f"/users/{manager['id']}/directReports").json()["value"]
    assert [r["id"] for r in reports] == [user["id"]]
    assert_error(
        http.put(f"/users/{user['id']}/manager/$ref", json=ref(str(uuid.uuid4()), "users")),
        404,
        "Request_ResourceNotFound",
    )
    assert http.delete(f"/users/{user['id']}/manager/$ref").status_code == 204
    assert_error(
        http.get(f"/users/{user['id']}/manager"),
        404,
        "Request_ResourceNotFound",
        "Resource 'manager' does not exist or one of its queried reference-property objects are not present.",
    )


# -------------------------------------------------------------------------------------------- photos


def test_photo_round_trip(http, domain):
    user = create_user(http, domain)
    image = jpeg(648, 480)
    put = http.put(
        f"/users/{user['userPrincipalName']}/photo/$value",
        content=image,
        headers={"Content-Type": "image/jpeg"},
    )
    assert put.status_code == 200, put.text
    value = http.get(f"/users/{user['id']}/photo/$value")
    assert value.status_code == 200
    assert value.content == image and value.headers["Content-Type"].startswith("image/jpeg")
    meta = http.get(f"/users/{user['id']}/photo").json()
    assert (meta["@odata.mediaContentType"], meta["id"], meta["width"], meta["height"]) == (
        "image/jpeg",
        "default",
        648,
        480,
    )
    patched = http.patch(
        f"/users/{user['id']}/photo/$value", content=png(96, 64), headers={"Content-Type": "image/png"}
    )
    assert patched.status_code == 200
    assert (
        http.get(f"/users/{user['id']}/photo").json()["width"],
        http.get(f"/users/{user['id']}/photo").json()["height"],
    ) == (96, 64)
    assert http.delete(f"/users/{user['id']}/photo/$value").status_code == 204
    assert_error(http.get(f"/users/{user['id']}/photo/$value"), 404, "ImageNotFound")


def test_photo_errors(http, domain):
    user = create_user(http, domain)
    url = f"/users/{user['id']}/photo/$value"
    assert_error(
        http.get(url),
        404,
        "ImageNotFound",
        "Exception of type 'Microsoft.Fast.Profile.Core.Exception.ImageNotFoundException' was thrown.",
    )
    assert_error(http.get(f"/users/{user['id']}/photo"), 404, "ImageNotFound")
    assert_error(http.put(url, content=b"GIF89a", headers={"Content-Type": "image/gif"}), 400, "BadRequest")
    assert_error(http.put(url, content=b"", headers={"Content-Type": "image/jpeg"}), 400, "BadRequest")
    too_big = b"\xff\xd8" + b"\x00" * (4 * 1024 * 1024)
    assert_error(
        http.put(url, content=too_big, headers={"Content-Type": "image/jpeg"}), 413, "RequestEntityTooLarge"
    )
    assert_error(http.get(url), 404, "ImageNotFound")  # nothing was stored


def test_group_photo_cannot_be_written_with_application_permissions(http):
    group = create_group(http)
    response = http.put(
        f"/groups/{group['id']}/photo/$value", content=jpeg(96, 96), headers={"Content-Type": "image/jpeg"}
    )
    assert_error(
        response, 403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation."
    )


# ------------------------------------------------------------------------------------ devices, contacts


def test_app_only_cannot_create_devices_but_can_update_and_delete_them(http, control):
    body = {
        "accountEnabled": False,
        "alternativeSecurityIds": [{"type": 2, "key": "dGVzdA=="}],
        "deviceId": str(uuid.uuid4()),
        "displayName": "Test device",
        "operatingSystem": "linux",
        "operatingSystemVersion": "1",
    }
    assert_error(
        http.post("/devices", json=body),
        403,
        "Authorization_RequestDenied",
        "Insufficient privileges to complete the operation.",
    )
    device = control.objects("devices")[0]
    change = {"accountEnabled": False, "extensionAttributes": {"extensionAttribute1": "kiosk"}}
    assert http.patch(f"/devices/{device['id']}", json=change).status_code == 204
    stored = control_object(control, "devices", device["id"])
    assert (
        stored["accountEnabled"] is False and stored["extensionAttributes"]["extensionAttribute1"] == "kiosk"
    )
    assert http.delete(f"/devices/{device['id']}").status_code == 204
    assert_error(http.get(f"/devices/{device['id']}"), 404, "Request_ResourceNotFound")


def test_org_contacts_are_read_only(http, control):
    contact = control.objects("contacts")[0]
    message = "Specified HTTP method is not allowed for the request target."
    assert_error(http.post("/contacts", json={"displayName": "x"}), 405, "Request_BadRequest", message)
    assert_error(
        http.patch(f"/contacts/{contact['id']}", json={"displayName": "x"}),
        405,
        "Request_BadRequest",
        message,
    )
    assert_error(http.delete(f"/contacts/{contact['id']}"), 405, "Request_BadRequest", message)
    assert http.get(f"/contacts/{contact['id']}").status_code == 200


# ------------------------------------------------------------------------- applications, principals


def test_application_create_update_delete_and_service_principal(http, control):
    assert_error(
        http.post("/applications", json={}),
        400,
        "Request_BadRequest",
        "Invalid value specified for property 'displayName' of resource 'Application'.",
    )
    response = http.post("/applications", json={"displayName": "Connector test app"})
    assert response.status_code == 201, response.text
    app = response.json()
    assert uuid.UUID(app["appId"]) and app["signInAudience"] == "AzureADMyOrg"
    assert http.patch(f"/applications/{app['id']}", json={"notes": "hello"}).status_code == 204
    assert http.get(f"/applications/{app['id']}").json()["notes"] == "hello"
    assert_error(
        http.patch(f"/applications/{app['id']}", json={"appId": str(uuid.uuid4())}),
        400,
        "Request_BadRequest",
        "Property 'appId' is read-only and cannot be set.",
    )

    principal = http.post("/servicePrincipals", json={"appId": app["appId"]})
    assert principal.status_code == 201, principal.text
    assert (principal.json()["appId"], principal.json()["displayName"]) == (
        app["appId"],
        "Connector test app",
    )
    again = http.post("/servicePrincipals", json={"appId": app["appId"]})
    assert assert_error(again, 400, "Request_BadRequest")["details"][0]["code"] == "ObjectConflict"
    assert_error(
        http.post("/servicePrincipals", json={"appId": str(uuid.uuid4())}), 400, "Request_BadRequest"
    )

    assert http.delete(f"/servicePrincipals/{principal.json()['id']}").status_code == 204
    assert http.delete(f"/applications/{app['id']}").status_code == 204
    assert control_object(control, "applications", app["id"]) is None
    deleted = http.get("/directory/deletedItems/microsoft.graph.application").json()["value"]
    assert app["id"] in [item["id"] for item in deleted]


def test_extension_property_validation(http):
    app = http.post("/applications", json={"displayName": "Schema app"}).json()
    url = f"/applications/{app['id']}/extensionProperties"
    assert_error(
        http.post(url, json={"name": "x", "dataType": "Float", "targetObjects": ["User"]}),
        400,
        "Request_BadRequest",
    )
    assert_error(
        http.post(url, json={"name": "x", "dataType": "String", "targetObjects": []}),
        400,
        "Request_BadRequest",
    )
    body = {"name": "tag", "dataType": "String", "targetObjects": ["Group"]}
    assert http.post(url, json=body).status_code == 201
    assert_error(http.post(url, json=body), 400, "Request_BadRequest")


# ------------------------------------------------------------------------------------------ getByIds


def test_get_by_ids_returns_the_objects_with_their_type(http, control):
    user = control.objects("users")[0]
    group = control.objects("groups")[0]
    device = control.objects("devices")[0]
    missing = str(uuid.uuid4())
    response = http.post(
        "/directoryObjects/getByIds", json={"ids": [user["id"], group["id"], device["id"], missing]}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["@odata.context"].endswith("/$metadata#directoryObjects")
    assert [(i["@odata.type"], i["id"]) for i in body["value"]] == [
        ("#microsoft.graph.user", user["id"]),
        ("#microsoft.graph.group", group["id"]),
        ("#microsoft.graph.device", device["id"]),
    ]
    typed = http.post(
        "/directoryObjects/getByIds", json={"ids": [user["id"], group["id"]], "types": ["user"]}
    )
    assert [i["id"] for i in typed.json()["value"]] == [user["id"]]
    assert response.headers["x-ms-resource-unit"] == "5"
    assert_error(
        http.post("/directoryObjects/getByIds", json={"ids": ["nope"]}),
        400,
        "Request_BadRequest",
        "Invalid object identifier 'nope'.",
    )


# --------------------------------------------------------------------------------------- permissions


def test_app_with_only_user_read_all_can_read_but_not_write(graph, control, domain):
    with limited_client(graph, control, ["User.Read.All"]) as limited:
        assert limited.get("/users").status_code == 200
        assert_error(
            limited.post("/users", json=new_user(domain)),
            403,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        )
        assert_error(limited.get("/groups"), 403, "Authorization_RequestDenied")
        user = control.objects("users")[0]
        assert_error(
            limited.patch(f"/users/{user['id']}", json={"jobTitle": "x"}), 403, "Authorization_RequestDenied"
        )
    assert not [u for u in control.objects("users") if u["displayName"] == "Adele Vance"]


def test_password_reset_permission_is_separate_from_user_write(graph, control, http, domain):
    user = create_user(http, domain)
    with limited_client(graph, control, ["User-PasswordProfile.ReadWrite.All", "User.Read.All"]) as limited:
        reset = limited.patch(
            f"/users/{user['id']}", json={"passwordProfile": {"password": "N3w-Secret!pass"}}
        )
        assert reset.status_code == 204
        assert_error(
            limited.patch(f"/users/{user['id']}", json={"jobTitle": "x"}), 403, "Authorization_RequestDenied"
        )
    with limited_client(graph, control, ["Directory.ReadWrite.All"]) as directory:
        # Directory.ReadWrite.All can't reset passwords or delete users (Learn's permission reference).
        assert_error(
            directory.patch(f"/users/{user['id']}", json={"passwordProfile": {"password": "An0ther!pass"}}),
            403,
            "Authorization_RequestDenied",
        )
        assert_error(directory.delete(f"/users/{user['id']}"), 403, "Authorization_RequestDenied")
        assert directory.patch(f"/users/{user['id']}", json={"jobTitle": "Allowed"}).status_code == 204


# ---------------------------------------------------------------------------------- eventual consistency


def test_just_created_object_is_not_found_by_id_within_the_replication_delay(http, control, domain):
    control.settings(replication_delay_ms=600_000)
    user = create_user(http, domain)
    assert_error(http.get(f"/users/{user['id']}"), 404, "Request_ResourceNotFound")
    assert_error(http.get(f"/users/{user['userPrincipalName']}"), 404, "Request_ResourceNotFound")
    control.settings(replication_delay_ms=0)
    assert http.get(f"/users/{user['id']}").status_code == 200
