"""Intune devices as Graph v1.0 documents them [docs/graph-behaviour.md section 11]: managed devices in pages
of 1,000 with ``$skiptoken``, ``$filter`` only on the properties the metadata marks filterable and combined
with ``and``, ``windowsProtectionState`` for Windows devices only, no delta, the tenant-wide detectedApps, and
Intune's own request budget (2,000 per 20 s per app and tenant, 200 writes; 4,000 / 400 per tenant).

Expected values come from the generator (``build_tenant`` with the same shape), never from the server.
"""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qsl, urlsplit

import pytest

from localgraph import schema
from localgraph.client import graph_client
from localgraph.context import GraphSettings
from localgraph.generate import TenantShape, build_tenant
from tests.support import assert_error

SHAPE = TenantShape(users=80, devices=1400, seed=4)
BASE = "/deviceManagement/managedDevices"
INTUNE_READ = ["DeviceManagementManagedDevices.Read.All"]


@pytest.fixture
def graph_shape() -> TenantShape:
    return SHAPE


@pytest.fixture
def graph_settings() -> GraphSettings:
    return GraphSettings()


@pytest.fixture(scope="module")
def tenant():
    return build_tenant(SHAPE)


def follow(http, path, params=None):
    response = http.get(path, params=params)
    pages = []
    while True:
        assert response.status_code == 200, response.text
        pages.append(response.json())
        if "@odata.nextLink" not in pages[-1]:
            return [item for page in pages for item in page["value"]], pages
        response = http.get(pages[-1]["@odata.nextLink"])


def intune_message(response) -> dict:
    """Intune's error ``message`` is itself a JSON text (IntuneDocumentation#39)."""
    message = json.loads(response.json()["error"]["message"])
    assert message["_version"] == 3 and "Activity ID" in message["Message"]
    return message


# ------------------------------------------------------------------------------------------ managed devices


def test_managed_devices_come_in_pages_of_1000_with_a_skiptoken(graph, http, tenant):
    items, pages = follow(http, BASE)
    assert len(tenant.managed_devices) > 1000
    assert [len(page["value"]) for page in pages] == [1000, len(tenant.managed_devices) - 1000]
    link = urlsplit(pages[0]["@odata.nextLink"])
    assert f"{link.scheme}://{link.netloc}" == graph.info.graph_url and link.path == f"/v1.0{BASE}"
    assert "$skiptoken" in dict(parse_qsl(link.query))
    assert sorted(d["id"] for d in items) == sorted(tenant.managed_devices)


