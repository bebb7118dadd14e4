"""The committed extract of Graph's v1.0 metadata, the schema API over it, and check_shape.

Nothing here reads the CSDL: the extractor is tested on an inline CSDL document, and the committed JSON
is what localgraph.schema loads.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from localgraph import schema
from localgraph.metadata import extract_csdl

REPO = Path(__file__).resolve().parents[2]
TYPES_JSON = REPO / "localgraph" / "metadata" / "graph-v1.0-types.json"
G = "microsoft.graph."

SERVED = {
    "user",
    "group",
    "device",
    "application",
    "servicePrincipal",
    "orgContact",
    "directoryObject",
    "extensionProperty",
    "managedDevice",
    "windowsProtectionState",
    "detectedApp",
    "profilePhoto",
    "organization",
    "domain",
    "subscription",
}

EXT = "extension_b7d8e648520f41d3b9c0fdeb91768a0a"

# A user as GET /users/{id}?$select=...&$expand=manager($select=id,displayName) returns it.
USER = {
    "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users(id,displayName,manager())/$entity",
    "@odata.type": "#microsoft.graph.user",
    "id": "87d349ed-44d7-43e1-9a83-5f2406dee5bd",
    "deletedDateTime": None,
    "accountEnabled": True,
    "ageGroup": None,
    "assignedLicenses": [
        {
            "disabledPlans": ["a82fbf69-b4d7-49f4-83a6-915b2cf354f4"],
            "skuId": "c7df2760-2c81-4ef7-b578-5b5392b571df",
        },
        {"disabledPlans": [], "skuId": "B05E124F-C7CC-45A0-A6AA-8CF78C946968"},
    ],
    "assignedPlans": [
        {
            "assignedDateTime": "2022-11-03T19:37:03Z",
            "capabilityStatus": "Enabled",
            "service": "exchange",
            "servicePlanId": "efb87545-963c-4e0d-99df-69c6916d9eb0",
        }
    ],
    "birthday": "0001-01-01T00:00:00Z",
    "businessPhones": ["+1 425 555 0109"],
    "city": "Redmond",
    "companyName": None,
    "country": "United States",
    "createdDateTime": "2019-07-12T22:40:18Z",
    "creationType": None,
    "department": "Retail",
    "displayName": "Adele Vance",
    "employeeHireDate": "2020-01-06T08:00:00+01:00",
    "employeeId": "1234567",
    "employeeOrgData": {"costCenter": "CC-42", "division": "Retail"},
    "employeeType": "Employee",
    "externalUserState": None,
    "givenName": "Adele",
    "identities": [
        {
            "signInType": "userPrincipalName",
            "issuer": "contoso.onmicrosoft.com",
            "issuerAssignedId": "AdeleV@contoso.onmicrosoft.com",
        }
    ],
    "imAddresses": ["adelev@contoso.onmicrosoft.com"],
    "jobTitle": "Retail Manager",
    "lastPasswordChangeDateTime": "2023-03-14T09:21:17.1234567Z",
    "licenseAssignmentStates": [
        {
            "assignedByGroup": None,
            "disabledPlans": [],
            "error": "None",
            "lastUpdatedDateTime": "2023-03-14T09:21:17Z",
            "skuId": "c7df2760-2c81-4ef7-b578-5b5392b571df",
            "state": "Active",
        }
    ],
    "mail": "AdeleV@contoso.com",
    "mailboxSettings": {
        "timeZone": "Pacific Standard Time",
        "language": {"locale": "en-US", "displayName": "English (United States)"},
        "workingHours": {
            "daysOfWeek": ["monday", "tuesday", "wednesday", "thursday", "friday"],
            "startTime": "08:00:00.0000000",
            "endTime": "17:00:00.0000000",
            "timeZone": {"name": "Pacific Standard Time"},
        },
    },
    "mailNickname": "AdeleV",
    "mobilePhone": None,
    "officeLocation": "18/2111",
    "onPremisesDistinguishedName": "CN=Adele Vance,OU=Users,DC=contoso,DC=com",
    "onPremisesDomainName": "contoso.com",
    "onPremisesExtensionAttributes": {
        f"extensionAttribute{n}": ("E1234" if n == 1 else None) for n in range(1, 16)
    },
    "onPremisesImmutableId": "nQKr3AnQxUKp0Mu3Tz4Gpw==",
    "onPremisesLastSyncDateTime": "2024-05-01T10:00:00Z",
    "onPremisesProvisioningErrors": [],
    "onPremisesSamAccountName": "adelev",
    "onPremisesSecurityIdentifier": "S-1-5-21-1180699209-877415012-3182924384-1004",
    "onPremisesSyncEnabled": True,
    "onPremisesUserPrincipalName": "adelev@contoso.com",
    "otherMails": [],
    "passwordPolicies": "DisablePasswordExpiration",
    "postalCode": "98052",
    "preferredLanguage": "en-US",
    "proxyAddresses": ["SMTP:AdeleV@contoso.com", "smtp:AdeleV@contoso.onmicrosoft.com"],
    "securityIdentifier": "S-1-12-1-2278771181-1139885271-609190810-3185892870",
    "showInAddressList": None,
    "signInActivity": {
        "lastSignInDateTime": "2024-06-01T07:12:44Z",
        "lastSignInRequestId": "b2b1a2c3-0000-4000-8000-000000000001",
        "lastNonInteractiveSignInDateTime": None,
        "lastNonInteractiveSignInRequestId": None,
        "lastSuccessfulSignInDateTime": "2024-06-01T07:12:44Z",
        "lastSuccessfulSignInRequestId": "b2b1a2c3-0000-4000-8000-000000000001",
    },
    "signInSessionsValidFromDateTime": "2019-07-12T22:40:18Z",
    "state": "WA",
    "streetAddress": "205 108th Ave NE, Suite 400",
    "surname": "Vance",
    "usageLocation": "US",
    "userPrincipalName": "AdeleV@contoso.onmicrosoft.com",
    "userType": "Member",
    f"{EXT}_jobGroupTracker": "JobGroupN",
    f"{EXT}_costCenters": ["CC-42", "CC-43"],
    "businessPhones@odata.type": "#Collection(String)",
    "manager@odata.navigationLink": "users/87d349ed-44d7-43e1-9a83-5f2406dee5bd/manager",
    "manager": {
        "@odata.type": "#microsoft.graph.user",
        "id": "5bde3e51-d13b-4db1-9948-fe4b109d11a7",
        "displayName": "Alex Wilber",
    },
}

MANAGED_DEVICE = {
    "@odata.type": "#microsoft.graph.managedDevice",
    "id": "705c034c-034c-705c-4c03-5c704c035c70",
    "userId": "87d349ed-44d7-43e1-9a83-5f2406dee5bd",
    "deviceName": "DESKTOP-ADELE",
    "managedDeviceOwnerType": "company",
    "enrolledDateTime": "2023-01-10T12:00:00Z",
    "lastSyncDateTime": "2024-06-01T06:00:00Z",
    "complianceState": "compliant",
    "managementAgent": "mdm",
    "operatingSystem": "Windows",
    "osVersion": "10.0.22631.3593",
    "easActivated": False,
    "easActivationDateTime": "0001-01-01T00:00:00Z",
    "isEncrypted": True,
    "freeStorageSpaceInBytes": 107374182400,
    "totalStorageSpaceInBytes": 255999344640,
    "physicalMemoryInBytes": 0,
    "deviceActionResults": [
        {
            "@odata.type": "#microsoft.graph.locateDeviceActionResult",
            "actionName": "locateDevice",
            "actionState": "done",
            "startDateTime": "2024-05-01T10:00:00Z",
            "lastUpdatedDateTime": "2024-05-01T10:01:00Z",
            "deviceLocation": {
                "latitude": 47.64,
                "longitude": -122.13,
                "altitude": 0,
                "heading": 0,
                "speed": 0,
                "horizontalAccuracy": 10.5,
                "verticalAccuracy": 0,
                "lastCollectedDateTime": "2024-05-01T10:00:30Z",
            },
        }
    ],
    "windowsProtectionState": {
        "id": "705c034c-034c-705c-4c03-5c704c035c70",
        "malwareProtectionEnabled": True,
        "deviceState": "clean,rebootPending",
        "productStatus": "noStatus",
        "lastQuickScanDateTime": "2024-06-01T02:00:00Z",
    },
}


def problems_for(type_name: str, obj: dict, **changes: object) -> list[str]:
    obj = copy.deepcopy(obj)
    for key, value in changes.items():
        obj[key] = value
    return schema.check_shape(type_name, obj)


# --- the committed JSON --------------------------------------------------------------------------


def test_committed_json_has_the_documented_shape() -> None:
    document = json.loads(TYPES_JSON.read_text(encoding="utf-8"))
    assert set(document) == {
        "source", "entityTypes", "complexTypes", "enumTypes", "schemaAliases", "entitySets", "singletons",
        "navigationOnlyTypes", "boundOperations",
    }  # fmt: skip
    assert "msgraph-metadata" in document["source"] and "extract_csdl.py" in document["source"]
    assert set(document["entityTypes"]) == {G + name for name in [*SERVED, "entity"]}
    for entity in document["entityTypes"].values():
        assert set(entity) == {
            "baseType", "openType", "abstract", "properties", "navigationProperties", "hasStream", "filterable",
        }  # fmt: skip
        for nav in entity["navigationProperties"].values():
            assert set(nav) == {"type", "collection", "containsTarget"}
    assert set(document["navigationOnlyTypes"]) == {G + "directory", G + "deviceManagement"}
    for complex_ in document["complexTypes"].values():
        assert set(complex_) == {"baseType", "openType", "properties"}
    for enum in document["enumTypes"].values():
        assert set(enum) == {"members", "isFlags"} and enum["members"]
    assert TYPES_JSON.stat().st_size < 1_000_000


def test_committed_json_is_closed_and_canonical() -> None:
    text = TYPES_JSON.read_text(encoding="utf-8")
    document = json.loads(text)
    structured = document["entityTypes"] | document["complexTypes"]
    known = set(structured) | set(document["enumTypes"])
    for name, info in structured.items():
        assert info["baseType"] is None or info["baseType"] in structured, name
        for prop, p in info["properties"].items():
            assert set(p) == {"type", "collection", "nullable"}, (name, prop)
            assert p["type"].startswith("Edm.") or p["type"] in known, (name, prop)
            assert not p["type"].startswith("graph."), (name, prop)
    # Written by the extractor's own serializer: hand edits or a reformat would show up here.
    assert extract_csdl.dumps(document) + "\n" == text
    assert list(document) == sorted(document)
    for section in (
        "entityTypes",
        "complexTypes",
        "enumTypes",
        "entitySets",
        "singletons",
        "boundOperations",
    ):
        assert list(document[section]) == sorted(document[section])


def test_user_facts() -> None:
    props = schema.structural_properties("user")
    upn = props["userPrincipalName"]
    assert (upn.type, upn.collection, upn.kind) == ("Edm.String", False, "primitive")
    assert props["accountEnabled"].type == "Edm.Boolean"
    phones = props["businessPhones"]
    assert (phones.type, phones.collection, phones.nullable) == ("Edm.String", True, False)
    assert phones.full_type == "Collection(Edm.String)"
    assert props["proxyAddresses"].full_type == "Collection(Edm.String)"
    assert props["createdDateTime"].type == "Edm.DateTimeOffset"
    assert props["assignedLicenses"].full_type == "Collection(microsoft.graph.assignedLicense)"
    assert props["identities"].full_type == "Collection(microsoft.graph.objectIdentity)"
    for name, type_name in {
        "passwordProfile": "passwordProfile",
        "signInActivity": "signInActivity",
        "employeeOrgData": "employeeOrgData",
        "onPremisesExtensionAttributes": "onPremisesExtensionAttributes",
    }.items():
        assert (props[name].type, props[name].kind) == (G + type_name, "complex")

    attrs = schema.structural_properties("onPremisesExtensionAttributes")
    assert set(attrs) == {f"extensionAttribute{n}" for n in range(1, 16)}
    assert {p.type for p in attrs.values()} == {"Edm.String"}

    assert schema.is_open_type("user") and schema.is_open_type("microsoft.graph.group")
    for closed in ("managedDevice", "domain", "profilePhoto", "entity"):
        assert not schema.is_open_type(closed)

    assert schema.base_types("user") == [G + "directoryObject", G + "entity"]
    assert list(props)[:2] == ["id", "deletedDateTime"]  # base types' properties first
    assert props["id"].declared_by == G + "entity" and props["id"].nullable is False
    assert props["displayName"].declared_by == G + "user"

    nav = schema.navigation_properties("user")
    assert (nav["manager"].type, nav["manager"].collection) == (G + "directoryObject", False)
    assert (nav["memberOf"].type, nav["memberOf"].collection) == (G + "directoryObject", True)
    assert nav["photo"].type == G + "profilePhoto"
    assert "manager" not in props


def test_other_served_types() -> None:
    group = schema.structural_properties("group")
    assert group["groupTypes"].full_type == "Collection(Edm.String)"
    for flag in ("securityEnabled", "mailEnabled"):
        assert group[flag].type == "Edm.Boolean"
    assert group["mailNickname"].type == "Edm.String"
    assert "members" in schema.navigation_properties("group")
    assert "owners" in schema.navigation_properties("group")

    md_nav = schema.navigation_properties("managedDevice")
    wps = md_nav["windowsProtectionState"]
    assert (wps.type, wps.collection) == (G + "windowsProtectionState", False)
    md = schema.structural_properties("managedDevice")
    assert md["complianceState"].kind == "enum"
    assert "compliant" in schema.enum_type("complianceState").members
    assert md["freeStorageSpaceInBytes"].type == "Edm.Int64"

    assert schema.enum_type("windowsDeviceHealthState").is_flags
    assert schema.structural_properties("profilePhoto").keys() >= {"id", "height", "width"}
    app = schema.structural_properties("application")
    assert app["keyCredentials"].type == G + "keyCredential"
    assert app["passwordCredentials"].type == G + "passwordCredential"
    assert schema.structural_properties("keyCredential")["key"].type == "Edm.Binary"
    assert schema.structural_properties("extensionProperty").keys() >= {"name", "dataType", "targetObjects"}
    assert schema.structural_properties("device")["deviceId"].type == "Edm.String"


def test_paths_facts() -> None:
    """The entity container, the alias and bound operations, as Graph's v1.0 CSDL declares them."""
    assert schema.schema_alias("graph") == "microsoft.graph"
    assert schema.cast_type_name("graph.user") == schema.cast_type_name("microsoft.graph.user") == G + "user"
    assert schema.cast_type_name("beta.user") is None
    assert schema.entity_set_type("users") == G + "user"
    assert schema.entity_set_type("contacts") == G + "orgContact"
    assert schema.entity_set_type("administrativeUnits") is None  # v1.0: only /directory/administrativeUnits
    assert schema.singleton_type("deviceManagement") == G + "deviceManagement"
    detected = schema.navigation_property("deviceManagement", "detectedApps")
    assert (detected.type, detected.collection, detected.contains_target) == (G + "detectedApp", True, True)
    assert schema.navigation_property("managedDevice", "detectedApps") is None  # beta only
    assert schema.navigation_property("detectedApp", "managedDevices").type == G + "managedDevice"
    assert schema.navigation_property("directory", "deletedItems").type == G + "directoryObject"
    assert schema.bound_operation("user", "delta", collection=True) == "Function"
    assert schema.bound_operation("managedDevice", "delta", collection=True) is None  # no delta for Intune
    assert schema.bound_operation("directoryObject", "getByIds", collection=True) == "Action"
    assert schema.bound_operation("user", "restore", collection=False) == "Action"  # bound to directoryObject
    assert schema.has_stream("profilePhoto") and not schema.has_stream("user")
    assert schema.derives_from("group", "directoryObject") and not schema.derives_from(
        "directoryObject", "user"
    )


