"""A deterministic generated tenant: the same seed and shape give the same directory.

The data is shaped like a real Entra ID tenant where the connector's behaviour depends on it: names with
apostrophes and non-ASCII letters, guests (``#EXT#`` UPNs), disabled accounts, users synced from
on-premises AD (with ``onPremisesExtensionAttributes``), a directory extension
``extension_{appId}_{name}``, managers; security, Microsoft 365, mail-enabled security and distribution
groups, nested groups, a few very large groups; Entra devices, Intune managed devices with
``windowsProtectionState`` and detected apps, organizational contacts, applications.
"""

from __future__ import annotations

import functools
import gc
import math
import random
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from localgraph.tenant import DetectedApp, GroupIds, ManagedDevice, Tenant

FIRST_NAMES = [
    "Adele", "Alex", "Allan", "Bianca", "Christie", "Diego", "Emily", "Enrico", "Grady", "Henrietta",
    "Isaiah", "Johanna", "Joni", "Lee", "Lidia", "Lynne", "Megan", "Miriam", "Nestor", "Patti", "Pradeep",
    "Zoë", "Søren", "José", "Łukasz", "Ólafur", "Chloé", "Jürgen", "Ångela", "Nguyễn", "Siobhán", "Renée",
    "Ana María", "Björn", "Dvořák", "François", "Mäja", "Şule", "Tomás", "Zdeněk", "D'Arcy", "Mary-Kate",
]  # fmt: skip
LAST_NAMES = [
    "Vance", "Wilber", "Deyoung", "Salvaggio", "Cline", "Braun", "Gonzalez", "Holt", "Lambert", "Mittal",
    "O'Brien", "D'Angelo", "O'Neill", "Müller", "Ångström", "Øvergaard", "Çelik", "Nuñez", "Kowalski",
    "Sánchez", "Virtanen", "Järvinen", "Dubois", "Lefèvre", "Nakamura", "Zhang", "Smith-Jones",
    "van der Berg", "Nguyen", "Hernández", "Kristiansen", "Łęcki", "Østby", "MacDonald", "Fitzgerald",
    "Papadopoulos",
]  # fmt: skip
DEPARTMENTS = [
    "Sales", "Marketing", "Finance", "Human Resources", "IT-Service", "IT-Infrastructure", "Legal",
    "Research & Development", "Operations", "Customer Success", "Procurement", "Facilities",
]  # fmt: skip
JOB_TITLES = [
    "Engineer", "Senior Engineer", "Analyst", "Manager", "Director", "Specialist", "Consultant",
    "Coordinator", "Administrator", "Architect", "Assistant", "Team Lead",
]  # fmt: skip
PLACES = [
    ("Helsinki", "Finland", "FI", "Uusimaa"), ("Espoo", "Finland", "FI", "Uusimaa"),
    ("Stockholm", "Sweden", "SE", "Stockholm"), ("Oslo", "Norway", "NO", "Oslo"),
    ("München", "Germany", "DE", "Bayern"), ("Seattle", "United States", "US", "WA"),
    ("Zürich", "Switzerland", "CH", "ZH"), ("Montréal", "Canada", "CA", "QC"),
    ("Kraków", "Poland", "PL", "Małopolskie"), ("London", "United Kingdom", "GB", "England"),
]  # fmt: skip
SKUS = [
    "05e9a617-0261-4cee-bb44-138d3ef5d965",  # Microsoft 365 E3
    "06ebc4ee-1bb5-47dd-8120-11324bc54e06",  # Microsoft 365 E5
    "66b55226-6b4f-492c-910c-a3b7a3c9d993",  # Microsoft 365 F3
    "c7df2760-2c81-4ef7-b578-5b5392b571df",  # Office 365 E5
]
GROUP_TOPICS = [
    "Finance", "Payroll", "Apollo", "Helios", "Field Sales", "Support Tier 2", "Data Platform", "Legal Hold",
    "Onboarding", "Équipe Montréal", "Zürich Office", "O'Hare Logistics", "Kraków Dev", "Board", "Interns",
]  # fmt: skip
EXTENSION_NAMES = ("costCenter", "employeeClass")
STREETS = ["Main", "Harbour", "Station", "Church"]
CORP_DN = "DC=corp,DC=contoso,DC=example"
GROUP_KINDS = ("security", "m365", "mailsecurity", "distribution")