def test_top_and_select_page_the_same_devices(http):
    everything, _ = follow(http, BASE)
    items, pages = follow(http, BASE, {"$top": "300", "$select": "id,deviceName"})
    assert [d["id"] for d in items] == [d["id"] for d in everything]
    assert all(set(item) == {"id", "deviceName"} for item in items)
    assert len(pages) == -(-len(everything) // 300)
    assert_error(http.get(BASE, params={"$top": "x"}), 400, "BadRequest")
    assert_error(http.get(BASE, params={"$select": "shoeSize"}), 400, "BadRequest")


def test_a_device_by_id_is_the_listed_device(http):
    listed = http.get(BASE, params={"$top": "15"}).json()["value"]
    for device in listed:
        single = http.get(f"{BASE}/{device['id']}").json()
        assert {k: v for k, v in single.items() if not k.startswith("@")} == device


def test_some_properties_show_their_value_only_on_a_get_that_selects_them(http, tenant):
    """ "To retrieve actual values GET call needs to be made, with device id and included in select parameter."
    (managedDevice's property descriptions in the v1.0 CSDL)."""
    device = next(d.props for d in tenant.managed_devices.values() if d.props["operatingSystem"] == "Windows")
    assert device["physicalMemoryInBytes"] > 0 and device["ethernetMacAddress"]
    listed = next(d for d in follow(http, BASE)[0] if d["id"] == device["id"])
    plain = http.get(f"{BASE}/{device['id']}").json()
    for shown in (listed, plain):
        assert shown["physicalMemoryInBytes"] == 0 and shown["ethernetMacAddress"] is None
    selected = http.get(
        f"{BASE}/{device['id']}", params={"$select": "id,physicalMemoryInBytes,ethernetMacAddress"}
    )
    assert {k: v for k, v in selected.json().items() if not k.startswith("@")} == {
        "id": device["id"],
        "physicalMemoryInBytes": device["physicalMemoryInBytes"],
        "ethernetMacAddress": device["ethernetMacAddress"],
    }
    # A list that selects them still shows the defaults.
    page = http.get(BASE, params={"$select": "id,physicalMemoryInBytes", "$top": "5"}).json()["value"]
    assert all(item["physicalMemoryInBytes"] == 0 for item in page)


def test_count_comes_on_the_first_page_without_consistency_level(http, tenant):
    first = http.get(BASE, params={"$count": "true", "$select": "id"}).json()
    assert first["@odata.count"] == len(tenant.managed_devices)
    assert "@odata.count" not in http.get(first["@odata.nextLink"]).json()
    windows = http.get(BASE, params={"$count": "true", "$filter": "operatingSystem eq 'Windows'"}).json()
    assert windows["@odata.count"] == sum(
        1 for d in tenant.managed_devices.values() if d.props["operatingSystem"] == "Windows"
    )


def test_unknown_device_is_intunes_404(http):
    response = http.get(f"{BASE}/00000000-0000-4000-8000-000000000000")
    assert_error(response, 404, "ResourceNotFound")
    assert intune_message(response)["RetryAfter"] is None


def test_windows_protection_state_only_for_windows_devices(http, tenant):
    windows = [d for d in tenant.managed_devices.values() if d.props["operatingSystem"] == "Windows"]
    other = [d for d in tenant.managed_devices.values() if d.props["operatingSystem"] != "Windows"]
    assert windows and other
    state = http.get(f"{BASE}/{windows[0].props['id']}/windowsProtectionState")
    assert state.status_code == 200
    assert state.json()["@odata.context"].endswith("/windowsProtectionState/$entity")
    assert schema.check_shape("windowsProtectionState", state.json()) == []
    for device in other[:5]:
        missing = http.get(f"{BASE}/{device.props['id']}/windowsProtectionState")
        assert_error(missing, 404, "ResourceNotFound")
        intune_message(missing)


@pytest.mark.parametrize("segment", ["delta", "delta()", "microsoft.graph.delta()", "graph.delta"])
def test_no_delta_for_managed_devices(http, segment):
    assert_error(
        http.get(f"{BASE}/{segment}"), 400, "BadRequest", f"Resource not found for the segment '{segment}'."
    )


def test_sync_device_is_an_action_answering_204(http, tenant):
    device_id = next(iter(tenant.managed_devices))
    response = http.post(f"{BASE}/{device_id}/syncDevice")
    assert response.status_code == 204 and response.content == b""


# ------------------------------------------------------------------------------------------ detected apps


def test_detected_apps_are_tenant_wide_with_their_devices(http, tenant):
    apps, _ = follow(http, "/deviceManagement/detectedApps")
    assert sorted(a["id"] for a in apps) == sorted(tenant.detected_apps)
    assert any(app["deviceCount"] > 1 for app in apps)
    for app in apps:
        assert schema.check_shape("detectedApp", app) == []
        expected = tenant.detected_apps[app["id"]]
        assert app == expected.props and app["deviceCount"] == len(expected.device_ids)
        single = http.get(f"/deviceManagement/detectedApps/{app['id']}").json()
        assert {k: v for k, v in single.items() if not k.startswith("@")} == app
        devices, _ = follow(http, f"/deviceManagement/detectedApps/{app['id']}/managedDevices")
        assert [d["id"] for d in devices] == expected.device_ids
        assert all(d["operatingSystem"] == "Windows" for d in devices)


def test_unknown_detected_app_is_404_and_the_beta_path_is_not_served(http, tenant):
    assert_error(
        http.get("/deviceManagement/detectedApps/00000000-0000-4000-8000-000000000000"),
        404,
        "ResourceNotFound",
    )
    device_id = next(iter(tenant.managed_devices))
    assert_error(
        http.get(f"{BASE}/{device_id}/detectedApps"),
        400,
        "BadRequest",
        "Resource not found for the segment 'detectedApps'.",
    )


# ------------------------------------------------------------------------------------------------ $filter


def matching(tenant, test) -> list[str]:
    return sorted(d.props["id"] for d in tenant.managed_devices.values() if test(d.props))


def filtered(http, text) -> list[str]:
    items, _ = follow(http, BASE, {"$filter": text, "$select": "id"})
    return sorted(d["id"] for d in items)


def test_filter_on_filterable_properties(http, tenant):
    some = next(iter(tenant.managed_devices.values())).props
    assert filtered(http, "operatingSystem eq 'Windows'") == matching(
        tenant, lambda p: p["operatingSystem"] == "Windows"
    )
    assert filtered(http, f"deviceName eq '{some['deviceName']}'") == [some["id"]]
    assert filtered(http, "contains(deviceName, 'MOBILE')") == matching(
        tenant, lambda p: "MOBILE" in p["deviceName"]
    )
    assert filtered(http, "operatingSystem eq 'Windows' and complianceState eq 'compliant'") == matching(
        tenant, lambda p: p["operatingSystem"] == "Windows" and p["complianceState"] == "compliant"
    )
    # 'or' between clauses on one property whose description names 'or'
    assert filtered(http, "operatingSystem eq 'iOS' or operatingSystem eq 'Android'") == matching(
        tenant, lambda p: p["operatingSystem"] in ("iOS", "Android")
    )
    cut = sorted(p.props["lastSyncDateTime"] for p in tenant.managed_devices.values())[700]
    assert filtered(http, f"lastSyncDateTime gt {cut}") == matching(
        tenant, lambda p: p["lastSyncDateTime"] > cut
    )
    assert 0 < len(filtered(http, f"lastSyncDateTime gt {cut}")) < len(tenant.managed_devices)


@pytest.mark.parametrize(
    "text",
    [
        "userId eq '{user}'",  # userId's description does not mention $filter (graph-explorer-v4#3125)
        "deviceEnrollmentType eq 'windowsAzureADJoin'",  # microsoft-graph-docs-contrib#235
        "deviceName ne 'x'",  # deviceName supports eq and contains only
        "operatingSystem eq 'iOS' or complianceState eq 'compliant'",  # 'or' across properties
        "azureADDeviceId eq 'a' or azureADDeviceId eq 'b'",  # azureADDeviceId does not support 'or'
        "not(operatingSystem eq 'Windows')",
    ],
)
def test_unsupported_filter_clauses_are_ignored_as_observed(http, tenant, text):
    user = next(iter(tenant.managed_devices.values())).props["userId"]
    assert filtered(http, text.format(user=user)) == sorted(tenant.managed_devices)


def test_an_ignored_clause_leaves_the_supported_ones(http, tenant):
    user = next(iter(tenant.managed_devices.values())).props["userId"]
    assert filtered(http, f"operatingSystem eq 'Windows' and userId eq '{user}'") == matching(
        tenant, lambda p: p["operatingSystem"] == "Windows"
    )


def test_strict_mode_rejects_unsupported_clauses(http, control):
    control.settings(intune_unsupported_filter="reject")
    assert_error(http.get(BASE, params={"$filter": "userId eq 'x'"}), 400, "BadRequest")
    assert http.get(BASE, params={"$filter": "operatingSystem eq 'Windows'"}).status_code == 200


def test_in_fails_with_500_as_observed(http):
    response = http.get(BASE, params={"$filter": "operatingSystem in ('Windows', 'iOS')"})
    assert response.status_code == 500
    intune_message(response)


# --------------------------------------------------------------------------------------------- budget


def app_client(graph, control, roles=INTUNE_READ):
    app = control.add_app(roles)
    return graph_client(graph.info, client_id=app["client_id"], secret=app["client_secret"])


def drive_until_throttled(client, path, limit=50, method="GET"):
    """Send requests until one is throttled; returns (successful count, the 429 response)."""
    for sent in range(limit):
        response = client.request(method, path)
        if response.status_code == 429:
            return sent, response
        assert response.status_code < 300, response.text
    raise AssertionError(f"no 429 after {limit} requests")


def test_intune_budget_per_app_then_retry_after(graph, http, control, tenant):
    control.settings(intune_app_requests=6, intune_window_s=3.0)
    control.clear_requests()
    device_path = f"{BASE}/{next(iter(tenant.managed_devices))}"
    served, response = drive_until_throttled(http, device_path)
    assert served == 6
    error = assert_error(response, 429, "TooManyRequests", "An error has occurred.")
    assert error["details"] == []
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= 3
    # Intune's budget is its own: directory reads are not throttled by it.
    assert http.get("/users", params={"$top": "1"}).status_code == 200
    # Retrying before Retry-After is throttled again; after it, served.
    assert http.get(device_path).status_code == 429
    time.sleep(retry_after)
    assert http.get(device_path).status_code == 200
    log = control.requests()
    assert log["by_path"][f"GET {BASE}/{{id}}"] == 9 and log["throttled"] == 2


def test_intune_429_without_retry_after_on_request(http, control):
    control.settings(intune_app_requests=3, intune_retry_after=False)
    _, response = drive_until_throttled(http, BASE + "?$top=1")
    assert_error(response, 429, "TooManyRequests")
    assert "Retry-After" not in response.headers


def test_intune_writes_have_the_smaller_budget(http, control, tenant):
    control.settings(intune_app_requests=20, intune_app_writes=3)
    device_path = f"{BASE}/{next(iter(tenant.managed_devices))}"
    served, response = drive_until_throttled(http, f"{device_path}/syncDevice", method="POST")
    assert served == 3 and response.status_code == 429
    assert http.get(device_path).status_code == 200  # reads still have budget (4 of 20 used)


def test_intune_tenant_budget_is_shared_across_apps(graph, http, control):
    control.settings(intune_app_requests=5, intune_tenant_requests=8, intune_window_s=20.0)
    served, first = drive_until_throttled(http, BASE + "?$top=1")
    assert served == 5 and "Tenant_Application" in first.headers["x-ms-throttle-scope"]
    with app_client(graph, control) as other:
        served, second = drive_until_throttled(other, BASE + "?$top=1")
    assert served == 3  # the tenant's 8 are spent, though this app used only 3 of its 5
    assert second.headers["x-ms-throttle-scope"].startswith("Tenant/Intune/")


def test_batch_steps_draw_on_the_intune_budget_one_by_one(http, control, tenant):
    control.settings(intune_app_requests=4)
    ids = list(tenant.managed_devices)[:6]
    body = {"requests": [{"id": str(i), "method": "GET", "url": f"{BASE}/{d}"} for i, d in enumerate(ids)]}
    response = http.post("/$batch", json=body)
    assert response.status_code == 200
    statuses = sorted(r["status"] for r in response.json()["responses"])
    assert statuses == [200, 200, 200, 200, 429, 429]