def test_managed_device_filterable_properties_from_descriptions() -> None:
    filterable = schema.filterable_properties("managedDevice")
    assert filterable["complianceState"] == ("eq", "or")
    assert filterable["deviceName"] == ("eq", "contains")
    assert filterable["lastSyncDateTime"] == ("lt", "gt")
    assert filterable["azureADDeviceId"] == ("eq",)
    assert filterable["userPrincipalName"] == ("eq", "ne")
    assert "userId" not in filterable and "deviceEnrollmentType" not in filterable
    assert len(filterable) == 20
    assert schema.filterable_properties("user") == {}


def test_name_forms_and_unknown_names() -> None:
    user = schema.entity_type("user")
    assert user is schema.entity_type("microsoft.graph.user") is schema.entity_type("#microsoft.graph.user")
    assert user is schema.entity_type("graph.user")
    assert (user.name, user.short_name, user.base_type) == (G + "user", "user", G + "directoryObject")
    assert user.open_type and not user.abstract and "id" not in user.properties  # own properties only
    assert schema.entity_type("entity").abstract
    with pytest.raises(KeyError):
        schema.entity_type("microsoft.graph.calendar")  # in Graph, not extracted
    with pytest.raises(KeyError):
        schema.entity_type("passwordProfile")  # a complex type
    with pytest.raises(KeyError):
        schema.check_shape("nonsense", {})


