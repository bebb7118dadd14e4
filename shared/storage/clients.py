"""Storage clients (blob, queue, table), created once per process and reused across invocations.

Locally (Azurite) and in tests they come from a connection string; in Azure from the account's service
URIs with the Function App's managed identity (no shared keys), the same settings the Functions host
uses for ``AzureWebJobsStorage``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueServiceClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from shared.settings import Settings


class Base64QueueService(QueueServiceClient):
    """A queue service whose queue clients read and write messages as base64, as the Functions host does
    (host.json ``messageEncoding``). The SDK does not hand a service client's message policies down to
    the queue clients it makes, so they are given here."""

    def get_queue_client(self, queue, **kwargs):
        kwargs.setdefault("message_encode_policy", TextBase64EncodePolicy())
        kwargs.setdefault("message_decode_policy", TextBase64DecodePolicy())
        return super().get_queue_client(queue, **kwargs)


@dataclass
class StorageClients:
    settings: Settings

    def _credential(self):
        from azure.identity import ManagedIdentityCredential

        return ManagedIdentityCredential(client_id=self.settings.storage_client_id)

    @cached_property
    def blobs(self) -> BlobServiceClient:
        # Downloads of whole blobs read 4 MiB ranges (the SDK's default first read is 32 MiB, held in memory at
        # once); view files are read in ranges of their own (shared.storage.blobs.READ_CHUNK).
        chunk = 4 * 1024 * 1024
        if self.settings.storage_connection:
            return BlobServiceClient.from_connection_string(
                self.settings.storage_connection, max_single_get_size=chunk, max_chunk_get_size=chunk
            )
        return BlobServiceClient(
            self._require(self.settings.blob_service_uri, "blob"),
            credential=self._credential(),
            max_single_get_size=chunk,
            max_chunk_get_size=chunk,
        )

    @cached_property
    def queues(self) -> QueueServiceClient:
        # The Functions host reads and writes queue messages as base64 (host.json messageEncoding).
        if self.settings.storage_connection:
            return Base64QueueService.from_connection_string(self.settings.storage_connection)
        return Base64QueueService(
            self._require(self.settings.queue_service_uri, "queue"), credential=self._credential()
        )

    @cached_property
    def tables(self) -> TableServiceClient:
        if self.settings.storage_connection:
            return TableServiceClient.from_connection_string(self.settings.storage_connection)
        return TableServiceClient(
            endpoint=self._require(self.settings.table_service_uri, "table"), credential=self._credential()
        )

    @staticmethod
    def _require(uri: str | None, kind: str) -> str:
        if not uri:
            raise RuntimeError(
                f"no {kind} storage configured: set AzureWebJobsStorage (connection string) or "
                f"AzureWebJobsStorage__accountName / AzureWebJobsStorage__{kind}ServiceUri"
            )
        return uri

    def ensure(self) -> None:
        """Create the containers, tables and queue if missing (idempotent; cheap at cold start)."""
        from azure.core.exceptions import ResourceExistsError

        s = self.settings
        for container in (s.extracts_container, s.leases_container):
            try:
                self.blobs.create_container(container)
            except ResourceExistsError:
                pass
        for table in (s.config_table, s.history_table, s.state_table):
            self.tables.create_table_if_not_exists(table)
        for queue in (s.runs_queue, f"{s.runs_queue}-poison"):
            try:
                self.queues.create_queue(queue)
            except ResourceExistsError:
                pass
