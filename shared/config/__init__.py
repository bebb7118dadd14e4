"""The configuration: connectors (how to reach one Entra tenant) and tasks (what to do with it).

``load_config`` / ``parse_config`` validate a whole file and raise :class:`ConfigError` listing every problem
found, each with a path such as ``tasks[0].users.mappings[2].local``. Loading is pure: nothing is written.

The package's modules: ``fields`` (patterns and field types), ``issues`` (problems and their paths),
``credentials`` and ``connectors``, ``queries`` (the Graph query options a selection carries),
``selections``, ``tasks`` (task kinds, a union told apart by ``usage``), ``document`` (the file as a whole),
``translation`` (pydantic's errors as issues), ``loading`` and ``schema``.

``python -m shared.config --write-schema`` regenerates ``schema/config.schema.json`` from the models;
``python -m shared.config --check FILE...`` validates configuration files.
"""

from shared.config.connectors import CLOUD_ENDPOINTS, Cloud, CloudEndpoints, Connector
from shared.config.credentials import (
    CertificateCredentialConfig,
    ClientSecretCredentialConfig,
    CredentialConfig,
    ManagedIdentityCredentialConfig,
)
from shared.config.document import Config
from shared.config.fields import PSEUDO_ATTRIBUTES
from shared.config.issues import ConfigError, ConfigIssue
from shared.config.loading import load_config, parse_config
from shared.config.schema import SCHEMA_ID, SCHEMA_PATH, config_json_schema, main, render_json_schema
from shared.config.selections import AttributeMapping, GroupSelection, ObjectSelection, UserSelection
from shared.config.tasks import TASK_KINDS, AnyTask, MappingsType, ScheduledTask, SyncMode
from shared.secrets import SecretRef

__all__ = [
    "CLOUD_ENDPOINTS",
    "PSEUDO_ATTRIBUTES",
    "SCHEMA_ID",
    "SCHEMA_PATH",
    "TASK_KINDS",
    "AnyTask",
    "AttributeMapping",
    "CertificateCredentialConfig",
    "ClientSecretCredentialConfig",
    "Cloud",
    "CloudEndpoints",
    "Config",
    "ConfigError",
    "ConfigIssue",
    "Connector",
    "CredentialConfig",
    "GroupSelection",
    "ManagedIdentityCredentialConfig",
    "MappingsType",
    "ObjectSelection",
    "ScheduledTask",
    "SecretRef",
    "SyncMode",
    "UserSelection",
    "config_json_schema",
    "load_config",
    "main",
    "parse_config",
    "render_json_schema",
]