def test_structural_properties_returns_a_copy() -> None:
    schema.structural_properties("user").clear()
    assert "id" in schema.structural_properties("user")


# --- check_shape -----------------------------------------------------------------------------------


def test_realistic_objects_pass() -> None:
    assert schema.check_shape("user", USER) == []
    assert schema.check_shape("microsoft.graph.directoryObject", USER) == []  # resolved by @odata.type
    assert schema.check_shape("managedDevice", MANAGED_DEVICE) == []
    group = {
        "id": "02bd9fd6-8f93-4758-87c3-1fb73740a315",
        "createdDateTime": "2017-07-31T18:56:16Z",
        "description": "Welcome to the HR Taskforce team.",
        "displayName": "HR Taskforce",
        "groupTypes": ["Unified"],
        "mail": "HRTaskforce@contoso.onmicrosoft.com",
        "mailEnabled": True,
        "mailNickname": "HRTaskforce",
        "membershipRule": None,
        "securityEnabled": False,
        "visibility": "Private",
        "assignedLicenses": [],
        f"{EXT}_region": "EMEA",
        "members@delta": [{"@odata.type": "#microsoft.graph.user", "id": "a1"}],
        "members": [{"@odata.type": "#microsoft.graph.user", "id": "a1", "displayName": "A"}],
    }
    assert schema.check_shape("group", group) == []
    application = {
        "id": "03ef14b0-ca33-4840-8f4f-d6e91916010e",
        "appId": "631a96bc-a705-4eda-9f99-fdaf9f54f6a2",
        "displayName": "Connector",
        "keyCredentials": [
            {
                "customKeyIdentifier": "1F8B0E8D4C2A",
                "displayName": "CN=connector",
                "endDateTime": "2026-01-01T00:00:00Z",
                "key": None,
                "keyId": "dcd3e0b3-a9d7-4d1a-8b1c-8e6a2e0e0a1b",
                "startDateTime": "2024-01-01T00:00:00Z",
                "type": "AsymmetricX509Cert",
                "usage": "Verify",
            }
        ],
        "passwordCredentials": [],
        "requiredResourceAccess": [
            {
                "resourceAppId": "00000003-0000-0000-c000-000000000000",
                "resourceAccess": [{"id": "df021288-bdef-4463-88db-98f22de89214", "type": "Role"}],
            }
        ],
    }
    assert schema.check_shape("application", application) == []
    removed = {"@odata.type": "#microsoft.graph.user", "id": "x", "@removed": {"reason": "changed"}}
    assert schema.check_shape("user", removed) == []


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"favouriteColour": "blue"}, "user.favouriteColour: not a property of microsoft.graph.user"),
        ({"accountEnabled": "true"}, "user.accountEnabled: expected Edm.Boolean, got 'true'"),
        ({"displayName": 42}, "user.displayName: expected Edm.String, got int"),
        ({"deletedDateTime": 1}, "user.deletedDateTime: expected Edm.DateTimeOffset, got int"),
        (
            {"createdDateTime": "2019-07-12 22:40:18"},
            "user.createdDateTime: expected Edm.DateTimeOffset, got '2019-07-12 22:40:18'",
        ),
        ({"createdDateTime": "2019-07-12T22:40:18"}, "user.createdDateTime: expected Edm.DateTimeOffset"),
        ({"createdDateTime": "2019-02-30T22:40:18Z"}, "user.createdDateTime: expected Edm.DateTimeOffset"),
        ({"businessPhones": None}, "user.businessPhones: expected Collection(Edm.String), got null"),
        ({"businessPhones": "+1 425"}, "user.businessPhones: expected Collection(Edm.String), got '+1 425'"),
        ({"businessPhones": [None]}, "user.businessPhones[0]: expected Edm.String, got null (not nullable)"),
        ({"birthday": None}, "user.birthday: expected Edm.DateTimeOffset, got null (not nullable)"),
        ({"passwordProfile": "secret"}, "user.passwordProfile: expected microsoft.graph.passwordProfile"),
        (
            {"passwordProfile": {"forceChangePasswordNextSignIn": "yes"}},
            "user.passwordProfile.forceChangePasswordNextSignIn: expected Edm.Boolean, got 'yes'",
        ),
        ({"manager": "5bde3e51"}, "user.manager: expected microsoft.graph.directoryObject object"),
        ({"manager": {"id": "x", "shoeSize": 7}}, "user.manager.shoeSize: not a property"),
        ({"@odata.type": "#microsoft.graph.group"}, "user.@odata.type: microsoft.graph.group is not"),
        ({"@odata.type": "#microsoft.graph.calendar"}, "user.@odata.type: unknown type"),
        ({"extension_b7d8e648520f41d3b9c0fdeb91768a0a_x": {"a": 1}}, f"user.{EXT}_x: expected a primitive"),
        ({"extension_b7d8e648_x": "short app id"}, "user.extension_b7d8e648_x: not a property"),
    ],
)
def test_rejections_name_the_path(changes: dict, expected: str) -> None:
    problems = problems_for("user", USER, **changes)
    assert len(problems) == 1, problems
    assert problems[0].startswith(expected), problems


