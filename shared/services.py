"""The per-process objects a run needs: settings, storage clients and stores, Graph token providers.

Created lazily, once per process, and reused across invocations (Functions keeps the worker warm); no
import-time side effects. Tests and the CLI build their own with explicit settings.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

from azure.storage.blob import ContainerClient

from shared.config import Connector
from shared.credentials import build_credential
from shared.graph.auth import TokenProvider
from shared.secrets import AzureKeyVaultReader
from shared.settings import Settings
from shared.storage.clients import StorageClients
from shared.storage.queues import RunQueue
from shared.storage.tables import ConfigStore, HistoryStore, StateStore


@dataclass
class Services:
    settings: Settings
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    _tokens: dict[str, tuple[str, TokenProvider]] = field(default_factory=dict)

    @cached_property
    def storage(self) -> StorageClients:
        return StorageClients(self.settings)

    @cached_property
    def config_store(self) -> ConfigStore:
        return ConfigStore(self.storage.tables.get_table_client(self.settings.config_table))

    @cached_property
    def history(self) -> HistoryStore:
        return HistoryStore(self.storage.tables.get_table_client(self.settings.history_table))

    @cached_property
    def state(self) -> StateStore:
        return StateStore(self.storage.tables.get_table_client(self.settings.state_table))

    @cached_property
    def queue(self) -> RunQueue:
        return RunQueue(self.storage.queues.get_queue_client(self.settings.runs_queue))

    @cached_property
    def extracts(self) -> ContainerClient:
        return self.storage.blobs.get_container_client(self.settings.extracts_container)

    @cached_property
    def leases(self) -> ContainerClient:
        return self.storage.blobs.get_container_client(self.settings.leases_container)

    @cached_property
    def key_vault(self) -> AzureKeyVaultReader:
        from azure.identity import ManagedIdentityCredential

        client_id = self.environ.get("AZURE_CLIENT_ID") or None
        return AzureKeyVaultReader(ManagedIdentityCredential(client_id=client_id))

    def tokens(self, connector: Connector) -> TokenProvider:
        """One token provider per connector definition, so runs in one process share tokens."""
        signature = connector.model_dump_json()
        cached = self._tokens.get(connector.name)
        if cached is None or cached[0] != signature:
            uses_key_vault = "key_vault" in signature

            def credential():
                return build_credential(
                    connector, environ=self.environ, key_vault=self.key_vault if uses_key_vault else None
                )

            cached = (signature, TokenProvider(credential(), connector.scope, renew=credential))
            self._tokens[connector.name] = cached
        return cached[1]

    def graph_verify(self) -> ssl.SSLContext | bool:
        bundle = self.settings.ca_bundle
        return ssl.create_default_context(cafile=bundle) if bundle else True
