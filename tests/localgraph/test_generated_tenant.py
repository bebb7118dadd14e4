"""The generated tenant: deterministic, shaped like a real Entra ID tenant where the connector's behaviour
depends on it, and every object as served over HTTP matches Graph's v1.0 metadata (``check_shape``)."""

from __future__ import annotations

from collections import Counter

import pytest

from localgraph import schema
from localgraph.context import GraphSettings
from localgraph.control import export
from localgraph.generate import TenantShape, build_tenant
from localgraph.query import SINGLE_USER_ONLY
from localgraph.tenant import COLLECTIONS, Tenant

SHAPE = TenantShape(users=300, seed=21)


@pytest.fixture
def graph_shape() -> TenantShape:
    return SHAPE


@pytest.fixture
def graph_settings() -> GraphSettings:
    return GraphSettings(enforce_budgets=False)


def full_export(tenant: Tenant) -> dict:
    """Everything the generator decides, in a comparable form."""
    return {
        "tenant": (tenant.tenant_id, tenant.domain, tuple(tenant.verified_domains)),
        "objects": {
            kind: [export(tenant, obj) for obj in tenant.live(kind)] for kind in COLLECTIONS.values()
        },
        "managed": {
            key: (device.props, device.windows_protection_state)
            for key, device in tenant.managed_devices.items()
        },
        "detected": {key: (app.props, app.device_ids) for key, app in tenant.detected_apps.items()},
        "extensions": tenant.extension_properties,
        "passwords": sorted((obj.id, obj.password) for obj in tenant.objects.values()),
    }


def pages(http, path: str, params: dict) -> list[dict]:
    items = []
    response = http.get(path, params=params)
    while True:
        assert response.status_code == 200, response.text
        body = response.json()
        items.extend(body["value"])
        if "@odata.nextLink" not in body:
            return items
        response = http.get(body["@odata.nextLink"])


def shape_problems(kind: str, items: list[dict]) -> Counter:
    problems: Counter = Counter()
    for item in items:
        for problem in schema.check_shape(kind, item):
            problems[problem.split(": ", 1)[-1] + " @ " + problem.split(":", 1)[0].split(".", 1)[-1]] += 1
    return problems


# ------------------------------------------------------------------------------------------- determinism


def test_same_seed_gives_an_identical_tenant():
    assert full_export(build_tenant(SHAPE)) == full_export(build_tenant(SHAPE))


def test_another_seed_gives_another_tenant():
    first, second = (
        full_export(build_tenant(SHAPE)),
        full_export(build_tenant(TenantShape(users=300, seed=22))),
    )
    assert first["tenant"] != second["tenant"]
    assert [u["displayName"] for u in first["objects"]["user"]] != [
        u["displayName"] for u in second["objects"]["user"]
    ]


def test_shape_controls_the_sizes():
    tenant = build_tenant(TenantShape(users=120, groups=14, devices=9, contacts=4, applications=3, seed=2))
    assert tenant.count("user") == 120
    assert tenant.count("group") == 14
    assert tenant.count("device") == 9
    assert tenant.count("orgContact") == 4
    assert tenant.count("application") == tenant.count("servicePrincipal") == 3
    assert tenant.log == []  # the generated state is the starting point of change tracking


# ------------------------------------------------------------------------------------------- contents


@pytest.fixture
def users(control) -> list[dict]:
    return control.objects("users")


@pytest.fixture
def groups(control) -> list[dict]:
    return control.objects("groups")


def test_names_with_apostrophes_and_non_ascii_letters(users):
    names = [u["displayName"] for u in users]
    assert any("'" in name for name in names)
    assert any(any(ord(ch) > 127 for ch in name) for name in names)
    assert all(u["userPrincipalName"].isascii() for u in users)


def test_guests_have_ext_upns_and_user_type_guest(users, control):
    guests = [u for u in users if u["userType"] == "Guest"]
    assert guests
    domain = control.tenant_info()["domain"]
    for guest in guests:
        assert guest["userPrincipalName"].endswith(f"#EXT#@{domain}")
        assert guest["creationType"] == "Invitation"
        assert guest["externalUserState"] in ("Accepted", "PendingAcceptance")
        assert (
            guest["mail"]
            and guest["mail"].replace("@", "_") + "#EXT#@" + domain == guest["userPrincipalName"]
        )
    assert all("#EXT#" not in u["userPrincipalName"] for u in users if u["userType"] == "Member")


