"""The per-process objects a run needs: settings, storage clients and stores, Graph clients.

Created lazily, once per process, and reused across invocations (Functions keeps the worker warm); no
import-time side effects. Tests and the CLI build their own with explicit settings.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

from azure.storage.blob import ContainerClient

from shared.config import Connector
from shared.credentials import build_credential
from shared.graph.auth import TokenProvider
from shared.graph.client import GraphClient
from shared.graph.pacing import Pacer, ServiceBudget
from shared.retry import RetryPolicy
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
    _graphs: dict[str, tuple[str, asyncio.AbstractEventLoop, GraphClient]] = field(default_factory=dict)
    _retired: list[tuple[asyncio.AbstractEventLoop, GraphClient]] = field(default_factory=list)

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
        return RunQueue(self.storage.queues.get_queue_client(self.settings.runs_queue), self.history)

    @cached_property
    def extracts(self) -> ContainerClient:
        return self.storage.blobs.get_container_client(self.settings.extracts_container)

    @cached_property
    def leases(self) -> ContainerClient:
        return self.storage.blobs.get_container_client(self.settings.leases_container)

    @cached_property
    def key_vault(self) -> AzureKeyVaultReader:
        from azure.identity import ManagedIdentityCredential

        client_id = self.settings.azure_client_id
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

    def graph(self, connector: Connector) -> GraphClient:
        """THE Graph client of a connector in this process: one connection pool, shared by every run and
        activity (each opens its own ``client.context(deadline=...)`` for its deadline and statistics).

        A changed connector definition gets a new client, and the old one is retired: closed (with its
        credential) once the callers using it are done (``GraphClient.retire``); another event loop gets a new
        client too (an httpx pool belongs to the loop it was opened on).
        """
        signature = connector.model_dump_json()
        loop = asyncio.get_running_loop()
        cached = self._graphs.get(connector.name)
        if cached is None or cached[0] != signature or cached[1] is not loop or cached[2].closed:
            old = cached[2] if cached is not None and cached[1] is loop and not cached[2].closed else None
            client = GraphClient(
                connector.graph_root,
                self.tokens(connector),
                verify=self.graph_verify(),
                policy=RetryPolicy(backoff_base_s=self.settings.graph_backoff_s),
                max_connections=max(16, 2 * self.settings.graph_concurrency),
                pacer=Pacer(
                    [
                        ServiceBudget(
                            "/deviceManagement", self.settings.intune_requests, self.settings.intune_window_s
                        )
                    ]
                ),
            )
            cached = (signature, loop, client)
            self._graphs[connector.name] = cached
            if old is not None:  # a connector edit: close the old pool once its callers are done
                old.retire(close_tokens=old.tokens is not client.tokens)
                self._retired = [(owner, c) for owner, c in self._retired if not c.closed] + [(loop, old)]
        return cached[2]

    async def aclose(self) -> None:
        """Close the Graph clients this process opened on the running loop (end of a CLI command, a test)."""
        loop = asyncio.get_running_loop()
        for name, (_, owner, client) in list(self._graphs.items()):
            if owner is loop:
                await client.close()
                del self._graphs[name]
        for client in [c for owner, c in self._retired if owner is loop]:
            if not client.closed:  # replaced clients still in their grace period
                await client.close()
        self._retired = [(owner, c) for owner, c in self._retired if owner is not loop]

    def graph_verify(self) -> ssl.SSLContext | bool:
        bundle = self.settings.ca_bundle
        return ssl.create_default_context(cafile=bundle) if bundle else True
