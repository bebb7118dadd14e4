"""The tenant's directory in memory, with a change log that delta queries read.

Objects are stored as Graph JSON property dicts (only the properties that are set); reading code projects
them (``$select``, default properties, nulls for unset selected properties). A generated tenant packs its
objects' properties (:meth:`DirObject.pack`: about a fifth of the memory, so a tenant of a million users fits
in a few gigabytes); reads decode them per request (:attr:`DirObject.view`), and the first change unpacks an
object for good (:attr:`DirObject.props`). Either way every answer is the same. Every mutation appends a
:class:`Change` with a tenant-wide sequence number; a delta token is such a number plus the query it was
issued for, so a later round replays exactly the changes after it.

Single-threaded by design: the server's event loop owns the tenant, so no locks are needed.
"""

from __future__ import annotations

import bisect
import marshal
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

from localgraph.errors import GraphError, conflict, not_found

# Directory object kinds and the collection segment that lists them.
COLLECTIONS = {
    "users": "user",
    "groups": "group",
    "devices": "device",
    "applications": "application",
    "servicePrincipals": "servicePrincipal",
    "contacts": "orgContact",
}
KIND_TO_COLLECTION = {kind: collection for collection, kind in COLLECTIONS.items()}
ODATA_TYPES = {kind: f"#microsoft.graph.{kind}" for kind in COLLECTIONS.values()}


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# Packed properties: the names of each distinct property list are kept once (a generated tenant has a few
# dozen), an object keeps its list's number and its values (marshal).
_SHAPES: list[tuple[str, ...]] = []
_SHAPE_NUMBERS: dict[tuple[str, ...], int] = {}


def _pack(props: dict[str, Any]) -> bytes:
    names = tuple(props)
    number = _SHAPE_NUMBERS.get(names)
    if number is None:
        number = _SHAPE_NUMBERS[names] = len(_SHAPES)
        _SHAPES.append(names)
    return number.to_bytes(4, "little") + marshal.dumps(tuple(props.values()))


def _unpack(packed: bytes) -> dict[str, Any]:
    view = memoryview(packed)
    return dict(zip(_SHAPES[int.from_bytes(view[:4], "little")], marshal.loads(view[4:]), strict=True))


class DirObject:
    """One directory object. ``props`` holds Graph's JSON properties, ``id`` included."""

    __slots__ = (
        "_props",
        "deleted",
        "id",
        "kind",
        "ordinal",
        "password",
        "password_flags",
        "photo",
        "saved_memberships",
    )

    def __init__(self, kind: str, props: dict[str, Any], ordinal: int) -> None:
        self.kind = kind
        self.id: str = props["id"]
        self._props: dict[str, Any] | bytes = props
        self.ordinal = ordinal
        self.deleted: str | None = None  # deletedDateTime while in deleted items
        self.password: str | None = None
        # passwordProfile's flags as last written (forceChangePasswordNextSignIn, ...WithMfa); like the
        # password, kept but not returned by reads (see localgraph/writes/users.py).
        self.password_flags: dict[str, bool] = {}
        self.photo: tuple[str, bytes] | None = None  # (content type, bytes)
        self.saved_memberships: Sequence[str] = ()  # groups to re-join on restore

    @property
    def props(self) -> dict[str, Any]:
        """The properties, to read or to change (a packed object is unpacked for good)."""
        props = self._props
        if type(props) is bytes:
            props = self._props = _unpack(props)
        return props  # type: ignore[return-value]

    @property
    def view(self) -> Mapping[str, Any]:
        """The properties, to read only: a packed object is decoded for this read and not kept (the last
        one decoded is remembered, as a request reads an object several times: filter, search, project)."""
        props = self._props
        if type(props) is not bytes:
            return props  # type: ignore[return-value]
        last = _last_view[0]
        if last is not None and last[0] is props:
            return last[1]
        decoded = _unpack(props)
        _last_view[0] = (props, decoded)
        return decoded

    def pack(self) -> None:
        """Keep the properties packed (until the first change)."""
        if type(self._props) is dict:
            self._props = _pack(self._props)

    @property
    def odata_type(self) -> str:
        return ODATA_TYPES[self.kind]


_last_view: list[tuple[bytes, dict[str, Any]] | None] = [None]


class ObjectList(Sequence[DirObject]):
    """Directory objects by id, looked up when read."""

    __slots__ = ("_ids", "_objects")

    def __init__(self, objects: dict[str, DirObject], ids: list[str]) -> None:
        self._objects = objects
        self._ids = ids

    def __len__(self) -> int:
        return len(self._ids)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self._objects[object_id] for object_id in self._ids[index]]
        return self._objects[self._ids[index]]

    def __iter__(self) -> Iterator[DirObject]:
        objects = self._objects
        return (objects[object_id] for object_id in self._ids)


