"""The directory budget as the client spends it: resource units by Graph's documented table
(docs/graph-behaviour.md section 5), batched fan-out held to a share, page chains never held back."""

from __future__ import annotations

import time

import pytest

from shared.graph.pacing import Pacer, UnitBudget, resource_units


@pytest.mark.parametrize(
    ("method", "path", "units"),
    [
        ("GET", "/users", 2),
        ("GET", "/users?$select=id,displayName&$top=999", 1),  # 2, $select -1
        ("GET", "/users?$top=5", 1),  # 2, $top below 20 -1
        ("GET", "/users?%24select=id", 1),  # the option percent-encoded is the same option
        ("GET", "/groups/7a1c/members?$select=id&$top=999", 2),  # 3, $select -1
        ("GET", "/groups/7a1c/members/microsoft.graph.user?$select=id", 2),
        ("GET", "/groups/7a1c/transitiveMembers", 5),
        ("GET", "/users/3f2e/memberOf", 2),
        ("GET", "/me/memberOf", 2),  # me/ paths cost what users/{id}/ paths cost
        ("GET", "/users/3f2e?$expand=manager", 2),  # any other GET 1, $expand +1
        ("GET", "/groups?$select=id&$top=999", 1),  # never below 1
        ("GET", "/users/delta?$select=id", 1),
        ("GET", "/subscribedSkus", 3),
        ("POST", "/directoryObjects/getByIds", 5),
        ("PATCH", "/users/3f2e", 1),
    ],
)
def test_resource_units_follow_the_documented_table(method, path, units):
    assert resource_units(method, path) == units


async def test_batched_fan_out_waits_for_its_share_and_single_requests_never_wait():
    budget = UnitBudget(units=100, window_s=0.3, share=0.5)
    started = time.monotonic()
    assert await budget.take(40) == 0.0
    budget.count(500)  # a chain's pages: counted, never held back, even beyond the budget
    assert time.monotonic() - started < 0.05
    waited = await budget.take(20)  # 40 + 500 in the window: waits until they have left it
    assert waited >= 0.3 and budget.used == 560


async def test_the_pacer_holds_batches_of_directory_reads_but_not_intune_or_other_services():
    pacer = Pacer(directory=UnitBudget(units=10, window_s=0.3, share=1.0))
    steps = [("GET", f"/groups/{n}/members?$select=id&$top=999") for n in range(5)]  # 2 RU each
    assert await pacer.before(steps, batched=True) == (0, 0.0)
    assert pacer.directory is not None and pacer.directory.used == 10
    counted, waited = await pacer.before([("GET", "/deviceManagement/managedDevices")], batched=True)
    assert counted == 1 and waited == 0.0  # Intune's own request budget, not resource units
    assert await pacer.before([("GET", "/sites/root")], batched=True) == (0, 0.0)  # not a directory read
    _, waited = await pacer.before(steps[:1], batched=True)
    assert waited >= 0.3
