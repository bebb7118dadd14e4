"""The settings model: names, defaults, identity-based storage, and invalid values named one by one."""

from __future__ import annotations

import pytest

from shared.settings import APP_SETTINGS, SetIn, Settings, SettingsError, app_settings, settings


def test_defaults_when_nothing_is_set():
    s = Settings.from_environ({})
    assert (s.extracts_container, s.leases_container, s.runs_queue) == (
        "extracts",
        "task-leases",
        "task-runs",
    )
    assert (s.config_table, s.history_table, s.state_table) == ("connectorconfig", "runhistory", "taskstate")
    assert (s.tick_schedule, s.run_deadline_s, s.lease_s) == ("0 * * * * *", 3600.0, 60)
    assert (s.graph_concurrency, s.block_size, s.graph_backoff_s) == (8, 1024 * 1024, 1.0)
    assert s.storage_connection is None and s.blob_service_uri is None and s.ca_bundle is None
    assert s.environment_type == "dev" and s.appinsights_connection_string is None


def test_values_are_read_by_their_app_setting_names_and_empty_means_unset():
    s = Settings.from_environ(
        {
            "AzureWebJobsStorage": " UseDevelopmentStorage=true ",
            "LEASE_SECONDS": "30",
            "GRAPH_CONCURRENCY": "3",
            "RUN_DEADLINE_SECONDS": "90.5",
            "TICK_SCHEDULE": "0  */5 * * * *",
            "ENVIRONMENT_TYPE": "prod",
            "AZURE_CLIENT_ID": "c0ffee00-1234-4abc-9def-0123456789ab",
            "EXTRACTS_CONTAINER": "",  # empty: the default
            "lease_seconds": "15",  # another spelling is not the setting
            "lease_s": "15",  # nor is the attribute's name
        }
    )
    assert s.storage_connection == "UseDevelopmentStorage=true"
    assert (s.lease_s, s.graph_concurrency, s.run_deadline_s) == (30, 3, 90.5)
    assert s.tick_schedule == "0 */5 * * * *"
    assert s.environment_type == "prod"
    assert s.azure_client_id == "c0ffee00-1234-4abc-9def-0123456789ab"
    assert s.extracts_container == "extracts"


def test_from_environ_reads_only_the_mapping_it_is_given(monkeypatch):
    monkeypatch.setenv("LEASE_SECONDS", "30")
    monkeypatch.setenv("GRAPH_CONCURRENCY", "not a number")
    assert Settings.from_environ({}).lease_s == 60
    assert Settings.from_environ({"LEASE_SECONDS": "20"}).lease_s == 20


def test_identity_based_storage_from_the_account_name_as_the_functions_host_reads_it():
    s = Settings.from_environ(
        {"AzureWebJobsStorage__accountName": "stconn01", "AzureWebJobsStorage__clientId": "abc"}
    )
    assert s.storage_connection is None
    assert s.blob_service_uri == "https://stconn01.blob.core.windows.net"
    assert s.queue_service_uri == "https://stconn01.queue.core.windows.net"
    assert s.table_service_uri == "https://stconn01.table.core.windows.net"
    assert s.storage_client_id == "abc"


def test_explicit_service_uris_win_over_the_account_name():
    s = Settings.from_environ(
        {
            "AzureWebJobsStorage__accountName": "stconn01",
            "AzureWebJobsStorage__blobServiceUri": "https://stconn01.blob.core.usgovcloudapi.net",
        }
    )
    assert s.blob_service_uri == "https://stconn01.blob.core.usgovcloudapi.net"
    assert s.table_service_uri == "https://stconn01.table.core.windows.net"


def test_every_invalid_setting_is_named_and_no_value_is_echoed(tmp_path):
    with pytest.raises(SettingsError) as caught:
        Settings.from_environ(
            {
                "LEASE_SECONDS": "5",
                "GRAPH_CONCURRENCY": "eight",
                "TICK_SCHEDULE": "*/5 * * * *",
                "ENVIRONMENT_TYPE": "staging",
                "CONNECTOR_CA_BUNDLE": str(tmp_path / "missing.pem"),
                "AzureWebJobsStorage__queueServiceUri": "http://secret-host.example/",
                "BLOCK_SIZE_BYTES": "0",
                "CONFIG_TABLE": "config-table",
            }
        )
    named = [name for name, _ in caught.value.problems]
    assert sorted(named) == sorted(
        [
            "LEASE_SECONDS",
            "GRAPH_CONCURRENCY",
            "TICK_SCHEDULE",
            "ENVIRONMENT_TYPE",
            "CONNECTOR_CA_BUNDLE",
            "AzureWebJobsStorage__queueServiceUri",
            "BLOCK_SIZE_BYTES",
            "CONFIG_TABLE",
        ]
    )
    message = str(caught.value)
    assert "six fields" in message and "'test', 'prod', 'demo' or 'dev'" in message
    assert "secret-host" not in message and "staging" not in message


def test_a_ca_bundle_that_exists_is_kept(tmp_path):
    pem = tmp_path / "ca.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\n")
    assert Settings.from_environ({"CONNECTOR_CA_BUNDLE": str(pem)}).ca_bundle == str(pem)


def test_app_settings_are_derived_from_the_model():
    # Every field reads exactly one app setting, and the exported list is the model's, in field order.
    assert len(APP_SETTINGS) == len(Settings.model_fields) == len(set(APP_SETTINGS))
    assert APP_SETTINGS == app_settings()
    assert "CONNECTOR_CA_BUNDLE" in APP_SETTINGS and "AZURE_CLIENT_ID" in APP_SETTINGS
    # The connection string is for local runs only, the identity-based names for Azure only.
    assert "AzureWebJobsStorage" in app_settings(SetIn.LOCAL)
    assert "AzureWebJobsStorage" not in app_settings(SetIn.AZURE)
    assert "AzureWebJobsStorage__clientId" in app_settings(SetIn.AZURE)
    assert "AzureWebJobsStorage__clientId" not in app_settings(SetIn.LOCAL)
    assert set(app_settings(SetIn.AZURE)) | set(app_settings(SetIn.LOCAL)) == set(APP_SETTINGS)


def test_the_process_settings_come_from_the_environment_once(monkeypatch):
    settings.cache_clear()
    monkeypatch.setenv("GRAPH_CONCURRENCY", "5")
    try:
        assert settings().graph_concurrency == 5
        monkeypatch.setenv("GRAPH_CONCURRENCY", "6")
        assert settings().graph_concurrency == 5  # read once per process
        assert Settings().graph_concurrency == 6  # the BaseSettings source reads the environment too
        monkeypatch.setenv("GRAPH_CONCURRENCY", "0")
        settings.cache_clear()
        with pytest.raises(
            SettingsError, match="GRAPH_CONCURRENCY: Input should be greater than or equal to 1"
        ):
            settings()
    finally:
        settings.cache_clear()