def test_wrong_type_inside_complex_value() -> None:
    user = copy.deepcopy(USER)
    user["onPremisesExtensionAttributes"]["extensionAttribute1"] = 7
    assert schema.check_shape("user", user) == [
        "user.onPremisesExtensionAttributes.extensionAttribute1: expected Edm.String, got int"
    ]
    user = copy.deepcopy(USER)
    user["onPremisesExtensionAttributes"]["extensionAttribute16"] = "x"
    assert schema.check_shape("user", user) == [
        "user.onPremisesExtensionAttributes.extensionAttribute16: "
        "not a property of microsoft.graph.onPremisesExtensionAttributes"
    ]


def test_bad_guids() -> None:
    for bad in ("c7df27602c814ef7b5785b5392b571df", "{c7df2760-2c81-4ef7-b578-5b5392b571df}", "nope", ""):
        user = copy.deepcopy(USER)
        user["assignedLicenses"][1]["skuId"] = bad
        problems = schema.check_shape("user", user)
        assert len(problems) == 1 and problems[0].startswith(
            "user.assignedLicenses[1].skuId: expected Edm.Guid, got "
        ), problems
    user = copy.deepcopy(USER)
    user["assignedLicenses"][0]["disabledPlans"].append(12)
    assert schema.check_shape("user", user) == [
        "user.assignedLicenses[0].disabledPlans[1]: expected Edm.Guid, got int"
    ]