def test_disabled_accounts_exist(users):
    enabled = Counter(u["accountEnabled"] for u in users)
    assert enabled[False] > 0 and enabled[True] > enabled[False]


def test_synced_users_carry_on_premises_properties(users):
    synced = [u for u in users if u.get("onPremisesSyncEnabled")]
    assert synced and len(synced) < len(users)
    for user in synced:
        assert user["userType"] == "Member"
        for prop in ("onPremisesImmutableId", "onPremisesSamAccountName", "onPremisesSecurityIdentifier",
                     "onPremisesDistinguishedName", "onPremisesDomainName", "onPremisesLastSyncDateTime",
                     "onPremisesUserPrincipalName"):  # fmt: skip
            assert user[prop], prop
    with_attributes = [u for u in synced if u.get("onPremisesExtensionAttributes")]
    assert with_attributes
    for user in with_attributes:
        assert set(user["onPremisesExtensionAttributes"]) <= {f"extensionAttribute{n}" for n in range(1, 16)}
    assert not any(
        u.get("onPremisesExtensionAttributes") for u in users if not u.get("onPremisesSyncEnabled")
    )


def test_directory_extension_on_users(users, control):
    app = next(
        a for a in control.objects("applications") if a["displayName"] == "Tenant Schema Extension App"
    )
    name = f"extension_{app['appId'].replace('-', '')}_costCenter"
    assert schema.EXTENSION_PROPERTY.fullmatch(name)
    holders = [u for u in users if name in u]
    assert holders and len(holders) < len(users)
    assert all(isinstance(u[name], str) for u in holders)


def test_managers_form_a_forest_of_live_users(users):
    by_id = {u["id"]: u for u in users}
    managed = [u for u in users if u["manager"]]
    assert managed
    for user in managed:
        assert user["manager"] in by_id and user["manager"] != user["id"]
        seen = {user["id"]}
        current = user
        while current["manager"]:
            assert current["manager"] not in seen, "manager chains have no cycles"
            seen.add(current["manager"])
            current = by_id[current["manager"]]
    assert not any(u["manager"] for u in users if u["userType"] == "Guest")


def test_nested_groups_two_levels_deep(groups):
    by_id = {g["id"]: g for g in groups}
    chains = [
        (g["id"], child, grandchild)
        for g in groups
        for child in g["members"]
        if child in by_id
        for grandchild in by_id[child]["members"]
        if grandchild in by_id
    ]
    assert chains
    for parent, child, _ in chains:
        assert "Unified" not in by_id[parent]["groupTypes"] and "Unified" not in by_id[child]["groupTypes"]
    assert not any(m in by_id for g in groups if "Unified" in g["groupTypes"] for m in g["members"])


def test_three_very_large_groups(groups, users):
    sizes = sorted((len(g["members"]), g["displayName"]) for g in groups)
    largest = sizes[-3:]
    assert {name for _, name in largest} == {"All Staff", "Large Group 1", "Large Group 2"}
    assert largest[0][0] > sizes[-4][0]
    all_staff = next(g for g in groups if g["displayName"] == "All Staff")
    assert sorted(all_staff["members"]) == sorted(u["id"] for u in users if u["userType"] == "Member")


def test_every_group_kind_exists(groups):
    def kind(group: dict) -> str:
        if "Unified" in group["groupTypes"]:
            return "m365"
        if group["securityEnabled"]:
            return "mailsecurity" if group["mailEnabled"] else "security"
        return "distribution" if group["mailEnabled"] else "other"

    kinds = Counter(kind(g) for g in groups)
    assert set(kinds) == {"security", "m365", "mailsecurity", "distribution"}
    for group in groups:
        if group["mailEnabled"]:
            assert group["mail"] and group["proxyAddresses"][0] == f"SMTP:{group['mail']}"
        if "Unified" in group["groupTypes"]:
            assert group["mailEnabled"] and not group["securityEnabled"] and group["visibility"]