@dataclass(frozen=True)
class TenantShape:
    """How big the generated tenant is. Defaults scale with ``users``."""

    users: int = 200
    groups: int | None = None  # default: users // 10, at least 10
    memberships: int | None = None  # direct memberships; default: users * 10
    seed: int = 1
    guest_ratio: float = 0.05
    disabled_ratio: float = 0.05
    synced_ratio: float = 0.4
    devices: int | None = None  # default: users // 10
    contacts: int | None = None  # default: users // 50
    applications: int = 8

    def group_count(self) -> int:
        return self.groups if self.groups is not None else max(10, self.users // 10)

    def membership_count(self) -> int:
        return self.memberships if self.memberships is not None else self.users * 10


def _uuid(rng: random.Random) -> str:
    """``str(uuid.UUID(int=rng.getrandbits(128), version=4))``, without the UUID object (a million users
    draw millions of them)."""
    value = rng.getrandbits(128)
    value = (value & ~(0xC000 << 48) | (0x8000 << 48)) & ~(0xF000 << 64) | (4 << 76)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@functools.lru_cache(maxsize=4096)
def _ascii(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in folded.lower() if ch.isalnum() or ch in "'-")


def _sid(rng: random.Random, relative_id: int) -> str:
    """An on-premises AD security identifier (domain SID plus a relative id)."""
    return f"S-1-5-21-{rng.randrange(10**9)}-{rng.randrange(10**9)}-{relative_id}"


def _timestamp(rng: random.Random, start: datetime, days: int) -> str:
    """``(start + timedelta(seconds=rng.randrange(days * 86400))).strftime("%Y-%m-%dT%H:%M:%SZ")``, with the
    date part formatted once per day (strftime was a tenth of a large tenant's build)."""
    offset = rng.randrange(days * 86400) + start.hour * 3600 + start.minute * 60 + start.second
    day, second = divmod(offset, 86400)
    key = (start, day)
    date = _DATES.get(key)
    if date is None:
        midnight = start.replace(hour=0, minute=0, second=0, microsecond=0)
        date = _DATES[key] = (midnight + timedelta(days=day)).strftime("%Y-%m-%d")
    return f"{date}T{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}Z"


_DATES: dict[tuple[datetime, int], str] = {}


def build_tenant(shape: TenantShape) -> Tenant:
    """Generate the tenant. The garbage collector is paused while millions of small objects are made
    and the result is frozen out of later collections, so a 100,000-user tenant builds in seconds and
    does not slow the server's collections afterwards."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _build(shape)
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def _build(shape: TenantShape) -> Tenant:
    rng = random.Random(shape.seed)
    tenant_id = _uuid(rng)
    domain = f"contoso{shape.seed:x}.onmicrosoft.com"
    tenant = Tenant(tenant_id, domain)
    tenant.verified_domains.append("contoso.example")
    epoch = datetime(2019, 1, 1, tzinfo=UTC)

    extension_app = _applications(tenant, rng, shape.applications)
    app_hex = extension_app.props["appId"].replace("-", "")
    extension_names = [f"extension_{app_hex}_{name}" for name in EXTENSION_NAMES]
    for name in extension_names:
        tenant.extension_properties[name] = {
            "id": _uuid(rng),
            "name": name,
            "appDisplayName": extension_app.props["displayName"],
            "dataType": "String",
            "isMultiValued": False,
            "isSyncedFromOnPremises": False,
            "targetObjects": ["User"],
        }

    employees: list[str] = []
    user_ids = _users(tenant, rng, shape, epoch, extension_names, employees)
    group_ids = _groups(tenant, rng, shape, epoch)
    _memberships(tenant, rng, shape, user_ids, group_ids, employees)
    _devices(tenant, rng, shape, epoch, user_ids)
    _contacts(tenant, rng, shape.contacts if shape.contacts is not None else shape.users // 50)
    # Compact from here on (the same answers): properties packed until changed, a member's groups a tuple.
    for obj in tenant.objects.values():
        obj.pack()
    # The generated state is the starting point: delta rounds report changes made after it.
    tenant.log.clear()
    tenant._log_seqs.clear()
    return tenant


def _create_undated(tenant: Tenant, kind: str, props: dict) -> None:
    """Create an object of a type without ``createdDateTime`` in v1.0 (device, servicePrincipal,
    orgContact): the store stamps one with the current time, which would make the generated tenant
    depend on the clock and carry a property Graph does not have."""
    tenant.create(kind, props).props.pop("createdDateTime", None)


def _applications(tenant: Tenant, rng: random.Random, count: int):
    extension_app = None
    for index in range(max(1, count)):
        name = "Tenant Schema Extension App" if index == 0 else f"Line-of-business App {index:02d}"
        app = tenant.create(
            "application",
            {
                "id": _uuid(rng),
                "appId": _uuid(rng),
                "displayName": name,
                "signInAudience": "AzureADMyOrg",
                "createdDateTime": "2020-03-01T08:00:00Z",
                "identifierUris": [],
                "tags": [],
            },
        )
        _create_undated(
            tenant,
            "servicePrincipal",
            {
                "id": _uuid(rng),
                "appId": app.props["appId"],
                "displayName": name,
                "accountEnabled": True,
                "servicePrincipalType": "Application",
                "appOwnerOrganizationId": tenant.tenant_id,
                "tags": [],
            },
        )
        extension_app = extension_app or app
    return extension_app


def _users(tenant, rng, shape: TenantShape, epoch, extension_names, employees: list[str]) -> list[str]:
    """The users (packed as they are made: a million of them unpacked would take several gigabytes);
    ``employees`` receives the ids of those of type Member."""
    ids: list[str] = []
    used_nicknames: set[str] = set()
    heads_by_department: dict[str, list[str]] = {}
    for index in range(shape.users):
        first = rng.choice(FIRST_NAMES)
        last = rng.choice(LAST_NAMES)
        base = f"{_ascii(first)}.{_ascii(last)}".strip(".") or f"user{index}"
        nickname = base if base not in used_nicknames else f"{base}{index}"
        used_nicknames.add(nickname)
        department = rng.choice(DEPARTMENTS)
        city, country, usage, state = rng.choice(PLACES)
        guest = rng.random() < shape.guest_ratio
        synced = not guest and rng.random() < shape.synced_ratio
        created = _timestamp(rng, epoch, 2000)
        user_id = _uuid(rng)
        props = {
            "id": user_id,
            "displayName": f"{first} {last}",
            "givenName": first,
            "surname": last,
            "accountEnabled": rng.random() >= shape.disabled_ratio,
            "createdDateTime": created,
            "businessPhones": [f"+358 9 {rng.randrange(1000000, 9999999)}"] if rng.random() < 0.7 else [],
            "otherMails": [],
            "proxyAddresses": [],
            "imAddresses": [],
            "identities": [],
            "assignedLicenses": [],
        }
        if guest:
            external_domain = rng.choice(["fabrikam.com", "example.org", "partner.example"])
            mail = f"{nickname}@{external_domain}"
            props.update(
                {
                    "userPrincipalName": f"{mail.replace('@', '_')}#EXT#@{tenant.domain}",
                    "mail": mail,
                    "mailNickname": mail.replace("@", "_"),
                    "userType": "Guest",
                    "creationType": "Invitation",
                    "externalUserState": rng.choice(["Accepted", "Accepted", "PendingAcceptance"]),
                    "otherMails": [mail],
                    "identities": [
                        {
                            "signInType": "userPrincipalName",
                            "issuer": external_domain,
                            "issuerAssignedId": mail,
                        }
                    ],
                }
            )
        else:
            upn = f"{nickname}@{tenant.domain}"
            props.update(
                {
                    "userPrincipalName": upn,
                    "mail": f"{nickname}@contoso.example",
                    "mailNickname": nickname,
                    "userType": "Member",
                    "jobTitle": rng.choice(JOB_TITLES),
                    "department": department,
                    "companyName": rng.choice(["Contoso", "Contoso", "Contoso Oy", "Fabrikam"]),
                    "officeLocation": f"{city} {rng.randrange(1, 9)}{rng.choice('ABC')}",
                    "city": city,
                    "country": country,
                    "state": state,
                    "usageLocation": usage,
                    "postalCode": f"{rng.randrange(10000, 99999)}",
                    "streetAddress": f"{rng.choice(STREETS)} Street {index % 97 + 1}",
                    "preferredLanguage": rng.choice(["en-US", "fi-FI", "sv-SE", "de-DE"]),
                    "employeeId": f"E{index:07d}",
                    "employeeType": rng.choice(["Employee", "Employee", "Contractor"]),
                    "employeeHireDate": _timestamp(rng, epoch, 2000)[:10] + "T00:00:00Z",
                    "proxyAddresses": [
                        f"SMTP:{nickname}@contoso.example",
                        f"smtp:{nickname}@{tenant.domain}",
                    ],
                    "identities": [
                        {"signInType": "userPrincipalName", "issuer": tenant.domain, "issuerAssignedId": upn}
                    ],
                    "employeeOrgData": {
                        "division": department.split("-")[0],
                        "costCenter": f"CC{rng.randrange(100, 999)}",
                    },
                }
            )
            if rng.random() < 0.6:
                props["mobilePhone"] = f"+358 40 {rng.randrange(1000000, 9999999)}"
            if rng.random() < 0.85:
                props["assignedLicenses"] = [{"disabledPlans": [], "skuId": rng.choice(SKUS)}]
            if rng.random() < 0.5:
                props[extension_names[0]] = f"CC-{rng.randrange(1000, 9999)}"
            if rng.random() < 0.3:
                props[extension_names[1]] = rng.choice(["internal", "external", "standard"])
            if rng.random() < 0.8:
                props["signInActivity"] = {
                    "lastSignInDateTime": _timestamp(rng, epoch + timedelta(days=2000), 300),
                    "lastSignInRequestId": _uuid(rng),
                    "lastNonInteractiveSignInDateTime": _timestamp(rng, epoch + timedelta(days=2000), 300),
                    "lastNonInteractiveSignInRequestId": _uuid(rng),
                    "lastSuccessfulSignInDateTime": _timestamp(rng, epoch + timedelta(days=2000), 300),
                    "lastSuccessfulSignInRequestId": _uuid(rng),
                }
        if synced:
            sam = nickname.replace(".", "")[:20]
            props.update(
                {
                    "onPremisesSyncEnabled": True,
                    "onPremisesImmutableId": f"{rng.getrandbits(128):032x}"[:22] + "==",
                    "onPremisesSamAccountName": sam,
                    "onPremisesUserPrincipalName": f"{nickname}@corp.contoso.example",
                    "onPremisesDomainName": "corp.contoso.example",
                    "onPremisesDistinguishedName": f"CN={first} {last},OU={department},{CORP_DN}",
                    "onPremisesSecurityIdentifier": _sid(rng, 1000 + index),
                    "onPremisesLastSyncDateTime": _timestamp(rng, epoch + timedelta(days=2100), 30),
                }
            )
            attributes = {}
            for number in rng.sample(range(1, 16), rng.randrange(0, 5)):
                attributes[f"extensionAttribute{number}"] = rng.choice(
                    ["EXT", "HR functions", "100", "M365_E5", f"{department}", f"Site {city}"]
                )
            if attributes:
                props["onPremisesExtensionAttributes"] = attributes
        user = tenant.create("user", props)
        user.password = "Generated-Password-1"
        user.pack()
        ids.append(user.id)
        if not guest:
            employees.append(user.id)
        heads = heads_by_department.setdefault(department, [])
        if not guest:
            if heads and rng.random() < 0.85:
                tenant.manager[user.id] = rng.choice(heads[-20:])
            if len(heads) < 200:
                heads.append(user.id)
    return ids


def _groups(tenant, rng, shape: TenantShape, epoch) -> list[str]:
    ids: list[str] = []
    count = shape.group_count()
    for index in range(count):
        topic = rng.choice(GROUP_TOPICS)
        kind = (
            "security"
            if index < 3
            else rng.choice(["security", "security", "m365", "mailsecurity", "distribution"])
        )
        if 3 <= index < 3 + len(GROUP_KINDS):
            # Every kind exists, however small the tenant (the draw above stays, so later draws do not move).
            kind = GROUP_KINDS[index - 3]
        if index == 0:
            name = "All Staff"
        elif index < 3:
            name = f"Large Group {index}"
        else:
            prefix = {"security": "SG", "m365": "M365", "mailsecurity": "MSG", "distribution": "DL"}[kind]
            name = f"{prefix} {topic} {index:05d}"
        nickname = _ascii(name).replace("'", "") or f"group{index}"
        nickname = f"{nickname}{index}" if not nickname.endswith(f"{index:05d}") else nickname
        props = {
            "id": _uuid(rng),
            "displayName": name,
            "description": f"{topic} ({kind})",
            "mailNickname": nickname,
            "createdDateTime": _timestamp(rng, epoch, 2000),
            "groupTypes": [],
            "securityEnabled": kind in ("security", "mailsecurity"),
            "mailEnabled": kind in ("m365", "mailsecurity", "distribution"),
            "proxyAddresses": [],
            "isAssignableToRole": False,
            "renewedDateTime": _timestamp(rng, epoch, 2000),
        }
        if kind == "m365":
            props.update({"groupTypes": ["Unified"], "visibility": rng.choice(["Private", "Public"])})
        if props["mailEnabled"]:
            props["mail"] = f"{nickname}@contoso.example"
            props["proxyAddresses"] = [f"SMTP:{nickname}@contoso.example"]
        if kind == "security" and index >= 3 and rng.random() < 0.3:
            props.update(
                {
                    "onPremisesSyncEnabled": True,
                    "onPremisesSamAccountName": nickname[:20],
                    "onPremisesSecurityIdentifier": _sid(rng, 5000 + index),
                    "onPremisesLastSyncDateTime": _timestamp(rng, epoch + timedelta(days=2100), 30),
                    "securityIdentifier": f"S-1-12-1-{rng.randrange(10**9)}-{rng.randrange(10**9)}",
                }
            )
        else:
            props["securityIdentifier"] = f"S-1-12-1-{rng.randrange(10**9)}-{rng.randrange(10**9)}"
        ids.append(tenant.create("group", props).id)
    return ids


def _memberships(tenant: Tenant, rng, shape: TenantShape, user_ids, group_ids, employees) -> None:
    """Direct memberships: three very large groups, a long tail, and nested groups (no cycles)."""
    target = shape.membership_count()
    members = tenant.members
    # Each member's groups, in the order joined (a list while generating, a compact set at the end).
    joined: dict[str, list[str]] = {}

    def add(group_id: str, member_id: str) -> bool:
        group_members = members.setdefault(group_id, {})
        if member_id in group_members:
            return False
        group_members[member_id] = None
        joined.setdefault(member_id, []).append(group_id)
        return True

    def add_all(group_id: str, member_ids: list[str]) -> int:
        """``add`` for each of ``member_ids``, in order (inlined: ten million of them at a million users)."""
        group_members = members.setdefault(group_id, {})
        before = len(group_members)
        get = joined.get
        for member_id in member_ids:
            if member_id in group_members:
                continue
            group_members[member_id] = None
            groups = get(member_id)
            if groups is None:
                joined[member_id] = [group_id]
            else:
                groups.append(group_id)
        return len(group_members) - before

    added = 0
    large = [
        employees,
        rng.sample(user_ids, len(user_ids) * 3 // 10),
        rng.sample(user_ids, len(user_ids) // 10),
    ]
    for group_id, chosen in zip(group_ids[:3], large, strict=False):
        added += add_all(group_id, chosen)
    rest = group_ids[3:]
    # Nested groups: a group may contain groups created after it (a DAG, as Entra forbids no cycles
    # but real tenants rarely have them).
    # Microsoft 365 groups neither contain groups nor belong to them.
    nestable = [g for g in rest if "Unified" not in tenant.objects[g].props["groupTypes"]]
    position = {group_id: index for index, group_id in enumerate(nestable)}
    for group_id in rest:
        if rng.random() < 0.05 and group_id in position and position[group_id] + 1 < len(nestable):
            later = nestable[position[group_id] + 1 :]
            for child in rng.sample(later, min(3, len(later))):
                added += add(group_id, child)
    if len(nestable) >= 3:
        # At least one chain two levels deep (a group in a group in a group), however small the tenant:
        # the first security group holds the first mail-enabled security group, which holds a distribution
        # group (see GROUP_KINDS).
        added += add(nestable[0], nestable[1]) + add(nestable[1], nestable[2])
    remaining = max(0, target - added)
    if rest and remaining and user_ids:
        weights = [math.exp(rng.gauss(0, 1.2)) for _ in rest]
        scale = remaining / sum(weights)
        # The long tail stays at most half the smallest very large group (a tenth of the users), so the
        # three large groups are the largest at any size; a small tenant may therefore hold fewer direct
        # memberships than asked for (at 100,000 users the cap is above nearly all of the tail's sizes).
        cap = max(1, len(user_ids) // 20)
        for group_id, weight in zip(rest, weights, strict=True):
            size = min(cap, max(0, round(weight * scale)))
            add_all(group_id, rng.sample(user_ids, size))
    member_of = tenant.member_of
    for member_id, groups in joined.items():
        member_of[member_id] = GroupIds(groups)


def _devices(tenant: Tenant, rng, shape: TenantShape, epoch, user_ids) -> None:
    count = shape.devices if shape.devices is not None else shape.users // 10
    for _ in range(count):
        windows = rng.random() < 0.7
        os_name, version = (
            ("Windows", "10.0.22631.4037")
            if windows
            else rng.choice([("iOS", "17.5.1"), ("Android", "14"), ("MacMDM", "14.5")])
        )
        device_id = _uuid(rng)
        managed = rng.random() < 0.8
        name = f"{'DESKTOP' if windows else 'MOBILE'}-{rng.getrandbits(32):08X}"
        _create_undated(
            tenant,
            "device",
            {
                "id": _uuid(rng),
                "deviceId": device_id,
                "displayName": name,
                "accountEnabled": rng.random() > 0.05,
                "operatingSystem": os_name,
                "operatingSystemVersion": version,
                "trustType": rng.choice(["AzureAd", "ServerAd", "Workplace"]),
                "isCompliant": managed and rng.random() > 0.1,
                "isManaged": managed,
                "approximateLastSignInDateTime": _timestamp(rng, epoch + timedelta(days=2000), 300),
                "registrationDateTime": _timestamp(rng, epoch, 2000),
                "alternativeSecurityIds": [],
                "extensionAttributes": {},
            },
        )
        if not managed or not user_ids:
            continue
        owner = tenant.objects[rng.choice(user_ids)]
        managed_id = _uuid(rng)
        props = {
            "id": managed_id,
            "deviceName": name,
            "operatingSystem": os_name,
            "osVersion": version,
            "complianceState": rng.choice(["compliant", "compliant", "noncompliant", "inGracePeriod"]),
            "managementAgent": "mdm",
            "managedDeviceOwnerType": rng.choice(["company", "personal"]),
            "enrolledDateTime": _timestamp(rng, epoch, 2000),
            "lastSyncDateTime": _timestamp(rng, epoch + timedelta(days=2000), 300),
            "azureADDeviceId": device_id,
            "userId": owner.id,
            "userPrincipalName": owner.view["userPrincipalName"],
            "userDisplayName": owner.view["displayName"],
            "emailAddress": owner.view.get("mail"),
            "serialNumber": f"{rng.getrandbits(40):010X}",
            "manufacturer": rng.choice(["Microsoft Corporation", "Dell Inc.", "Lenovo", "Apple"]),
            "model": rng.choice(["Surface Laptop 5", "Latitude 7440", "ThinkPad T14", "iPhone 15"]),
            "isEncrypted": rng.random() > 0.2,
            "jailBroken": "False",
        }
        props.update(_intune_details(managed_id, os_name, name, props["enrolledDateTime"]))
        state = None
        if windows:
            state = {
                "id": managed_id,
                "malwareProtectionEnabled": True,
                "deviceState": rng.choice(["clean", "clean", "clean", "fullScanPending", "critical"]),
                "realTimeProtectionEnabled": rng.random() > 0.05,
                "networkInspectionSystemEnabled": True,
                "quickScanOverdue": rng.random() < 0.1,
                "fullScanOverdue": rng.random() < 0.1,
                "signatureUpdateOverdue": rng.random() < 0.1,
                "rebootRequired": rng.random() < 0.1,
                "fullScanRequired": False,
                "engineVersion": "1.1.24060.5",
                "signatureVersion": "1.415.156.0",
                "antiMalwareVersion": "4.18.24060.7",
                "lastQuickScanDateTime": _timestamp(rng, epoch + timedelta(days=2000), 300),
                "lastReportedDateTime": _timestamp(rng, epoch + timedelta(days=2000), 300),
                "productStatus": "noStatus",
                "isVirtualMachine": False,
                "tamperProtectionEnabled": True,
            }
        apps = [
            {"id": _uuid(rng), "displayName": app, "version": f"{rng.randrange(1, 30) % 2 + 1}.{rng.randrange(10) % 3}",
             "sizeInByte": rng.randrange(10**6, 10**9), "publisher": publisher, "platform": "windows"}
            for app, publisher in rng.sample(
                [("Microsoft Teams", "Microsoft"), ("7-Zip", "Igor Pavlov"), ("Notepad++", "Notepad++ Team"),
                 ("Google Chrome", "Google"), ("Zoom", "Zoom Video Communications")], 2)
        ]  # fmt: skip
        tenant.managed_devices[managed_id] = ManagedDevice(props, state)
        if windows:
            _detect(tenant, managed_id, apps)


def _detect(tenant: Tenant, managed_id: str, apps: list[dict]) -> None:
    """Record apps found on a device. Intune's detectedApps are tenant-wide, one per name, version and
    platform, with the devices that have it (``deviceCount``) [Learn: intune-devices-detectedapp]: an app
    seen again joins the existing entry (keeping that entry's id and size)."""
    for app in apps:
        key = (app["displayName"], app["version"], app["platform"])
        found = next(
            (d for d in tenant.detected_apps.values()
             if (d.props["displayName"], d.props["version"], d.props["platform"]) == key),
            None,
        )  # fmt: skip
        if found is None:
            found = tenant.detected_apps[app["id"]] = DetectedApp({**app, "deviceCount": 0})
        found.device_ids.append(managed_id)
        found.props["deviceCount"] = len(found.device_ids)


def _intune_details(managed_id: str, os_name: str, name: str, enrolled: str) -> dict:
    """The rest of a managed device as Intune returns it: every property, non-nullable ones with Intune's
    "not applicable" values (``0001-01-01T00:00:00Z``, ``none``, 0). Drawn from a generator seeded by the
    device id, so adding properties here does not shift the rest of the generated tenant."""
    rng = random.Random(managed_id)
    windows = os_name == "Windows"
    total = rng.choice([128, 256, 512, 1024]) * 1024**3
    enrolment = {"Windows": "windowsAzureADJoin", "iOS": "appleBulkWithUser", "MacMDM": "appleBulkWithUser"}
    enrolled_at = datetime.strptime(enrolled, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return {
        "managedDeviceName": f"{name}_{enrolled_at:%m/%d/%Y_%I:%M %p}" if not windows else name,
        "azureADRegistered": True,
        "complianceGracePeriodExpirationDateTime": "9999-12-31T23:59:59Z",
        "deviceActionResults": [],
        "deviceCategoryDisplayName": "Unknown",
        "deviceEnrollmentType": enrolment.get(os_name, "userEnrollment"),
        "deviceRegistrationState": "registered",
        "easActivated": not windows,
        "easActivationDateTime": "0001-01-01T00:00:00Z",
        "easDeviceId": f"{rng.getrandbits(64):016X}" if not windows else None,
        "enrollmentProfileName": None,
        # Values a list hides (localgraph.intune.SELECT_ON_GET_ONLY): a GET of the device that selects them shows them.
        "ethernetMacAddress": ":".join(f"{rng.randrange(256):02x}" for _ in range(6)) if windows else None,
        "exchangeAccessState": "none",
        "exchangeAccessStateReason": "none",
        "exchangeLastSuccessfulSyncDateTime": "0001-01-01T00:00:00Z",
        "freeStorageSpaceInBytes": rng.randrange(total // 10, total // 2),
        "totalStorageSpaceInBytes": total,
        "physicalMemoryInBytes": rng.choice([8, 16, 32]) * 1024**3,
        "isSupervised": False,
        "managementCertificateExpirationDate": (enrolled_at + timedelta(days=365)).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        ),
        "managementState": "managed",
        "partnerReportedThreatState": "unknown",
        "imei": f"35{rng.randrange(10**12, 10**13)}" if not windows else "",
        "meid": "",
        "iccid": f"89{rng.randrange(10**17, 10**18)}" if not windows else "",
        "udid": f"{rng.getrandbits(160):040x}" if os_name in ("iOS", "MacMDM") else "",
        "notes": None,
        "phoneNumber": "",
        "subscriberCarrier": "",
        "androidSecurityPatchLevel": "",
        "activationLockBypassCode": None,
        "remoteAssistanceSessionUrl": "",
        "remoteAssistanceSessionErrorDetails": "",
        "requireUserEnrollmentApproval": None,
        "wiFiMacAddress": ":".join(f"{rng.randrange(256):02x}" for _ in range(6)),
        "configurationManagerClientEnabledFeatures": None,
        "deviceHealthAttestationState": None,
    }


def _contacts(tenant: Tenant, rng, count: int) -> None:
    for index in range(count):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        nickname = f"{_ascii(first)}{_ascii(last)}{index}".replace("'", "")
        mail = f"{nickname}@supplier.example"
        _create_undated(
            tenant,
            "orgContact",
            {
                "id": _uuid(rng),
                "displayName": f"{first} {last} (Supplier)",
                "givenName": first,
                "surname": last,
                "mail": mail,
                "mailNickname": nickname,
                "companyName": rng.choice(["Northwind Traders", "Tailspin Toys", "Wingtip"]),
                "proxyAddresses": [f"SMTP:{mail}"],
                "imAddresses": [],
                "phones": [],
                "addresses": [],
                "serviceProvisioningErrors": [],
            },
        )