class GroupIds:
    """The groups one object is a direct member of, as compact as a tuple (a set of ten ids takes five
    times the memory; a generated tenant of a million users holds a million of these). It offers what the
    tenant does with a member's groups: add, discard, membership, iteration, length."""

    __slots__ = ("_ids",)

    def __init__(self, ids: Sequence[str] = ()) -> None:
        self._ids = tuple(dict.fromkeys(ids))

    def add(self, group_id: str) -> None:
        if group_id not in self._ids:
            self._ids += (group_id,)

    def discard(self, group_id: str) -> None:
        if group_id in self._ids:
            self._ids = tuple(g for g in self._ids if g != group_id)

    def __contains__(self, group_id: object) -> bool:
        return group_id in self._ids

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)


@dataclass(frozen=True, slots=True)
class Change:
    """One entry of the change log.

    ``op`` is one of: created, updated, deleted (soft: restorable), purged (hard), restored,
    member_added, member_removed, manager. ``props`` names the properties an update touched;
    ``other`` is the member (for membership ops) or the manager id. ``other_kind`` is the kind of
    ``other`` (a member may be purged later, and delta still names its type); ``previous`` is the
    manager a manager op replaced or removed (delta reports a removed manager by id).
    """

    seq: int
    kind: str
    object_id: str
    op: str
    props: frozenset[str] | None = None
    other: str | None = None
    other_kind: str | None = None
    previous: str | None = None


@dataclass
class AppRegistration:
    """An app registration that can obtain tokens (client credentials)."""

    client_id: str
    display_name: str
    secrets: list[str] = field(default_factory=list)
    cert_thumbprints_sha1: list[bytes] = field(default_factory=list)
    cert_public_keys: dict[bytes, Any] = field(default_factory=dict)  # sha1 thumbprint -> public key
    roles: list[str] = field(default_factory=list)  # application permissions granted


@dataclass
class ManagedDevice:
    """An Intune managed device (deviceManagement/managedDevices) and its windowsProtectionState (Windows
    devices only)."""

    props: dict[str, Any]
    windows_protection_state: dict[str, Any] | None = None


@dataclass
class DetectedApp:
    """An application Intune discovered on managed devices (deviceManagement/detectedApps): one per name,
    version and platform across the tenant; ``deviceCount`` is the number of ``device_ids``."""

    props: dict[str, Any]
    device_ids: list[str] = field(default_factory=list)