def test_enums() -> None:
    problems = problems_for("managedDevice", MANAGED_DEVICE, complianceState="Compliant")
    assert problems == [
        "managedDevice.complianceState: expected a member of microsoft.graph.complianceState, got 'Compliant'"
    ]
    assert problems_for("managedDevice", MANAGED_DEVICE, complianceState=2) == [
        "managedDevice.complianceState: expected microsoft.graph.complianceState member name, got int"
    ]
    device = copy.deepcopy(MANAGED_DEVICE)
    device["windowsProtectionState"]["deviceState"] = "clean,dirty"  # flags: each part must be a member
    assert schema.check_shape("managedDevice", device) == [
        "managedDevice.windowsProtectionState.deviceState: "
        "expected a member of microsoft.graph.windowsDeviceHealthState, got 'clean,dirty'"
    ]
    user = copy.deepcopy(USER)
    user["mailboxSettings"]["workingHours"]["daysOfWeek"].append("funday")
    assert schema.check_shape("user", user) == [
        "user.mailboxSettings.workingHours.daysOfWeek[5]: "
        "expected a member of microsoft.graph.dayOfWeek, got 'funday'"
    ]


def test_derived_complex_types_by_odata_type() -> None:
    device = copy.deepcopy(MANAGED_DEVICE)
    del device["deviceActionResults"][0]["@odata.type"]  # deviceLocation is only on the derived type
    assert schema.check_shape("managedDevice", device) == [
        "managedDevice.deviceActionResults[0].deviceLocation: "
        "not a property of microsoft.graph.deviceActionResult"
    ]
    device = copy.deepcopy(MANAGED_DEVICE)
    device["deviceActionResults"][0]["deviceLocation"]["latitude"] = None
    assert schema.check_shape("managedDevice", device) == [
        "managedDevice.deviceActionResults[0].deviceLocation.latitude: "
        "expected Edm.Double, got null (not nullable)"
    ]
    user = copy.deepcopy(USER)
    user["mailboxSettings"]["workingHours"]["timeZone"] = {
        "@odata.type": "#microsoft.graph.customTimeZone",
        "name": "Customized Time Zone",
        "bias": 360,
        "standardOffset": {"time": "02:00:00.0000000", "dayOccurrence": 1, "dayOfWeek": "sunday"},
    }
    assert schema.check_shape("user", user) == []
    user["mailboxSettings"]["workingHours"]["timeZone"]["bias"] = 1.5
    assert schema.check_shape("user", user) == [
        "user.mailboxSettings.workingHours.timeZone.bias: expected Edm.Int32, got float"
    ]