def test_devices_managed_devices_contacts_and_applications(http, control):
    devices = control.objects("devices")
    assert devices
    managed = pages(http, "/deviceManagement/managedDevices", {})
    assert managed and len(managed) <= len(devices)
    device_ids = {d["deviceId"] for d in devices}
    assert all(m["azureADDeviceId"] in device_ids for m in managed)
    windows = [m for m in managed if m["operatingSystem"] == "Windows"]
    assert windows
    for device in windows:
        state = http.get(f"/deviceManagement/managedDevices/{device['id']}/windowsProtectionState")
        assert state.status_code == 200
    apps = pages(http, "/deviceManagement/detectedApps", {})
    found_on = {
        d["id"]
        for app in apps
        for d in pages(http, f"/deviceManagement/detectedApps/{app['id']}/managedDevices", {})
    }
    assert found_on == {d["id"] for d in windows}  # every Windows device has apps, others none
    assert control.objects("contacts")
    applications = control.objects("applications")
    principals = control.objects("servicePrincipals")
    assert sorted(a["appId"] for a in applications) == sorted(p["appId"] for p in principals)


# ---------------------------------------------------------------------------------------------- shapes

LISTS = [("users", "user"), ("groups", "group"), ("devices", "device"), ("applications", "application"),
         ("servicePrincipals", "servicePrincipal"), ("contacts", "orgContact")]  # fmt: skip


@pytest.mark.parametrize(("collection", "kind"), LISTS)
def test_every_object_with_every_property_matches_the_metadata(http, control, collection, kind):
    declared = [name for name in schema.structural_properties(kind) if name not in SINGLE_USER_ONLY]
    extensions = sorted({k for o in control.objects(collection) for k in o if k.startswith("extension_")})
    items = pages(http, f"/{collection}", {"$select": ",".join(declared + extensions), "$top": "500"})
    assert len(items) == len(control.objects(collection))
    assert shape_problems(kind, items) == Counter()
    assert all(set(declared) - {"logo"} <= set(item) for item in items)  # stream properties are not in JSON


@pytest.mark.parametrize(("collection", "kind"), LISTS)
def test_every_object_with_default_properties_matches_the_metadata(http, control, collection, kind):
    assert shape_problems(kind, pages(http, f"/{collection}", {"$top": "999"})) == Counter()


def test_single_users_with_every_property_match_the_metadata(http, users):
    everything = ",".join(schema.structural_properties("user"))
    picks = [
        next(u for u in users if u["userType"] == "Guest"),
        next(u for u in users if u.get("onPremisesSyncEnabled")),
    ]
    picks += users[:3]
    for user in picks:
        response = http.get(f"/users/{user['id']}", params={"$select": everything, "$expand": "manager"})
        assert response.status_code == 200, response.text
        assert schema.check_shape("user", response.json()) == []


def test_intune_objects_with_every_property_match_the_metadata(http):
    device_props = ",".join(schema.structural_properties("managedDevice"))
    managed = pages(http, "/deviceManagement/managedDevices", {"$select": device_props})
    assert managed
    assert shape_problems("managedDevice", managed) == Counter()
    assert shape_problems("managedDevice", pages(http, "/deviceManagement/managedDevices", {})) == Counter()
    state_props = ",".join(schema.structural_properties("windowsProtectionState"))
    app_props = ",".join(schema.structural_properties("detectedApp"))
    states, apps = [], []
    for device in managed:
        if device["operatingSystem"] != "Windows":
            continue
        base = f"/deviceManagement/managedDevices/{device['id']}"
        states.append(http.get(f"{base}/windowsProtectionState", params={"$select": state_props}).json())
        states.append(http.get(f"{base}/windowsProtectionState").json())
    apps.extend(pages(http, "/deviceManagement/detectedApps", {"$select": app_props}))
    apps.extend(pages(http, "/deviceManagement/detectedApps", {}))
    apps.append(http.get(f"/deviceManagement/detectedApps/{apps[0]['id']}").json())
    assert states and apps
    assert shape_problems("windowsProtectionState", states) == Counter()
    assert shape_problems("detectedApp", apps) == Counter()
