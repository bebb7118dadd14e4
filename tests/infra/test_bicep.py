"""Static checks of infra/: every Bicep file parses, follows the Azure Verified Modules conventions the
project keeps, wires what the connector needs, and sets exactly the app settings the settings model reads.

These read the Bicep as text and through pycep-parser; nothing here deploys (see README, Deploy).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from pycep import BicepParser

from shared import telemetry
from shared.settings import SetIn, Settings, app_settings

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))

# Settings the Functions host reads itself (not the connector's code), by where they are set.
# https://learn.microsoft.com/azure/azure-functions/functions-app-settings
HOST_SETTINGS_AZURE = {
    "AzureWebJobsStorage__credential",  # identity-based host storage: "managedidentity"
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",  # the host's Entra ID ingestion (ClientId=...;Authorization=AAD)
}
HOST_SETTINGS_LOCAL = {
    "FUNCTIONS_WORKER_RUNTIME"
}  # Core Tools; Flex Consumption sets it in functionAppConfig


def parse(path: Path) -> dict[str, Any]:
    return BicepParser().parse(file_path=path)


@pytest.fixture(scope="module")
def main() -> dict[str, Any]:
    return parse(INFRA / "main.bicep")


def module(name: str) -> dict[str, Any]:
    return parse(INFRA / "modules" / f"{name}.bicep")


def test_there_is_a_main_and_modules():
    names = {path.relative_to(INFRA).as_posix() for path in BICEP_FILES}
    assert {
        "main.bicep",
        "modules/functionapp.bicep",
        "modules/storage.bicep",
        "modules/roles.bicep",
    } <= names


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda path: path.relative_to(INFRA).as_posix())
def test_bicep_file_parses_and_follows_the_conventions(path: Path):
    parsed = parse(path)
    for name, parameter in parsed.get("parameters", {}).items():
        descriptions = [d["argument"] for d in parameter["decorators"] if d["type"] == "description"]
        assert descriptions, f"{path.name}: parameter {name} has no @description"
        assert descriptions[0].startswith(("Required.", "Optional.")), (
            f"{path.name}: {name}: {descriptions[0]}"
        )
        if descriptions[0].startswith("Required."):
            assert parameter["default"] is None, f"{path.name}: required parameter {name} has a default"
    for name in parsed.get("outputs", {}):
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*", name), f"{path.name}: output {name} is not UPPER_SNAKE"


def test_main_only_wires_modules(main):
    # The resource group is the only resource main declares; everything else is in a module.
    assert [resource["type"] for resource in main["resources"].values()] == [
        "Microsoft.Resources/resourceGroups"
    ]
    for name, wired in main["modules"].items():
        assert wired["type"] == "local" and (INFRA / wired["detail"]["path"]).is_file(), name


def test_main_takes_the_per_tenant_parameters(main):
    parameters = main["parameters"]
    for name in ("environmentName", "environmentType", "location", "graphTenantId", "graphClientId"):
        assert name in parameters
    allowed = {d["type"]: d["argument"] for d in parameters["environmentType"]["decorators"]}["allowed"]
    assert sorted(allowed) == ["demo", "dev", "prod", "test"]
    kinds = {d["type"]: d["argument"] for d in parameters["credentialKind"]["decorators"]}["allowed"]
    assert sorted(kinds) == ["certificate", "client_secret", "managed_identity"]
    Settings.from_environ({"TICK_SCHEDULE": parameters["tickSchedule"]["default"]})  # a valid tick


def _authoring_value(value: Any, parsed: dict[str, Any]) -> str | None:
    """A pycep value as the setting's value where Bicep knows it when written (a literal, or a variable
    holding one); None for parameters, module outputs and interpolations."""
    if not isinstance(value, str) or "${" in value or value in parsed["parameters"]:
        return None
    if value in parsed["variables"]:
        held = parsed["variables"][value]["value"]
        return held if isinstance(held, str) else None
    return value


def test_app_settings_are_exactly_the_settings_model_plus_the_hosts_own(main):
    variables = main["variables"]
    host = set(variables["hostSettings"]["value"])
    connector = variables["connectorSettings"]["value"]
    assert host == HOST_SETTINGS_AZURE
    assert list(connector) == list(app_settings(SetIn.AZURE))  # same names, in the model's order
    # The Function App gets exactly these two sets.
    app_settings_param = main["modules"]["functionApp"]["config"]["params"]["appSettings"]
    assert app_settings_param == {
        "function": {"type": "union", "parameters": {"arg_1": "hostSettings", "arg_2": "connectorSettings"}}
    }
    # The values Bicep knows at authoring time are valid settings, and the names the storage module
    # creates are those the app settings name.
    environ = {
        setting: known
        for setting, value in connector.items()
        if (known := _authoring_value(value, main)) is not None
    }
    assert {"EXTRACTS_CONTAINER", "RUNS_QUEUE", "CONFIG_TABLE", "LEASE_SECONDS"} <= set(environ)
    settings = Settings.from_environ(environ)
    storage = main["modules"]["storage"]["config"]["params"]
    assert variables[storage["extractsContainerName"]]["value"] == settings.extracts_container
    assert variables[storage["leasesContainerName"]]["value"] == settings.leases_container
    assert variables[storage["runsQueueName"]]["value"] == settings.runs_queue
    tables = [variables[name]["value"] for name in storage["tableNames"]]
    assert tables == [
        settings.config_table,
        settings.history_table,
        settings.state_table,
        settings.idempotency_table,
        settings.usage_table,
    ]


def test_local_example_lists_exactly_the_settings_model_for_local_runs():
    values = json.loads((ROOT / "local.settings.example.json").read_text())["Values"]
    config = json.loads((ROOT / "examples" / "config.example.json").read_text())
    secret_references = set(re.findall(r'"app_setting":\s*"([^"]+)"', json.dumps(config)))
    listed = set(values) - HOST_SETTINGS_LOCAL
    # Settings a connector's secret references name are the customer's, not the model's.
    assert listed - set(app_settings(SetIn.LOCAL)) <= secret_references
    assert set(app_settings(SetIn.LOCAL)) <= listed
    Settings.from_environ(
        {name: values[name] for name in app_settings(SetIn.LOCAL) if name != "AzureWebJobsStorage"}
    )


def test_role_assignments_are_one_loop_by_role_name_with_deterministic_names(main):
    roles = module("roles")
    assignments = [
        r for r in roles["resources"].values() if r["type"] == "Microsoft.Authorization/roleAssignments"
    ]
    assert len(assignments) == 1
    config = assignments[0]["config"]
    assert config["loop_type"]["type"] == "array"
    name = config["config"]["name"]["function"]
    assert name["type"] == "guid"
    assert set(name["parameters"]) == {
        "base_string",
        "extra_string_1",
        "extra_string_2",
    }  # scope, principal, role
    # No other module or main assigns roles, and every role main asks for is one roles.bicep knows by name.
    for path in BICEP_FILES:
        if path.name != "roles.bicep":
            assert "Microsoft.Authorization/roleAssignments" not in path.read_text(), path.name
    known = {name.strip("'") for name in roles["variables"]["roleIds"]["value"]}
    app_roles = set(main["variables"]["appRoles"]["value"]) - {"appKeyVaultRole"}
    asked = app_roles | set(main["variables"]["deployerRoles"]["value"])
    asked |= {"Key Vault Secrets User", "Key Vault Secrets Officer"}
    assert asked <= known


def test_the_app_writes_secrets_only_where_the_admin_import_stores_secret_values(main):
    """The admin import sets secrets (Key Vault's Set Secret): the app's identity gets Key Vault Secrets
    Officer only when the parameter asks for it, Key Vault Secrets User (read) otherwise, never both."""
    parameter = main["parameters"]["adminImportWritesSecrets"]
    assert parameter["type"] == "bool" and parameter["default"] is False
    app_roles = main["variables"]["appRoles"]["value"]
    assert "appKeyVaultRole" in app_roles
    assert not {"Key Vault Secrets User", "Key Vault Secrets Officer"} & set(app_roles)
    choice = main["variables"]["appKeyVaultRole"]["value"]["operator"]
    assert choice == {
        "type": "conditional",
        "operands": {
            "condition": "adminImportWritesSecrets",
            "true_value": "Key Vault Secrets Officer",
            "false_value": "Key Vault Secrets User",
        },
    }
    params = (INFRA / "main.bicepparam").read_text()
    assert "readEnvironmentVariable('ADMIN_IMPORT_WRITES_SECRETS', 'false')" in params


def test_app_service_authentication_signs_in_administrators_without_locking_out_function_keys(main):
    """Entra ID sign-in for the management page (shared/admin/access.py reads the principal header the
    platform sets): configured only with the admin app registration's client id, never required globally
    (the function-key routes stay reachable), with the registration's Application ID URI as an audience."""
    from shared.admin.access import ADMIN_ROLE

    app = module("functionapp")
    assert app["parameters"]["adminClientId"]["default"] == ""
    [auth] = [r["config"] for r in app["resources"].values() if r["type"] == "Microsoft.Web/sites/config"]
    assert auth["condition"] == {
        "operator": {
            "type": "not",
            "operands": {
                "bool_value": {"function": {"type": "empty", "parameters": {"item_to_test": "adminClientId"}}}
            },
        }
    }
    config = auth["config"]
    assert config["parent"] == "app" and config["name"] == "authsettingsV2"
    properties = config["properties"]
    assert properties["platform"] == {"enabled": True}
    assert properties["globalValidation"] == {
        "requireAuthentication": False,
        "unauthenticatedClientAction": "AllowAnonymous",
    }
    entra = properties["identityProviders"]["azureActiveDirectory"]
    assert entra["enabled"] is True and entra["registration"]["clientId"] == "adminClientId"
    assert entra["registration"]["openIdIssuer"].endswith("${tenant().tenantId}/v2.0")
    assert entra["validation"]["allowedAudiences"] == ["api://${adminClientId}"]
    assert "clientSecretSettingName" not in entra["registration"]  # no secret: no app setting to add
    assert main["modules"]["functionApp"]["config"]["params"]["adminClientId"] == "adminClientId"
    assert "readEnvironmentVariable('ADMIN_CLIENT_ID', '')" in (INFRA / "main.bicepparam").read_text()
    # The app role the page requires is the one the README tells administrators to create.
    readme = (ROOT / "README.md").read_text()
    assert f'"value": "{ADMIN_ROLE}"' in readme and "ADMIN_CLIENT_ID" in readme


def _resource(parsed: dict[str, Any], kind: str) -> dict[str, Any]:
    [found] = [r for r in parsed["resources"].values() if r["type"] == kind]
    return found["config"]


def test_function_app_is_flex_consumption_python_with_the_user_assigned_identity():
    app = module("functionapp")
    plan = _resource(app, "Microsoft.Web/serverfarms")
    assert (
        plan["sku"] == {"tier": "FlexConsumption", "name": "FC1"} and plan["properties"]["reserved"] is True
    )
    site = _resource(app, "Microsoft.Web/sites")
    assert site["kind"] == "functionapp,linux" and site["identity"]["type"] == "UserAssigned"
    config = site["properties"]["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "pythonVersion"}
    assert app["parameters"]["pythonVersion"]["default"] == "3.11"
    assert config["deployment"]["storage"]["type"] == "blobContainer"
    assert config["deployment"]["storage"]["authentication"]["type"] == "UserAssignedIdentity"
    assert set(config["scaleAndConcurrency"]) == {"maximumInstanceCount", "instanceMemoryMB"}
    assert site["properties"]["httpsOnly"] is True


def test_storage_has_no_shared_keys_and_holds_the_connectors_data():
    storage = module("storage")
    account = _resource(storage, "Microsoft.Storage/storageAccounts")["properties"]
    assert account["allowSharedKeyAccess"] is False and account["allowBlobPublicAccess"] is False
    assert account["minimumTlsVersion"] == "TLS1_2"
    kinds = {r["type"] for r in storage["resources"].values()}
    assert {
        "Microsoft.Storage/storageAccounts/blobServices/containers",
        "Microsoft.Storage/storageAccounts/tableServices/tables",
        "Microsoft.Storage/storageAccounts/queueServices/queues",
        "Microsoft.Storage/storageAccounts/managementPolicies",
    } <= kinds
    rule = _resource(storage, "Microsoft.Storage/storageAccounts/managementPolicies")["properties"]["policy"]
    assert rule["rules"][0]["definition"]["filters"]["prefixMatch"] == ["${extractsContainerName}/"]


def test_key_vault_uses_rbac_and_monitoring_has_local_auth_off():
    vault = _resource(module("keyvault"), "Microsoft.KeyVault/vaults")["properties"]
    assert vault["enableRbacAuthorization"] is True and vault["enablePurgeProtection"] is True
    monitoring = module("monitoring")
    assert _resource(monitoring, "Microsoft.Insights/components")["properties"]["DisableLocalAuth"] is True
    workspace = _resource(monitoring, "Microsoft.OperationalInsights/workspaces")["properties"]
    assert workspace["features"]["disableLocalAuth"] is True


def test_alerts_and_workbook_query_only_the_telemetry_the_connector_emits():
    known_metrics = set(telemetry.METRICS)
    known_events = set(telemetry.EVENTS)
    known_dimensions = set(telemetry.DIMENSIONS) | set(telemetry.EVENT_FIELDS)
    for name in ("alerts", "workbook"):
        text = (INFRA / "modules" / f"{name}.bicep").read_text()
        metrics = set(re.findall(r'"(connector\.[a-z_.]+)"', text)) - {telemetry.EVENT_ATTRIBUTE}
        events = set(re.findall(r'\["connector\.event"\]\) == "([a-z_.]+)"', text))
        dimensions = set(re.findall(r"customDimensions\.([a-z_]+)", text))
        assert metrics and metrics <= known_metrics, (name, metrics - known_metrics)
        assert events and events <= known_events, (name, events - known_events)
        assert dimensions <= known_dimensions, (name, dimensions - known_dimensions)


def test_alert_rules_cover_the_monitored_failures_and_follow_the_environment_type():
    alerts = module("alerts")
    rules = {rule["name"] for rule in alerts["variables"]["rules"]["value"]}
    assert rules == {
        "failed-scheduled-run",
        "run-held-by-deletion-guard",
        "failed-delivery",
        "failing-activities",
        "sustained-graph-throttling",
        "task-without-successful-run",
        "credential-expiring",
    }
    text = (INFRA / "modules" / "alerts.bicep").read_text()
    assert "var isProd = environmentType == 'prod'" in text
    assert "var severityFailure = isProd ? 1 : 3" in text and "var severityWarning = isProd ? 2 : 4" in text


def test_the_notification_key_is_stored_where_the_app_setting_refers_and_registered_after_deploy(main):
    """The key Graph's notification URL carries: Bicep writes it to the Key Vault secret the app setting's
    Key Vault reference names (before the app starts, so the reference resolves), and azure.yaml's postdeploy
    hook registers the same value as a function key (ARM cannot before the app's code runs)."""
    setting = main["variables"]["connectorSettings"]["value"]["NOTIFICATION_FUNCTION_KEY"]
    assert setting == (
        "@Microsoft.KeyVault(VaultName=${keyVault.outputs.NAME};SecretName=${notificationKeySecretName})"
    )
    assert any(d["type"] == "secure" for d in main["parameters"]["notificationFunctionKey"]["decorators"])
    params = main["modules"]["keyVault"]["config"]["params"]
    assert params["notificationKeySecretName"] == "notificationKeySecretName"
    assert params["notificationFunctionKey"] == "notificationFunctionKey"
    vault = module("keyvault")
    [secret] = [r for r in vault["resources"].values() if r["type"] == "Microsoft.KeyVault/vaults/secrets"]
    assert secret["config"]["condition"]  # only when a key is given
    assert secret["config"]["config"]["name"] == "notificationKeySecretName"
    assert secret["config"]["config"]["properties"] == {
        "value": "notificationFunctionKey",
        "contentType": "text/plain",
    }
    assert any(d["type"] == "secure" for d in vault["parameters"]["notificationFunctionKey"]["decorators"])
    assert (
        "readEnvironmentVariable('NOTIFICATION_FUNCTION_KEY', '')" in (INFRA / "main.bicepparam").read_text()
    )

    azure_yaml = (ROOT / "azure.yaml").read_text()
    hook = INFRA / "hooks" / "register-notification-key.sh"
    assert "postdeploy:" in azure_yaml and "run: ./infra/hooks/register-notification-key.sh" in azure_yaml
    assert hook.is_file() and hook.stat().st_mode & 0o111, "the hook must be executable"
    script = hook.read_text()
    assert "az functionapp keys set" in script and "--key-type functionKeys" in script
    assert '--key-value "$NOTIFICATION_FUNCTION_KEY"' in script and "set -x" not in script  # never echoed


def test_histogram_means_are_sums_over_counts():
    """A histogram's customMetrics row aggregates one export interval (valueSum over valueCount measurements):
    a mean over rows is sum(valueSum) / sum(valueCount); avg(value) or value * valueCount is wrong as soon as
    an interval holds more than one measurement."""
    histograms = [name for name, (kind, _, _) in telemetry.METRICS.items() if kind == "histogram"]
    checked = 0
    for name in ("alerts", "workbook"):
        for line in (INFRA / "modules" / f"{name}.bicep").read_text().splitlines():
            if "query:" in line and any(f'"{metric}"' in line for metric in histograms):
                checked += 1
                assert "valueSum" in line and "valueCount" in line, line
                assert "avg(value)" not in line and "value * valueCount" not in line, line
    assert checked >= 2