class Tenant:
    def __init__(self, tenant_id: str, domain: str) -> None:
        self.tenant_id = tenant_id
        self.domain = domain  # the initial verified domain, e.g. contoso-xyz.onmicrosoft.com
        self.verified_domains: list[str] = [domain]
        self.apps: dict[str, AppRegistration] = {}
        self.objects: dict[str, DirObject] = {}
        self.order: dict[str, list[DirObject]] = {kind: [] for kind in COLLECTIONS.values()}
        self._ordinals: dict[str, list[int]] = {kind: [] for kind in COLLECTIONS.values()}
        self.members: dict[str, dict[str, None]] = {}
        self.member_of: dict[str, set[str] | GroupIds] = {}
        self.owners: dict[str, dict[str, None]] = {}
        self.manager: dict[str, str] = {}
        self.extension_properties: dict[str, dict[str, Any]] = {}  # name -> extensionProperty JSON
        self.managed_devices: dict[str, ManagedDevice] = {}
        self.detected_apps: dict[str, DetectedApp] = {}
        self.seq = 0
        self.log: list[Change] = []
        self._log_seqs: list[int] = []
        self._next_ordinal = 0
        # (kind, property) -> lower-cased value -> id, over live objects: uniqueness and lookups.
        self._unique: dict[tuple[str, str], dict[str, str]] = {
            (kind, name): {} for kind, names in self._UNIQUE.items() for name in names
        }

    # ----------------------------------------------------------------------------------------------
    # Change log
    def _record(
        self, kind: str, object_id: str, op: str, props=None, other=None, other_kind=None, previous=None
    ) -> None:
        self.seq += 1
        self.log.append(Change(self.seq, kind, object_id, op, props, other, other_kind, previous))
        self._log_seqs.append(self.seq)

    def changes_since(self, seq: int) -> list[Change]:
        """Changes with a sequence number greater than ``seq``, oldest first."""
        return self.log[bisect.bisect_right(self._log_seqs, seq) :]

    # ----------------------------------------------------------------------------------------------
    # Reads
    def get(self, object_id: str, kind: str | None = None, *, include_deleted: bool = False) -> DirObject:
        obj = self.objects.get(object_id.lower()) or self.objects.get(object_id)
        if obj is None or (kind is not None and obj.kind != kind) or (obj.deleted and not include_deleted):
            raise not_found(object_id)
        return obj

    def find_user(self, key: str) -> DirObject:
        """A user by id or userPrincipalName (Graph accepts both in /users/{id | userPrincipalName})."""
        obj = self.objects.get(key.lower())
        if obj is not None and obj.kind == "user" and not obj.deleted:
            return obj
        found = self._unique[("user", "userPrincipalName")].get(key.lower())
        if found is not None:
            return self.objects[found]
        raise not_found(key)

    def live(self, kind: str, after_ordinal: int = -1) -> Iterator[DirObject]:
        """Live (not deleted) objects of a kind in creation order, starting after an ordinal."""
        objects = self.order[kind]
        start = bisect.bisect_right(self._ordinals[kind], after_ordinal)
        for index in range(start, len(objects)):
            obj = objects[index]
            if obj.deleted is None and obj.id in self.objects:
                yield obj

    def deleted_items(self, kind: str) -> Iterator[DirObject]:
        for obj in self.order[kind]:
            if obj.deleted is not None and obj.id in self.objects:
                yield obj

    def count(self, kind: str) -> int:
        return sum(1 for _ in self.live(kind))

    def group_members(self, group_id: str) -> Sequence[DirObject]:
        """A group's direct members in the order they joined; looked up as they are read (a page of a group
        of a million members reads 999 of them, not a million)."""
        return ObjectList(self.objects, list(self.members.get(group_id, {})))

    def groups_of(self, object_id: str) -> list[DirObject]:
        return [self.objects[g] for g in sorted(self.member_of.get(object_id, ()))]

    def transitive_members(self, group_id: str) -> list[DirObject]:
        seen: dict[str, None] = {}
        stack = [group_id]
        visited_groups = {group_id}
        while stack:
            for member_id in self.members.get(stack.pop(), {}):
                if member_id not in seen:
                    seen[member_id] = None
                member = self.objects[member_id]
                if member.kind == "group" and member_id not in visited_groups:
                    visited_groups.add(member_id)
                    stack.append(member_id)
        return [self.objects[m] for m in seen]

    def transitive_groups_of(self, object_id: str) -> list[DirObject]:
        seen: dict[str, None] = {}
        stack = [object_id]
        while stack:
            for group_id in sorted(self.member_of.get(stack.pop(), ())):
                if group_id not in seen:
                    seen[group_id] = None
                    stack.append(group_id)
        return [self.objects[g] for g in seen]

    # ----------------------------------------------------------------------------------------------
    # Writes (each records its change)
    def create(self, kind: str, props: dict[str, Any], *, object_id: str | None = None) -> DirObject:
        props = dict(props)
        props["id"] = (object_id or props.get("id") or str(uuid.uuid4())).lower()
        if props["id"] in self.objects:
            raise conflict("id")
        self._check_unique(kind, props, None)
        props.setdefault("createdDateTime", utc_now())
        obj = DirObject(kind, props, self._next_ordinal)
        self._next_ordinal += 1
        self._index(obj, add=True)
        self.objects[obj.id] = obj
        self.order[kind].append(obj)
        self._ordinals[kind].append(obj.ordinal)
        self._record(kind, obj.id, "created")
        return obj

    def update(self, object_id: str, changes: dict[str, Any]) -> DirObject:
        obj = self.get(object_id)
        self._check_unique(obj.kind, changes, obj.id)
        self._index(obj, add=False)
        touched = set()
        for name, value in changes.items():
            if isinstance(value, dict) and isinstance(obj.props.get(name), dict):
                merged = {**obj.props[name], **value}  # complex values merge per property, as PATCH does
                value = merged
            if value is None:
                if name in obj.props:
                    del obj.props[name]
                    touched.add(name)
            elif obj.props.get(name) != value:
                obj.props[name] = value
                touched.add(name)
        self._index(obj, add=True)
        if touched:
            self._record(obj.kind, obj.id, "updated", frozenset(touched))
        return obj

    def delete(self, object_id: str) -> None:
        """Soft delete: the object moves to deleted items (restorable) and leaves its groups."""
        obj = self.get(object_id)
        obj.saved_memberships = sorted(self.member_of.get(obj.id, ()))
        for group_id in obj.saved_memberships:
            self.remove_member(group_id, obj.id)
        if obj.kind == "group":
            for member_id in list(self.members.get(obj.id, {})):
                self.member_of.get(member_id, set()).discard(obj.id)
        self._index(obj, add=False)
        obj.deleted = utc_now()
        obj.props["deletedDateTime"] = obj.deleted
        self._record(obj.kind, obj.id, "deleted")

    def restore(self, object_id: str) -> DirObject:
        obj = self.get(object_id, include_deleted=True)
        if obj.deleted is None:
            raise GraphError(400, "Request_BadRequest", f"Object '{object_id}' is not in deleted items.")
        self._check_unique(obj.kind, obj.props, obj.id)
        obj.deleted = None
        self._index(obj, add=True)
        obj.props.pop("deletedDateTime", None)
        dropped: list[tuple[str, str | None]] = []
        if obj.kind == "group":
            members = self.members.get(obj.id, {})
            for member_id in list(members):
                member = self.objects.get(member_id)
                if member is None or member.deleted is not None:
                    # Deleted or purged while the group was in deleted items: it does not come back.
                    del members[member_id]
                    dropped.append((member_id, member.kind if member else None))
                else:
                    self.member_of.setdefault(member_id, set()).add(obj.id)
        self._record(obj.kind, obj.id, "restored")
        for member_id, member_kind in dropped:
            self._record("group", obj.id, "member_removed", other=member_id, other_kind=member_kind)
        for group_id in obj.saved_memberships:
            group = self.objects.get(group_id)
            if group is not None and group.deleted is None and obj.id not in self.members.get(group_id, {}):
                self.add_member(group_id, obj.id)
        obj.saved_memberships = []
        return obj

    def purge(self, object_id: str) -> None:
        """Hard delete (from deleted items, or directly): gone for good."""
        obj = self.get(object_id, include_deleted=True)
        if obj.deleted is None:
            self._index(obj, add=False)
            for group_id in sorted(self.member_of.get(obj.id, ())):
                self.remove_member(group_id, obj.id)
        if obj.kind == "group":
            for member_id in self.members.pop(obj.id, {}):
                self.member_of.get(member_id, set()).discard(obj.id)
        self.member_of.pop(obj.id, None)
        self.manager.pop(obj.id, None)
        del self.objects[obj.id]
        self._record(obj.kind, obj.id, "purged")

    def add_member(self, group_id: str, member_id: str) -> None:
        group = self.get(group_id, "group")
        member = self.get(member_id)
        members = self.members.setdefault(group.id, {})
        if member.id in members:
            raise GraphError(
                400,
                "Request_BadRequest",
                "One or more added object references already exist for the following modified "
                "properties: 'members'.",
            )
        members[member.id] = None
        self.member_of.setdefault(member.id, set()).add(group.id)
        self._record("group", group.id, "member_added", other=member.id, other_kind=member.kind)

    def remove_member(self, group_id: str, member_id: str) -> None:
        group = self.get(group_id, "group")
        members = self.members.get(group.id, {})
        key = member_id.lower()
        if key not in members:
            raise not_found(member_id)
        del members[key]
        self.member_of.get(key, set()).discard(group.id)
        member_kind = self.objects[key].kind if key in self.objects else None
        self._record("group", group.id, "member_removed", other=key, other_kind=member_kind)

    def set_manager(self, user_id: str, manager_id: str | None) -> None:
        user = self.get(user_id, "user")
        previous = self.manager.get(user.id)
        if manager_id is None:
            if user.id not in self.manager:
                raise not_found("manager")
            del self.manager[user.id]
            self._record("user", user.id, "manager", previous=previous)
        else:
            manager = self.get(manager_id)
            self.manager[user.id] = manager.id
            self._record(
                "user", user.id, "manager", other=manager.id, other_kind=manager.kind, previous=previous
            )

    # ----------------------------------------------------------------------------------------------
    _UNIQUE: ClassVar[dict[str, tuple[str, ...]]] = {
        "user": ("userPrincipalName",),
        "group": ("mailNickname",),
        "application": ("appId",),
    }

    def _check_unique(self, kind: str, props: dict[str, Any], self_id: str | None) -> None:
        for name in self._UNIQUE.get(kind, ()):
            value = props.get(name)
            if isinstance(value, str):
                holder = self._unique[(kind, name)].get(value.lower())
                if holder is not None and holder != self_id:
                    raise conflict(name)

    def _index(self, obj: DirObject, *, add: bool) -> None:
        for name in self._UNIQUE.get(obj.kind, ()):
            value = obj.props.get(name)
            if isinstance(value, str):
                index = self._unique[(obj.kind, name)]
                if add:
                    index[value.lower()] = obj.id
                elif index.get(value.lower()) == obj.id:
                    del index[value.lower()]
