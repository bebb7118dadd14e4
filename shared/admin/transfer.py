"""Export and import of connectors with their tasks, between environments (test -> prod).

The file (JSON) holds ``format``, ``version`` (of the file format: another version is refused), the
connector's version, the connectors and tasks (definitions with their ids; secret *references* travel as they
are), and either a ``digest`` (SHA-256 of the body: catches a damaged file) or, when an export password is
given, a ``seal``: a key derived from the password with scrypt (memory-hard; n=2^15, r=8, p=1: 32 MiB, RFC 7914)
and AES-256-GCM (authenticated encryption, from ``cryptography``) over the secret values (only when asked for)
with the whole body as associated data, so a changed body or a wrong password is detected and told apart (a
password check value is derived from the same key).

Import: validate everything first (file, password, body, then the resulting configuration as a whole with
the config package's rules), show what it would change (dry run), then write. A connector with the same tenant
and client id as an existing one is merged into it (its tasks go under the existing connector, which stays
as it is); a task with the same id or name is updated; secret values go into the target's Key Vault and the
imported references point there. If a write fails midway, what was written is undone: never a half import.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from shared.admin.definitions import Definition, Kind, new_id
from shared.admin.errors import Invalid, PreconditionFailed, Refused, VaultRefused
from shared.admin.service import VERSION, AdminService
from shared.config import ConfigError, ConfigIssue, parse_config
from shared.secrets import SecretRef, resolve_secret

log = logging.getLogger(__name__)

FORMAT = "entra-graph-connector-export"
FILE_VERSION = 1
SCRYPT = {"n": 2**15, "r": 8, "p": 1}
_SECRET_FIELDS = ("secret", "certificate", "password")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise ValueError("not base64 text")
    return base64.b64decode(text, validate=True)


def _body(document: dict[str, Any]) -> bytes:
    """The canonical bytes the digest or the seal covers: everything but the digest and seal."""
    body = {k: v for k, v in document.items() if k not in ("digest", "seal")}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _keys(password: str, salt: bytes, n: int, r: int, p: int) -> tuple[bytes, bytes]:
    material = Scrypt(salt=salt, length=64, n=n, r=r, p=p).derive(password.encode())
    return material[:32], material[32:]


def _check_value(check_key: bytes) -> bytes:
    return hmac.new(check_key, b"export password check", hashlib.sha256).digest()


# ------------------------------------------------------------------------------------------------ export


async def export(
    admin: AdminService,
    connector_ids: list[str],
    *,
    password: str | None = None,
    include_secrets: bool = False,
) -> dict[str, Any]:
    """The export file (a JSON object) of these connectors and all their tasks."""
    if include_secrets and not password:
        raise Invalid(
            [ConfigIssue("password", "required to include secret values (they are encrypted with it)")]
        )
    definitions = await admin.store.all()
    connectors = [d for d in definitions if d.kind == "connector" and d.id in connector_ids]
    missing = sorted(set(connector_ids) - {d.id for d in connectors})
    if missing:
        raise Invalid([ConfigIssue("connectors", f"no connector with id {', '.join(map(repr, missing))}")])
    names = {c.name for c in connectors}
    tasks = [d for d in definitions if d.kind == "task" and d.data.get("connector") in names]
    document: dict[str, Any] = {
        "format": FORMAT,
        "version": FILE_VERSION,
        "connector_version": VERSION,
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "connectors": [c.data for c in connectors],
        "tasks": [t.data for t in tasks],
    }
    if not password:
        document["digest"] = "sha256:" + hashlib.sha256(_body(document)).hexdigest()
        return document
    secrets: dict[str, dict[str, str]] = {}
    if include_secrets:
        for connector in connectors:
            secrets[connector.id] = await _secret_values(admin, connector)
    salt, nonce = os.urandom(16), os.urandom(12)
    key, check_key = await asyncio.to_thread(_keys, password, salt, **SCRYPT)
    plaintext = json.dumps(secrets).encode()
    document["seal"] = {
        "kdf": {"name": "scrypt", **SCRYPT, "salt": _b64(salt)},
        "cipher": "AES-256-GCM",
        "check": _b64(_check_value(check_key)),
        "nonce": _b64(nonce),
        "secrets": _b64(AESGCM(key).encrypt(nonce, plaintext, _body(document))),
        "includes_secrets": include_secrets,
    }
    return document


async def _secret_values(admin: AdminService, connector: Definition) -> dict[str, str]:
    credential = connector.data.get("credential") or {}
    values = {}
    for name in _SECRET_FIELDS:
        ref = credential.get(name)
        if isinstance(ref, dict):
            services = admin.services
            key_vault = services.key_vault if "key_vault" in ref else None
            values[name] = await asyncio.to_thread(
                resolve_secret, SecretRef.model_validate(ref), environ=services.environ, key_vault=key_vault
            )
    return values


# ------------------------------------------------------------------------------------------------ import


@dataclass
class Change:
    kind: Kind
    name: str
    action: str  # create | update | unchanged | merge
    id: str
    detail: str = ""

    def as_json(self) -> dict[str, str]:
        return {
            "kind": self.kind,
            "name": self.name,
            "action": self.action,
            "id": self.id,
            "detail": self.detail,
        }


@dataclass
class ImportPlan:
    changes: list[Change] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)  # Key Vault secret names that would be set
    applied: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "changes": [c.as_json() for c in self.changes],
            "key_vault_secrets": self.secrets,
        }


def read_file(text: str | bytes, password: str | None) -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
    """Check an export file: format, version, integrity, password. Returns the document and secret values."""
    try:
        document = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise Refused("this is not an export file: it is not JSON") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise Refused(
            "this is not an export file of this connector (its format field is missing or different)"
        )
    if document.get("version") != FILE_VERSION:
        raise Refused(
            f"the file is in export format version {document.get('version')!r} (connector "
            f"{document.get('connector_version', 'unknown')}); this connector ({VERSION}) reads version "
            f"{FILE_VERSION} only: export it again from a matching version"
        )
    seal = document.get("seal")
    if seal is None:
        digest = document.get("digest")
        if digest != "sha256:" + hashlib.sha256(_body(document)).hexdigest():
            raise Refused(
                "the file was changed after it was exported (its digest does not match); nothing imported"
            )
        return document, {}
    if not password:
        raise Refused("the file is protected by an export password: give it")
    try:
        kdf = seal["kdf"]
        if kdf.get("name") != "scrypt" or seal.get("cipher") != "AES-256-GCM":
            raise ValueError("unknown algorithm")
        # Bounded parameters: a file cannot make the import spend unbounded memory or time.
        n, r, p = int(kdf["n"]), int(kdf["r"]), int(kdf["p"])
        if not (2**14 <= n <= 2**20 and 1 <= r <= 16 and 1 <= p <= 4):
            raise ValueError("KDF parameters out of range")
        salt, check, nonce, sealed = (_unb64(kdf["salt"]), _unb64(seal["check"]), _unb64(seal["nonce"]),
                                      _unb64(seal["secrets"]))  # fmt: skip
    except (KeyError, TypeError, ValueError):
        raise Refused("the file's seal is damaged or was changed; nothing imported") from None
    key, check_key = _keys(password, salt, n, r, p)
    if not hmac.compare_digest(check, _check_value(check_key)):
        raise Refused("wrong export password; nothing imported")
    try:
        plaintext = AESGCM(key).decrypt(nonce, sealed, _body(document))
    except InvalidTag:
        raise Refused(
            "the file was changed after it was exported (authentication failed); nothing imported"
        ) from None
    return document, json.loads(plaintext)


def _secret_name(connector: str, field_name: str) -> str:
    # Key Vault secret names: 1-127 letters, digits and dashes.
    return re.sub(r"[^A-Za-z0-9-]", "-", f"{connector}-{field_name}")[:127]


async def import_file(
    admin: AdminService,
    text: str | bytes,
    *,
    password: str | None = None,
    dry_run: bool = True,
    key_vault_url: str | None = None,
) -> ImportPlan:
    """Check the file and the configuration it would make; with ``dry_run`` only say what would change."""
    document, secrets = await asyncio.to_thread(read_file, text, password)
    if secrets and any(secrets.values()) and not key_vault_url:
        raise Refused("the file carries secret values: give the Key Vault URL they are to be stored in")
    connectors = document.get("connectors")
    tasks = document.get("tasks")
    if not isinstance(connectors, list) or not isinstance(tasks, list):
        raise Refused("the file has no connectors and tasks lists")
    definitions = await admin.store.all()
    result: dict[tuple[Kind, str], dict[str, Any]] = {(d.kind, d.id): d.data for d in definitions}
    current = {(d.kind, d.id): d for d in definitions}
    plan = ImportPlan()
    renamed: dict[str, str] = {}  # connector name in the file -> name in the target
    vault_writes: list[tuple[str, str]] = []
    for index, item in enumerate(connectors):
        if not isinstance(item, dict):
            raise Invalid([ConfigIssue(f"connectors[{index}]", "must be an object")])
        data = dict(item)
        same = next(
            (
                d
                for d in definitions
                if d.kind == "connector"
                and str(d.data.get("tenant_id", "")).lower() == str(data.get("tenant_id", "")).lower()
                and d.data.get("client_id") == data.get("client_id")
            ),
            None,
        )
        if same is not None:
            renamed[str(data.get("name"))] = same.name
            plan.changes.append(
                Change(
                    "connector",
                    same.name,
                    "merge",
                    same.id,
                    f"same tenant and client id as {data.get('name')!r}",
                )
            )
            continue
        by_name = next(
            (
                d
                for d in definitions
                if d.kind == "connector" and d.name.lower() == str(data.get("name")).lower()
            ),
            None,
        )
        if by_name is not None:
            raise Invalid(
                [
                    ConfigIssue(
                        f"connectors[{index}].name",
                        f"a connector named {by_name.name!r} exists for another tenant or client id; rename one of them",
                    )
                ]
            )
        data["id"] = (
            data.get("id")
            if isinstance(data.get("id"), str) and ("connector", data["id"]) not in result
            else new_id()
        )
        for field_name, value in (secrets.get(str(item.get("id"))) or {}).items():
            name = _secret_name(str(data.get("name")), field_name)
            vault_writes.append((name, value))
            credential = dict(data.get("credential") or {})
            credential[field_name] = {"key_vault": f"{str(key_vault_url).rstrip('/')}/secrets/{name}"}
            data["credential"] = credential
            plan.secrets.append(name)
        result[("connector", data["id"])] = data
        plan.changes.append(Change("connector", str(data.get("name")), "create", data["id"]))
    for index, item in enumerate(tasks):
        if not isinstance(item, dict):
            raise Invalid([ConfigIssue(f"tasks[{index}]", "must be an object")])
        data = dict(item)
        data["connector"] = renamed.get(str(data.get("connector")), data.get("connector"))
        target = current.get(("task", str(data.get("id"))))
        if target is None:
            target = next(
                (
                    d
                    for d in definitions
                    if d.kind == "task" and d.name.lower() == str(data.get("name")).lower()
                ),
                None,
            )
        if target is not None:
            data["id"] = target.id
            action = "unchanged" if data == target.data else "update"
            plan.changes.append(Change("task", str(data.get("name")), action, target.id))
        else:
            data["id"] = data.get("id") if isinstance(data.get("id"), str) else new_id()
            plan.changes.append(Change("task", str(data.get("name")), "create", data["id"]))
        result[("task", data["id"])] = data
    document_after = {
        "connectors": [v for (k, _), v in result.items() if k == "connector"],
        "tasks": [v for (k, _), v in result.items() if k == "task"],
    }
    try:
        parse_config(document_after)
    except ConfigError as exc:
        raise Invalid(
            exc.errors, "the configuration after the import would be invalid; nothing imported:\n" + str(exc)
        ) from None
    if dry_run:
        return plan
    await _apply(admin, plan, result, current, vault_writes, key_vault_url)
    plan.applied = True
    return plan


async def _apply(
    admin: AdminService,
    plan: ImportPlan,
    result: dict[tuple[Kind, str], dict[str, Any]],
    current: dict[tuple[Kind, str], Definition],
    vault_writes: list[tuple[str, str]],
    key_vault_url: str | None,
) -> None:
    written: list[tuple[str, str | None]] = []  # (secret, its value before this import) for undoing
    client: Any = None
    if vault_writes:
        vault = str(key_vault_url).rstrip("/")
        client = admin.services.key_vault.client_for(vault)
        try:
            for name, value in vault_writes:
                previous = await asyncio.to_thread(_value_of, client, vault, name)
                try:
                    await asyncio.to_thread(client.set_secret, name, value)
                except HttpResponseError as exc:
                    raise _vault_refusal(exc, vault, name, "set", undone=bool(written)) from None
                written.append((name, previous))
        except Exception:
            await _undo_secrets(client, written)
            raise
    done: list[tuple[Definition | None, Definition]] = []  # (before, after) for undoing
    try:
        for change in sorted(plan.changes, key=lambda c: c.kind != "connector"):
            if change.action in ("merge", "unchanged"):
                continue
            data = result[(change.kind, change.id)]
            before = current.get((change.kind, change.id))
            if before is None:
                after = await admin.store.insert(change.kind, data)
            else:
                after = await admin.store.replace(change.kind, data, before.etag, old_name=before.name)
            done.append((before, after))
    except Exception:
        for before, after in reversed(done):
            try:
                if before is None:
                    await admin.store.delete(after, after.etag)
                else:
                    await admin.store.replace(before.kind, before.data, after.etag, old_name=after.name)
            except PreconditionFailed:
                pass  # changed by someone else meanwhile: theirs stands
        await _undo_secrets(client, written)
        raise


# The roles that may read and set secrets (RBAC vaults), or the access policy's secret permissions:
# https://learn.microsoft.com/azure/key-vault/general/rbac-guide#azure-built-in-roles-for-key-vault-data-plane-operations
_ROLE = (
    "'Key Vault Secrets Officer' on the vault (RBAC), or the Get, Set and Delete secret permissions "
    "in its access policy (this app's Bicep grants it with adminImportWritesSecrets=true, "
    "azd env ADMIN_IMPORT_WRITES_SECRETS)"
)


def _vault_refusal(exc: HttpResponseError, vault: str, name: str, action: str, *, undone: bool) -> Exception:
    """A clear problem for Key Vault's refusal (403: the app's identity lacks a role; 409: a deleted secret
    of that name is kept for recovery); other errors as they are."""
    error = exc.error
    code = ((error.innererror or {}).get("code") or error.code) if error is not None else exc.reason
    after = " The secrets this import had written were removed;" if undone else ""
    after += " nothing was imported."
    if exc.status_code == 403:
        return VaultRefused(
            f"Key Vault {vault} refused to {action} secret {name!r} (403 {code}): the app's identity needs "
            f"{_ROLE}.{after}"
        )
    if exc.status_code == 409:
        return Refused(
            f"Key Vault {vault} keeps a deleted secret named {name!r} (409 {code}): recover or purge it, then "
            f"import again.{after}"
        )
    return exc


def _value_of(client: Any, vault: str, name: str) -> str | None:
    """The secret's current value (to restore it if the import is undone); None if there is none."""
    try:
        return client.get_secret(name).value
    except ResourceNotFoundError:
        return None
    except HttpResponseError as exc:
        raise _vault_refusal(exc, vault, name, "read", undone=False) from None


async def _undo_secrets(client: Any, written: list[tuple[str, str | None]]) -> None:
    """Put back what the import had written: an earlier value again, a new secret deleted (and purged, where
    the identity may and the vault allows it, so the next import can use the name). Never raises: a secret
    that could not be undone is logged by name."""
    for name, previous in reversed(written):
        try:
            if previous is not None:
                await asyncio.to_thread(client.set_secret, name, previous)
                continue
            poller = await asyncio.to_thread(client.begin_delete_secret, name)
            await asyncio.to_thread(poller.wait)
            try:
                await asyncio.to_thread(client.purge_deleted_secret, name)
            except HttpResponseError as exc:
                log.warning("import undone: secret %s deleted but not purged (%s)", name, exc.status_code)
        except HttpResponseError as exc:
            log.error(
                "import undone: secret %s could not be removed (%s): remove it by hand", name, exc.status_code
            )