def test_extension_property_on_a_closed_type() -> None:
    domain = {
        "id": "contoso.com",
        "authenticationType": "Managed",
        "isAdminManaged": False,
        "isDefault": True,
        "isInitial": False,
        "isRoot": True,
        "isVerified": True,
        "supportedServices": ["Email", "OfficeCommunicationsOnline"],
        "passwordValidityPeriodInDays": 2147483647,
        "state": None,
    }
    assert schema.check_shape("domain", domain) == []
    domain[f"{EXT}_tier"] = "gold"
    assert schema.check_shape("domain", domain) == [
        f"domain.{EXT}_tier: extension property on microsoft.graph.domain, which is not an open type"
    ]


@pytest.mark.parametrize(
    ("type_name", "prop", "good", "bad"),
    [
        ("detectedApp", "sizeInByte", [0, 2**40], [True, 1.0, "12", 2**63]),
        ("detectedApp", "deviceCount", [0, -1], [2**31, False]),
        ("windowsProtectionState", "lastReportedDateTime", ["2024-01-02T03:04:05.5+05:30"], ["2024-01-02"]),
        ("keyCredential", "key", ["TUlJQw==", "TUlJQw", "a-_b", ""], ["not base64!", "TUlJQ==="]),
        ("workingHours", "startTime", ["08:00:00", "23:59:59.9999999", "08:00"], ["24:00:00", "8am"]),
        ("deviceGeoLocation", "latitude", [1, 1.5, -0.0], ["1.5", True]),
    ],
)
def test_primitive_formats(type_name: str, prop: str, good: list, bad: list) -> None:
    for value in good:
        assert schema.check_shape(type_name, {prop: value}) == [], value
    for value in bad:
        problems = schema.check_shape(type_name, {prop: value})
        assert len(problems) == 1 and problems[0].startswith(f"{type_name}.{prop}: expected Edm."), value


def test_string_formats_without_a_served_property() -> None:
    check = schema._primitive_problem
    for good in ("P1D", "PT0S", "-P1DT2H30M", "PT1.5S", "P1Y2M3W4D"):
        assert check("Edm.Duration", good) is None, good
    for bad in ("P", "PT", "P1DT", "1D", "P1.5D"):
        assert check("Edm.Duration", bad), bad
    assert check("Edm.Date", "2024-02-29") is None
    for bad in ("2023-02-29", "20240229", "2024-02-29T00:00:00Z"):
        assert check("Edm.Date", bad), bad
    assert check("Edm.Guid", "C7DF2760-2C81-4EF7-B578-5B5392B571DF") is None
    assert check("Edm.Stream", object()) is None


def test_not_an_object() -> None:
    assert schema.check_shape("user", ["id"]) == ["user: expected microsoft.graph.user object, got list"]


# --- the extractor, on an inline CSDL --------------------------------------------------------------

MINI_CSDL = """<?xml version="1.0" encoding="utf-8"?>
<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx">
  <edmx:DataServices>
    <Schema Namespace="microsoft.graph" Alias="graph" xmlns="http://docs.oasis-open.org/odata/ns/edm">
      <EnumType Name="colour"><Member Name="red" Value="0"/><Member Name="blue" Value="1"/></EnumType>
      <EnumType Name="unused"><Member Name="x" Value="0"/></EnumType>
      <EnumType Name="perms" IsFlags="true">
        <Member Name="read" Value="1"/><Member Name="write" Value="2"/>
      </EnumType>
      <ComplexType Name="shape" Abstract="true"><Property Name="colour" Type="graph.colour"/></ComplexType>
      <ComplexType Name="circle" BaseType="graph.shape">
        <Property Name="radius" Type="Edm.Double"/>
      </ComplexType>
      <ComplexType Name="label">
        <Property Name="perms" Type="microsoft.graph.perms" Nullable="false"/>
      </ComplexType>
      <ComplexType Name="unreached"><Property Name="x" Type="Edm.String"/></ComplexType>
      <EntityType Name="entity" Abstract="true">
        <Key><PropertyRef Name="id"/></Key>
        <Property Name="id" Type="Edm.String" Nullable="false"/>
      </EntityType>
      <EntityType Name="thing" BaseType="graph.entity" OpenType="true">
        <Property Name="zeta" Type="Edm.String"/>
        <Property Name="alpha" Type="Collection(graph.shape)" Nullable="false"/>
        <Property Name="tag" Type="self.label"/>
        <NavigationProperty Name="parent" Type="graph.thing"/>
        <NavigationProperty Name="others" Type="Collection(graph.other)" ContainsTarget="true"/>
      </EntityType>
      <EntityType Name="other" BaseType="graph.entity">
        <Property Name="u" Type="graph.unreached"/>
      </EntityType>
      <EntityType Name="root" BaseType="graph.entity">
        <NavigationProperty Name="things" Type="Collection(graph.thing)" ContainsTarget="true"/>
      </EntityType>
      <EntityType Name="media" BaseType="graph.entity" HasStream="true"/>
      <Function Name="delta" IsBound="true" EntitySetPath="bindingParameter">
        <Parameter Name="bindingParameter" Type="Collection(graph.thing)"/>
        <ReturnType Type="Collection(graph.thing)"/>
      </Function>
      <Action Name="poke" IsBound="true"><Parameter Name="bindingParameter" Type="graph.entity"/></Action>
      <Action Name="ignored" IsBound="true"><Parameter Name="bindingParameter" Type="graph.other"/></Action>
      <EntityContainer Name="GraphService">
        <EntitySet Name="things" EntityType="microsoft.graph.thing"/>
        <Singleton Name="root" Type="graph.root"/>
      </EntityContainer>
      <Annotations Target="microsoft.graph.thing/zeta">
        <Annotation Term="Org.OData.Core.V1.Description" String="Zeta. Supports $filter operator 'eq' and 'or'."/>
      </Annotations>
      <Annotations Target="graph.thing/alpha">
        <Annotation Term="Org.OData.Core.V1.Description" String="Alpha. Supports: $select."/>
      </Annotations>
    </Schema>
    <Schema Namespace="microsoft.graph.security" Alias="self" xmlns="http://docs.oasis-open.org/odata/ns/edm">
      <ComplexType Name="label"><Property Name="perms" Type="graph.perms" Nullable="false"/></ComplexType>
    </Schema>
  </edmx:DataServices>
</edmx:Edmx>
"""


def test_extractor_on_inline_csdl() -> None:
    document = extract_csdl.extract(ET.fromstring(MINI_CSDL), ("microsoft.graph.thing",), (G + "root",))
    assert list(document["entityTypes"]) == [G + "entity", G + "thing"]
    thing = document["entityTypes"][G + "thing"]
    assert thing["baseType"] == G + "entity" and thing["openType"] and not thing["abstract"]
    assert list(thing["properties"]) == ["zeta", "alpha", "tag"]  # declaration order kept
    assert thing["properties"]["zeta"] == {"type": "Edm.String", "collection": False, "nullable": True}
    assert thing["properties"]["alpha"] == {"type": G + "shape", "collection": True, "nullable": False}
    assert thing["properties"]["tag"]["type"] == "microsoft.graph.security.label"  # alias "self"
    assert thing["navigationProperties"] == {
        "parent": {"type": G + "thing", "collection": False, "containsTarget": False},
        "others": {"type": G + "other", "collection": True, "containsTarget": True},
    }
    assert thing["filterable"] == {"zeta": ["eq", "or"]} and not thing["hasStream"]
    assert document["schemaAliases"] == {"graph": "microsoft.graph", "self": "microsoft.graph.security"}
    assert document["entitySets"] == {"things": G + "thing"}
    assert document["singletons"] == {"root": G + "root"}
    assert document["navigationOnlyTypes"] == {
        G + "root": {
            "baseType": G + "entity",
            "navigationProperties": {
                "things": {"type": G + "thing", "collection": True, "containsTarget": True}
            },
        }
    }
    # Operations bound to extracted types only (``ignored`` is bound to ``other``, which is not extracted).
    assert document["boundOperations"] == {
        f"Collection({G}thing)": {"delta": "Function"},
        G + "entity": {"poke": "Action"},
    }
    # circle is derived from a reachable type; navigation targets are not followed.
    assert set(document["complexTypes"]) == {G + "shape", G + "circle", "microsoft.graph.security.label"}
    assert document["complexTypes"][G + "circle"]["baseType"] == G + "shape"
    assert document["enumTypes"] == {
        G + "colour": {"members": ["red", "blue"], "isFlags": False},
        G + "perms": {"members": ["read", "write"], "isFlags": True},
    }
    assert document["entityTypes"][G + "entity"]["abstract"]
    with pytest.raises(extract_csdl.CsdlError):
        extract_csdl.extract(ET.fromstring(MINI_CSDL), ("microsoft.graph.nothing",), ())
    with pytest.raises(extract_csdl.CsdlError, match="not in the CSDL"):
        extract_csdl.extract(ET.fromstring(MINI_CSDL), ("microsoft.graph.thing",), (G + "nowhere",))


CLI = "import sys; from localgraph.metadata.extract_csdl import main; sys.exit(main())"


def test_extractor_cli_fails_cleanly(tmp_path: Path) -> None:
    csdl = tmp_path / "mini.csdl"
    csdl.write_text(MINI_CSDL, encoding="utf-8")
    out = tmp_path / "types.json"
    code = subprocess.run(
        [sys.executable, "-c", CLI, str(csdl), "-o", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    # The real type list is not in the mini CSDL: the CLI fails cleanly without writing.
    assert code.returncode == 1 and "microsoft.graph.user is not in the CSDL" in code.stderr
    assert not out.exists()


def test_schema_does_not_read_the_reference_folder_or_run_the_extractor() -> None:
    """Load the schema in a fresh interpreter and record every file it opens."""
    script = textwrap.dedent(
        """
        import sys
        opened = []
        sys.addaudithook(lambda event, args: opened.append(str(args[0])) if event == "open" else None)
        from localgraph import schema
        assert schema.check_shape("user", {"id": "x", "displayName": "y"}) == []
        assert schema.structural_properties("group")
        print("EXTRACTOR_IMPORTED" if "localgraph.metadata.extract_csdl" in sys.modules else "OK")
        for path in opened:
            print(path)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True
    )
    lines = result.stdout.splitlines()
    assert lines[0] == "OK"
    assert any(line.endswith("graph-v1.0-types.json") for line in lines[1:])
    assert not [line for line in lines[1:] if "/work/shared" in line or line.endswith(".csdl")]
