"""Configuration models, loading with complete error reports, JSON Schema."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pytest

from shared.config import (
    SCHEMA_ID,
    SCHEMA_PATH,
    CertificateCredentialConfig,
    ConfigError,
    ConfigIssue,
    ManagedIdentityCredentialConfig,
    ScheduledTask,
    UserSelection,
    config_json_schema,
    load_config,
    parse_config,
)
from shared.config import schema as config_module
from shared.odata import FilterError, parse_filter
from shared.secrets import SecretRef

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "config.example.json"

CLIENT_ID = "3f2c1a9e-8b7d-4c6e-9f01-2a3b4c5d6e7f"
GROUP_A = "0d3c2b1a-9f8e-4d7c-8b6a-5f4e3d2c1b0a"
GROUP_B = "1e2d3c4b-5a69-4788-9a1b-2c3d4e5f6a7b"


def connector_data(**overrides: Any) -> dict[str, Any]:
    data = {
        "name": "contoso",
        "tenant_id": "contoso.onmicrosoft.com",
        "client_id": CLIENT_ID,
        "credential": {"type": "client_secret", "secret": {"app_setting": "CONTOSO_SECRET"}},
    }
    data.update(overrides)
    return data


def selection_data(**overrides: Any) -> dict[str, Any]:
    data = {
        "mappings": [
            {"external": "displayName", "local": "name"},
            {"external": "mail", "local": "email"},
        ],
        "target_template": "template",
        "target_folder": "folder",
    }
    data.update(overrides)
    return data


def task_data(**overrides: Any) -> dict[str, Any]:
    data = {
        "name": "nightly",
        "connector": "contoso",
        "schedule": "0 30 2 * * *",
        "mode": "full",
        "mappings_type": "identity_and_access",
        "users": selection_data(),
        "groups": selection_data(),
    }
    data.update(overrides)
    return data


def config_data(*, connectors: list | None = None, tasks: list | None = None) -> dict[str, Any]:
    return {
        "connectors": connectors if connectors is not None else [connector_data()],
        "tasks": tasks if tasks is not None else [task_data()],
    }


def with_users(**overrides: Any) -> dict[str, Any]:
    return config_data(tasks=[task_data(users=selection_data(**overrides))])


def with_groups(**overrides: Any) -> dict[str, Any]:
    return config_data(tasks=[task_data(groups=selection_data(**overrides))])


def issues_of(data: Any) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    return caught.value.errors


def messages_at(data: Any, path: str) -> list[str]:
    issues = issues_of(data)
    messages = [issue.message for issue in issues if issue.path == path]
    assert messages, f"no problem reported at {path}; got {issues}"
    return messages


def only_issue(data: Any) -> ConfigIssue:
    issues = issues_of(data)
    assert len(issues) == 1, issues
    return issues[0]


# ----------------------------------------------------------------------------------- loading


def test_example_config_loads_with_every_feature_it_shows() -> None:
    config = load_config(EXAMPLE)

    assert [c.name for c in config.connectors] == ["contoso", "fabrikam-gov", "northwind"]
    assert [t.name for t in config.tasks] == [
        "contoso-nightly-full",
        "contoso-users-incremental",
        "fabrikam-finance-users",
        "northwind-groups-on-demand",
        "contoso-managed-devices",
    ]
    devices = config.task("contoso-managed-devices").generic
    assert devices is not None and devices.timestamp_property == "lastSyncDateTime"
    assert [len(q.sub_queries) for q in devices.sub_queries] == [0, 1]  # two sub-queries, one two levels deep
    assert {c.credential.type for c in config.connectors} == {
        "client_secret",
        "certificate",
        "managed_identity",
    }
    assert config.connector("fabrikam-gov").graph_root == "https://graph.microsoft.us"
    assert config.task("northwind-groups-on-demand").schedule is None
    assert config.task("northwind-groups-on-demand").enabled is False


def test_load_config_accepts_json_text_as_well_as_a_path() -> None:
    text = EXAMPLE.read_text()

    assert load_config(text) == load_config(EXAMPLE)


def test_parse_config_returns_the_validated_config() -> None:
    config = parse_config(config_data())

    assert config.tasks[0].users is not None
    assert config.tasks[0].users.mappings[0].external == "displayName"


def test_loading_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config_data()))

    load_config(path)
    with pytest.raises(ConfigError):
        load_config(json.dumps({"connectors": "nope"}))

    assert list(tmp_path.iterdir()) == [path]


def test_invalid_json_is_reported_with_line_and_column() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config('{\n  "connectors": [,\n]}')

    assert caught.value.errors == [
        ConfigIssue("", "invalid JSON at line 2, column 18: Expecting value"),
    ]


def test_a_key_repeated_in_one_json_object_is_an_error() -> None:
    text = json.dumps(config_data())[:-1] + ', "tasks": []}'

    with pytest.raises(ConfigError) as caught:
        load_config(text)

    assert caught.value.errors == [ConfigIssue("tasks", "key appears more than once in the same object")]


def test_configuration_that_is_not_an_object_is_an_error() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config("[]")

    assert [issue.path for issue in caught.value.errors] == [""]


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "missing.json")

    assert "cannot read" in caught.value.errors[0].message


def test_config_error_survives_pickling() -> None:
    error = ConfigError([ConfigIssue("tasks[0].mode", "must be 'full' or 'incremental'")])

    copy = pickle.loads(pickle.dumps(error))

    assert (copy.errors, str(copy)) == (error.errors, str(error))


def test_every_problem_in_a_file_is_reported_with_its_path() -> None:
    data = {
        "connectors": [
            connector_data(),
            connector_data(tenant_id="not a tenant", login_url="http://login.example.com"),
            connector_data(name="fabrikam", credential={"type": "password"}),
        ],
        "tasks": [
            task_data(
                connector="contso",
                schedule="*/5 * * * *",
                users=selection_data(
                    query="$select=id",
                    mappings=[
                        {"external": "displayName", "local": "name"},
                        {"external": "mail", "local": "name"},
                    ],
                ),
                groups=selection_data(headers={"Authorization": "Bearer x"}),
            ),
            task_data(mode="sometimes", shedule="0 0 * * * *"),
        ],
    }

    issues = issues_of(data)

    assert [issue.path for issue in issues] == [
        "connectors[1].login_url",
        "connectors[1].name",
        "connectors[1].tenant_id",
        "connectors[2].credential.type",
        "tasks[0].connector",
        "tasks[0].groups.headers.Authorization",
        "tasks[0].schedule",
        "tasks[0].users.mappings[1].local",
        "tasks[0].users.query",
        "tasks[1].mode",
        "tasks[1].name",
        "tasks[1].shedule",
    ]


def test_error_text_lists_one_path_and_message_per_line_in_natural_path_order() -> None:
    tasks = [task_data(name=f"task{i}") for i in range(11)]
    tasks[2]["mode"] = "bad"
    tasks[10]["mode"] = "bad"

    with pytest.raises(ConfigError) as caught:
        parse_config(config_data(tasks=tasks))

    assert str(caught.value).splitlines() == [
        "tasks[2].mode: must be 'full' or 'incremental'",
        "tasks[10].mode: must be 'full' or 'incremental'",
    ]


# ------------------------------------------------------------------------------- strictness


def test_unknown_root_key_is_an_error() -> None:
    data = config_data()
    data["taks"] = []

    assert messages_at(data, "taks") == ["unknown key; did you mean 'tasks'?"]


def test_unknown_nested_key_is_an_error() -> None:
    data = with_users(mappings=[{"external": "mail", "local": "email", "locale": "x"}])

    assert messages_at(data, "tasks[0].users.mappings[0].locale")[0].startswith("unknown key")


def test_dollar_schema_key_is_allowed_at_the_root() -> None:
    data = config_data()
    data["$schema"] = "../schema/config.schema.json"

    assert parse_config(data).schema_uri == "../schema/config.schema.json"


def test_json_types_are_not_coerced() -> None:
    data = config_data(tasks=[task_data(enabled="true")])

    assert messages_at(data, "tasks[0].enabled") == ["must be true or false"]


def test_missing_required_field_is_reported() -> None:
    data = config_data(tasks=[task_data()])
    del data["tasks"][0]["mode"]

    assert messages_at(data, "tasks[0].mode") == ["required"]


# -------------------------------------------------------------------------------- connectors


@pytest.mark.parametrize("name", ["a", "contoso", "Contoso_01", "9-lives", "x" * 63])
def test_connector_name_accepts_letters_digits_underscore_dash(name: str) -> None:
    data = config_data(connectors=[connector_data(name=name)], tasks=[task_data(connector=name)])

    assert parse_config(data).connectors[0].name == name


@pytest.mark.parametrize("name", ["", "-lead", "_lead", "has space", "slash/name", "x" * 64])
def test_connector_name_outside_the_pattern_is_an_error(name: str) -> None:
    data = config_data(connectors=[connector_data(name=name)], tasks=[])

    assert "letters, digits" in messages_at(data, "connectors[0].name")[0]


def test_connector_names_must_be_unique_ignoring_case() -> None:
    data = config_data(connectors=[connector_data(), connector_data(name="Contoso")])

    assert messages_at(data, "connectors[1].name") == [
        "duplicate connector name 'Contoso' (also connectors[0]; names ignore case)"
    ]


@pytest.mark.parametrize(
    "tenant_id", ["6b1d5c2e-4a3f-4e8d-9c7b-0a1b2c3d4e5f", "contoso.onmicrosoft.com", "contoso.com"]
)
def test_tenant_id_is_a_guid_or_a_domain(tenant_id: str) -> None:
    assert parse_config(config_data(connectors=[connector_data(tenant_id=tenant_id)])).connectors[0]


@pytest.mark.parametrize("tenant_id", ["contoso", "common", "6b1d5c2e-4a3f", "https://contoso.com"])
def test_tenant_id_that_is_neither_guid_nor_domain_is_an_error(tenant_id: str) -> None:
    data = config_data(connectors=[connector_data(tenant_id=tenant_id)])

    assert "GUID" in messages_at(data, "connectors[0].tenant_id")[0]


def test_client_id_must_be_a_guid() -> None:
    data = config_data(connectors=[connector_data(client_id="my-app")])

    assert "GUID" in messages_at(data, "connectors[0].client_id")[0]


def test_guids_are_normalized_to_lowercase() -> None:
    config = parse_config(config_data(connectors=[connector_data(client_id=CLIENT_ID.upper())]))

    assert config.connectors[0].client_id == CLIENT_ID


@pytest.mark.parametrize(
    ("cloud", "login_url", "graph_url"),
    [
        ("global", "https://login.microsoftonline.com", "https://graph.microsoft.com"),
        ("usgov", "https://login.microsoftonline.us", "https://graph.microsoft.us"),
        ("usgovdod", "https://login.microsoftonline.us", "https://dod-graph.microsoft.us"),
        ("china", "https://login.chinacloudapi.cn", "https://microsoftgraph.chinacloudapi.cn"),
    ],
)
def test_cloud_sets_default_login_and_graph_urls(cloud: str, login_url: str, graph_url: str) -> None:
    connector = parse_config(config_data(connectors=[connector_data(cloud=cloud)])).connectors[0]

    assert (connector.login_url, connector.graph_url) == (login_url, graph_url)
    assert (connector.authority, connector.graph_root) == (login_url, graph_url)
    assert connector.scope == f"{graph_url}/.default"


def test_cloud_defaults_to_global() -> None:
    connector = parse_config(config_data()).connectors[0]

    assert connector.cloud == "global"
    assert connector.login_url == "https://login.microsoftonline.com"


def test_unknown_cloud_is_an_error() -> None:
    data = config_data(connectors=[connector_data(cloud="azure")])

    assert messages_at(data, "connectors[0].cloud") == ["must be 'global', 'usgov', 'usgovdod' or 'china'"]


def test_explicit_urls_override_the_cloud_and_lose_a_trailing_slash() -> None:
    connector = parse_config(
        config_data(
            connectors=[
                connector_data(
                    cloud="china", login_url="https://localhost:8443/", graph_url="https://127.0.0.1:9443"
                )
            ]
        )
    ).connectors[0]

    assert connector.authority == "https://localhost:8443"
    assert connector.graph_root == "https://127.0.0.1:9443"
    assert connector.scope == "https://127.0.0.1:9443/.default"


def test_plain_http_url_is_an_error_that_mentions_tls() -> None:
    data = config_data(connectors=[connector_data(login_url="http://localhost:8080")])

    assert "TLS" in messages_at(data, "connectors[0].login_url")[0]


@pytest.mark.parametrize(
    "url", ["https://graph.microsoft.com/v1.0", "https://graph.microsoft.com?x=1", "https://", "graph.com"]
)
def test_url_with_path_or_query_or_no_host_is_an_error(url: str) -> None:
    data = config_data(connectors=[connector_data(graph_url=url)])

    assert messages_at(data, "connectors[0].graph_url")


def test_instance_discovery_is_enabled_unless_disabled() -> None:
    default = parse_config(config_data()).connectors[0]
    disabled = parse_config(
        config_data(connectors=[connector_data(disable_instance_discovery=True)])
    ).connectors[0]

    assert default.disable_instance_discovery is False
    assert disabled.disable_instance_discovery is True


@pytest.mark.parametrize(
    "credential",
    [
        {"type": "client_secret", "secret": {"app_setting": "S"}},
        {"type": "certificate", "certificate": {"app_setting": "C"}},
    ],
)
def test_app_credentials_require_a_client_id(credential: dict[str, Any]) -> None:
    connector = connector_data(credential=credential)
    del connector["client_id"]

    assert only_issue(config_data(connectors=[connector])).path == "connectors[0].client_id"


def test_managed_identity_needs_no_client_id_and_no_secret() -> None:
    connector = connector_data(credential={"type": "managed_identity"})
    del connector["client_id"]

    credential = parse_config(config_data(connectors=[connector])).connectors[0].credential

    assert credential == ManagedIdentityCredentialConfig(type="managed_identity", client_id=None)


def test_managed_identity_takes_a_user_assigned_client_id() -> None:
    credential = {"type": "managed_identity", "client_id": GROUP_A}

    connector = parse_config(config_data(connectors=[connector_data(credential=credential)])).connectors[0]

    assert connector.credential.client_id == GROUP_A


def test_managed_identity_rejects_a_secret() -> None:
    credential = {"type": "managed_identity", "secret": {"app_setting": "S"}}

    assert messages_at(
        config_data(connectors=[connector_data(credential=credential)]), "connectors[0].credential.secret"
    )


def test_certificate_credential_defaults_to_no_password_and_no_chain() -> None:
    credential = {
        "type": "certificate",
        "certificate": {"key_vault": "https://kv.vault.azure.net/secrets/cert"},
    }

    parsed = parse_config(config_data(connectors=[connector_data(credential=credential)])).connectors[0]

    assert parsed.credential == CertificateCredentialConfig(
        type="certificate",
        certificate=SecretRef(key_vault="https://kv.vault.azure.net/secrets/cert"),
        password=None,
        send_certificate_chain=False,
    )


def test_unknown_credential_type_is_reported_at_type() -> None:
    data = config_data(connectors=[connector_data(credential={"type": "password", "password": "x"})])

    assert messages_at(data, "connectors[0].credential.type") == [
        "must be one of 'client_secret', 'certificate', 'managed_identity'"
    ]


def test_credential_error_path_omits_the_union_tag() -> None:
    data = config_data(connectors=[connector_data(credential={"type": "client_secret", "secret": {}})])

    assert only_issue(data) == ConfigIssue(
        "connectors[0].credential.secret", "give exactly one of app_setting or key_vault"
    )


# ------------------------------------------------------------------------------------ secrets


@pytest.mark.parametrize(
    "uri",
    [
        "https://contoso-kv.vault.azure.net/secrets/graph-secret",
        "https://contoso-kv.vault.azure.net/secrets/graph-secret/0123456789abcdef0123456789abcdef",
        "https://contoso-kv.vault.usgovcloudapi.net/secrets/graph-secret",
        "https://contoso-kv.vault.azure.cn/secrets/graph-secret/",
        "https://vault.internal.contoso.com:8443/secrets/graph-secret",
    ],
)
def test_key_vault_reference_accepts_any_https_vault_host(uri: str) -> None:
    credential = {"type": "client_secret", "secret": {"key_vault": uri}}

    connector = parse_config(config_data(connectors=[connector_data(credential=credential)])).connectors[0]

    assert connector.credential.secret.key_vault == uri.rstrip("/")


@pytest.mark.parametrize(
    "uri",
    [
        "http://contoso-kv.vault.azure.net/secrets/graph-secret",
        "https://contoso-kv.vault.azure.net/keys/graph-key",
        "https://contoso-kv.vault.azure.net/secrets/",
        "https://contoso-kv.vault.azure.net/secrets/a/b/c",
        "https://contoso-kv.vault.azure.net/secrets/graph-secret?api-version=7.4",
        "https://contoso-kv.vault.azure.net/secrets/bad_name",
    ],
)
def test_key_vault_reference_must_be_a_secret_uri(uri: str) -> None:
    credential = {"type": "client_secret", "secret": {"key_vault": uri}}
    data = config_data(connectors=[connector_data(credential=credential)])

    assert "Key Vault secret URI" in messages_at(data, "connectors[0].credential.secret.key_vault")[0]


@pytest.mark.parametrize("name", ["1ABC", "MY-SECRET", "has space", ""])
def test_app_setting_reference_must_be_a_setting_name(name: str) -> None:
    credential = {"type": "client_secret", "secret": {"app_setting": name}}
    data = config_data(connectors=[connector_data(credential=credential)])

    assert "app setting name" in messages_at(data, "connectors[0].credential.secret.app_setting")[0]


def test_secret_reference_needs_exactly_one_location() -> None:
    secret = {"app_setting": "S", "key_vault": "https://kv.vault.azure.net/secrets/s"}
    data = config_data(connectors=[connector_data(credential={"type": "client_secret", "secret": secret})])

    assert messages_at(data, "connectors[0].credential.secret") == [
        "give exactly one of app_setting or key_vault"
    ]


@pytest.mark.parametrize("inline", ["Zx8Q~verySecretValue.123", 12345678])
def test_inline_secret_is_rejected_without_echoing_it(inline: Any) -> None:
    credential = {"type": "certificate", "certificate": {"app_setting": "C"}, "password": inline}
    data = config_data(connectors=[connector_data(credential=credential)])

    with pytest.raises(ConfigError) as caught:
        parse_config(data)

    [issue] = caught.value.errors
    assert issue.path == "connectors[0].credential.password"
    assert "secrets must be references, never inline values" in issue.message
    assert str(inline) not in str(caught.value)
    assert str(inline) not in repr(caught.value)
    assert caught.value.__context__ is None and caught.value.__cause__ is None


# -------------------------------------------------------------------------------------- tasks


def test_task_names_must_be_unique() -> None:
    data = config_data(tasks=[task_data(), task_data()])

    assert messages_at(data, "tasks[1].name") == [
        "duplicate task name 'nightly' (also tasks[0]; names ignore case)"
    ]


def test_task_must_name_a_configured_connector() -> None:
    data = config_data(tasks=[task_data(connector="contso")])

    assert only_issue(data) == ConfigIssue(
        "tasks[0].connector", "no connector named 'contso' is configured; did you mean 'contoso'?"
    )


def test_unknown_connector_is_reported_even_when_the_task_has_other_errors() -> None:
    data = config_data(tasks=[task_data(connector="elsewhere", mode="sometimes")])

    assert {issue.path for issue in issues_of(data)} == {"tasks[0].connector", "tasks[0].mode"}


def test_task_is_enabled_and_described_by_default() -> None:
    task = parse_config(config_data()).tasks[0]

    assert task.enabled is True
    assert task.description is None


def test_task_without_schedule_runs_on_demand_only() -> None:
    data = config_data(tasks=[task_data(schedule=None)])

    assert parse_config(data).tasks[0].schedule is None


@pytest.mark.parametrize(
    "schedule",
    ["0 */15 * * * *", "0 30 2 * * 1-5", "*/30 0 9-17 * Jan-Jun Mon,Fri", "0 0 0 1 */2 *", "0 0 0 29 2 *"],
)
def test_six_field_ncrontab_schedule_is_accepted(schedule: str) -> None:
    assert parse_config(config_data(tasks=[task_data(schedule=schedule)])).tasks[0].schedule == schedule


def test_five_field_cron_is_rejected_saying_six_fields_are_needed() -> None:
    data = config_data(tasks=[task_data(schedule="*/15 * * * *")])

    [message] = messages_at(data, "tasks[0].schedule")
    assert "six fields" in message
    assert "{second} {minute} {hour} {day} {month} {day-of-week}" in message


@pytest.mark.parametrize(
    "schedule", ["0 61 * * * *", "0 0 25 * * *", "0 0 0 L * *", "x * * * * *", "0 0 0 31 2 *", ""]
)
def test_invalid_ncrontab_schedule_is_an_error(schedule: str) -> None:
    assert messages_at(config_data(tasks=[task_data(schedule=schedule)]), "tasks[0].schedule")


def test_mode_must_be_full_or_incremental() -> None:
    assert messages_at(config_data(tasks=[task_data(mode="delta")]), "tasks[0].mode") == [
        "must be 'full' or 'incremental'"
    ]


def task_reading(mappings_type: str, *selections: str) -> dict[str, Any]:
    data = task_data(mappings_type=mappings_type)
    for name in {"users", "groups"} - set(selections):
        del data[name]
    return data


@pytest.mark.parametrize(
    ("mappings_type", "users", "groups"),
    [("identity_and_access", True, True), ("identity", True, False), ("access", False, True)],
)
def test_mappings_type_decides_which_selections_are_read(
    mappings_type: str, users: bool, groups: bool
) -> None:
    selections = [name for name, given in (("users", users), ("groups", groups)) if given]

    task = parse_config(config_data(tasks=[task_reading(mappings_type, *selections)])).tasks[0]

    assert (task.reads_users, task.reads_groups) == (users, groups)


@pytest.mark.parametrize(
    ("mappings_type", "given", "missing"),
    [
        ("identity_and_access", ["groups"], "users"),
        ("identity_and_access", ["users"], "groups"),
        ("identity", [], "users"),
        ("access", [], "groups"),
    ],
)
def test_selection_required_by_mappings_type_must_be_given(
    mappings_type: str, given: list[str], missing: str
) -> None:
    data = config_data(tasks=[task_reading(mappings_type, *given)])

    assert only_issue(data) == ConfigIssue(
        f"tasks[0].{missing}", f"required because mappings_type is '{mappings_type}'"
    )


@pytest.mark.parametrize(("mappings_type", "excluded"), [("identity", "groups"), ("access", "users")])
def test_selection_excluded_by_mappings_type_is_an_error(mappings_type: str, excluded: str) -> None:
    data = config_data(tasks=[task_data(mappings_type=mappings_type)])

    issue = only_issue(data)
    assert issue.path == f"tasks[0].{excluded}"
    assert issue.message.startswith(f"not allowed because mappings_type '{mappings_type}'")


def test_selection_excluded_by_mappings_type_is_reported_alongside_its_own_errors() -> None:
    data = config_data(tasks=[task_data(mappings_type="identity", groups=selection_data(mappings=[]))])

    assert {issue.path for issue in issues_of(data)} == {"tasks[0].groups", "tasks[0].groups.mappings"}


def test_scheduled_task_validated_alone_still_checks_mappings_type() -> None:
    data = task_data(mappings_type="identity")

    with pytest.raises(ValueError, match="groups"):
        ScheduledTask.model_validate(data)


# ------------------------------------------------------------------------------------- queries


def test_query_keeps_the_parameters_as_written() -> None:
    query = "$count=true&$filter=endsWith(mail,'@contoso.com')&$orderby=displayName desc&$top=999"

    users = parse_config(with_users(query=query)).tasks[0].users

    assert users.query_params() == {
        "$count": "true",
        "$filter": "endsWith(mail,'@contoso.com')",
        "$orderby": "displayName desc",
        "$top": "999",
    }


def test_query_may_start_with_a_question_mark() -> None:
    users = parse_config(with_users(query="?$top=10")).tasks[0].users

    assert users.query_params() == {"$top": "10"}


def test_percent_encoded_query_is_decoded() -> None:
    query = "%24filter=department%20eq%20%27R%26D%27&%24count=true"

    users = parse_config(with_users(query=query)).tasks[0].users

    assert users.query_params() == {"$filter": "department eq 'R&D'", "$count": "true"}


def test_ampersand_inside_a_quoted_literal_does_not_split_the_query() -> None:
    users = parse_config(with_users(query="$filter=department eq 'R&D'&$top=5")).tasks[0].users

    assert users.query_params() == {"$filter": "department eq 'R&D'", "$top": "5"}


def test_query_parameters_without_dollar_are_read_as_system_options() -> None:
    users = parse_config(with_users(query="filter=accountEnabled eq true&TOP=5")).tasks[0].users

    assert users.query_params() == {"$filter": "accountEnabled eq true", "$top": "5"}


def test_search_query_is_accepted() -> None:
    users = parse_config(with_users(query='$search="displayName:room"&$count=true')).tasks[0].users

    assert users.query_params()["$search"] == '"displayName:room"'


@pytest.mark.parametrize("parameter", ["$select=id,mail", "$expand=manager"])
def test_select_and_expand_are_errors(parameter: str) -> None:
    [message] = messages_at(with_users(query=parameter), "tasks[0].users.query")

    assert message.startswith(parameter.split("=")[0])


def test_unsupported_query_parameter_is_an_error() -> None:
    assert messages_at(with_users(query="$skip=10"), "tasks[0].users.query") == [
        "unsupported query parameter '$skip'; allowed: $filter, $count, $search, $orderby, $top"
    ]


@pytest.mark.parametrize("top", ["0", "1000", "-1", "ten"])
def test_top_outside_1_to_999_is_an_error(top: str) -> None:
    assert messages_at(with_users(query=f"$top={top}"), "tasks[0].users.query") == [
        "$top must be a whole number from 1 to 999"
    ]


def test_count_must_be_true_or_false() -> None:
    assert messages_at(with_users(query="$count=yes"), "tasks[0].users.query") == [
        "$count must be true or false"
    ]


def test_query_parameter_given_twice_is_an_error() -> None:
    assert messages_at(with_users(query="$top=5&$top=6"), "tasks[0].users.query") == [
        "$top is given more than once"
    ]


def test_filter_syntax_error_is_reported_at_the_query_path_with_the_parser_message() -> None:
    bad_filter = "displayName eq"
    with pytest.raises(FilterError) as parser_error:
        parse_filter(bad_filter)

    [message] = messages_at(with_groups(query=f"$filter={bad_filter}"), "tasks[0].groups.query")

    assert str(parser_error.value) in message


def test_percent_encoded_filter_is_checked_after_decoding() -> None:
    assert messages_at(with_users(query="%24filter=displayName%20eq"), "tasks[0].users.query")


def test_several_query_problems_are_all_reported() -> None:
    messages = messages_at(with_users(query="$select=id&$top=0&$count=maybe"), "tasks[0].users.query")

    assert len(messages) == 3


# ------------------------------------------------------------------------------------- headers


def test_extra_headers_are_kept() -> None:
    users = parse_config(with_users(headers={"ConsistencyLevel": "eventual"})).tasks[0].users

    assert users.headers == {"ConsistencyLevel": "eventual"}


@pytest.mark.parametrize("header", ["Authorization", "authorization", "Content-Type", "ACCEPT", "host"])
def test_reserved_headers_are_errors_whatever_their_case(header: str) -> None:
    [message] = messages_at(with_users(headers={header: "x"}), f"tasks[0].users.headers.{header}")

    assert "set by the connector" in message


def test_header_names_differing_only_by_case_are_an_error() -> None:
    data = with_users(headers={"ConsistencyLevel": "eventual", "consistencylevel": "eventual"})

    assert messages_at(data, "tasks[0].users.headers.consistencylevel") == [
        "same header as ConsistencyLevel (header names ignore case)"
    ]


def test_header_value_with_a_line_break_is_an_error() -> None:
    data = with_users(headers={"X-Custom": "a\r\nInjected: yes"})

    assert messages_at(data, "tasks[0].users.headers.X-Custom") == ["must not contain line breaks"]


# ------------------------------------------------------------------------------------ mappings


def test_mappings_must_not_be_empty() -> None:
    assert messages_at(with_users(mappings=[]), "tasks[0].users.mappings") == ["must not be empty"]


@pytest.mark.parametrize(
    "external",
    [
        "displayName",
        "onPremisesExtensionAttributes.extensionAttribute1",
        "assignedLicenses.0.skuId",
        "extension_0123456789abcdef0123456789abcdef_costCenter",
        "memberOf",
    ],
)
def test_user_mapping_accepts_graph_attribute_paths(external: str) -> None:
    data = with_users(mappings=[{"external": external, "local": "code"}])

    assert parse_config(data).tasks[0].users.mappings[0].external == external


@pytest.mark.parametrize("external", ["display-name", "a..b", "0abc", "a/b", ".a", "a."])
def test_external_outside_the_attribute_path_pattern_is_an_error(external: str) -> None:
    data = with_users(mappings=[{"external": external, "local": "code"}])

    assert "attribute path" in messages_at(data, "tasks[0].users.mappings[0].external")[0]


def test_malformed_extension_attribute_name_is_an_error() -> None:
    data = with_users(mappings=[{"external": "extension_1234_costCenter", "local": "code"}])

    assert "extension_" in messages_at(data, "tasks[0].users.mappings[0].external")[0]


@pytest.mark.parametrize("local", ["1code", "has space", "", "x" * 129, "a/b"])
def test_local_code_outside_the_pattern_is_an_error(local: str) -> None:
    data = with_users(mappings=[{"external": "mail", "local": local}])

    assert "local attribute code" in messages_at(data, "tasks[0].users.mappings[0].local")[0]


def test_duplicated_local_code_is_an_error() -> None:
    mappings = [{"external": "mail", "local": "email"}, {"external": "userPrincipalName", "local": "email"}]

    assert only_issue(with_users(mappings=mappings)) == ConfigIssue(
        "tasks[0].users.mappings[1].local", "local code email is already mapped by mappings[0]"
    )


def test_mapping_one_external_attribute_twice_is_an_error() -> None:
    mappings = [{"external": "mail", "local": "email"}, {"external": "Mail", "local": "email2"}]

    assert only_issue(with_users(mappings=mappings)).path == "tasks[0].users.mappings[1].external"


def test_members_pseudo_attribute_is_for_groups_only() -> None:
    mappings = [{"external": "members", "local": "m"}]

    assert parse_config(with_groups(mappings=mappings)).tasks[0].groups.pseudo_attributes == {"members"}
    assert "only available for groups" in only_issue(with_users(mappings=mappings)).message


def test_pseudo_attribute_takes_no_sub_path() -> None:
    data = with_groups(mappings=[{"external": "members.id", "local": "m"}])

    assert messages_at(data, "tasks[0].groups.mappings[0].external")


def test_key_defaults_to_id_and_cannot_be_a_pseudo_attribute() -> None:
    assert parse_config(config_data()).tasks[0].users.key == "id"
    assert only_issue(with_users(key="memberOf")).path == "tasks[0].users.key"


@pytest.mark.parametrize("field", ["task_id_attribute", "source_type_attribute"])
def test_special_attribute_must_not_collide_with_a_mapped_local_code(field: str) -> None:
    assert only_issue(with_users(**{field: "email"})) == ConfigIssue(
        f"tasks[0].users.{field}", "email is already mapped by mappings[1]"
    )


def test_task_id_and_source_type_attributes_must_differ() -> None:
    data = with_users(task_id_attribute="meta", source_type_attribute="meta")

    assert only_issue(data).path == "tasks[0].users.source_type_attribute"


def test_targets_are_required() -> None:
    selection = selection_data()
    del selection["target_template"], selection["target_folder"]

    assert {issue.path for issue in issues_of(config_data(tasks=[task_data(users=selection)]))} == {
        "tasks[0].users.target_template",
        "tasks[0].users.target_folder",
    }


def test_excluded_ids_must_be_guids() -> None:
    data = with_groups(excluded_ids=[GROUP_A, "not-a-guid"])

    assert "GUID" in messages_at(data, "tasks[0].groups.excluded_ids[1]")[0]


def test_membership_filters_apply_to_users() -> None:
    users = (
        parse_config(with_users(include_members_of=[GROUP_A], exclude_members_of=[GROUP_B])).tasks[0].users
    )

    assert isinstance(users, UserSelection)
    assert (users.include_members_of, users.exclude_members_of) == ([GROUP_A], [GROUP_B])


@pytest.mark.parametrize("field", ["include_members_of", "exclude_members_of"])
def test_membership_filters_on_groups_are_an_error(field: str) -> None:
    [message] = messages_at(with_groups(**{field: [GROUP_A]}), f"tasks[0].groups.{field}")

    assert "only users" in message


def test_group_both_included_and_excluded_is_an_error() -> None:
    data = with_users(include_members_of=[GROUP_A], exclude_members_of=[GROUP_B, GROUP_A])

    assert only_issue(data).path == "tasks[0].users.exclude_members_of[1]"


# --------------------------------------------------------------------------- pipeline helpers


def test_select_properties_are_the_sorted_top_level_attributes_plus_id_and_key() -> None:
    mappings = [
        {"external": "onPremisesExtensionAttributes.extensionAttribute1", "local": "a"},
        {"external": "assignedLicenses.0.skuId", "local": "b"},
        {"external": "displayName", "local": "c"},
        {"external": "onPremisesExtensionAttributes.extensionAttribute2", "local": "d"},
        {"external": "memberOf", "local": "e"},
    ]

    users = parse_config(with_users(mappings=mappings, key="employeeId")).tasks[0].users

    assert users.select_properties() == [
        "assignedLicenses",
        "displayName",
        "employeeId",
        "id",
        "onPremisesExtensionAttributes",
    ]


def test_select_properties_leave_out_membership_pseudo_attributes() -> None:
    mappings = [{"external": "members", "local": "m"}, {"external": "memberOf", "local": "p"}]

    assert parse_config(with_groups(mappings=mappings)).tasks[0].groups.select_properties() == ["id"]


def test_config_finds_connectors_and_tasks_by_name() -> None:
    config = load_config(EXAMPLE)

    assert config.connector("northwind").tenant_id == "northwindtraders.com"
    assert config.task("contoso-users-incremental").mode == "incremental"
    with pytest.raises(KeyError):
        config.connector("nowhere")
    with pytest.raises(KeyError):
        config.task("nothing")


def test_config_is_immutable() -> None:
    config = parse_config(config_data())

    with pytest.raises(ValueError):
        config.tasks[0].enabled = False  # type: ignore[misc]


# -------------------------------------------------------------------------------------- schema


def test_committed_schema_file_matches_the_models() -> None:
    committed = json.loads(SCHEMA_PATH.read_text())

    assert committed == config_json_schema(), "run: python -m shared.config --write-schema"


def test_schema_has_id_title_and_forbids_unknown_keys() -> None:
    schema = config_json_schema()

    assert schema["$id"] == SCHEMA_ID
    assert schema["title"]
    assert schema["additionalProperties"] is False
    assert "$schema" in schema["properties"]
    assert schema["$defs"]["ScheduledTask"]["additionalProperties"] is False


def test_example_points_editors_at_the_schema() -> None:
    example = json.loads(EXAMPLE.read_text())

    assert (EXAMPLE.parent / example["$schema"]).resolve() == SCHEMA_PATH


def test_write_schema_command_writes_the_generated_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "schema" / "config.schema.json"
    monkeypatch.setattr(config_module, "SCHEMA_PATH", target)

    assert config_module.main(["--write-schema"]) == 0
    assert target.read_text() == SCHEMA_PATH.read_text()


def test_check_command_reports_problems_and_exit_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(config_data(tasks=[task_data(mode="x")])))

    assert config_module.main(["--check", str(EXAMPLE)]) == 0
    assert config_module.main(["--check", str(bad)]) == 1
    assert "tasks[0].mode: must be 'full' or 'incremental'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------- task kinds


def test_a_task_without_usage_is_a_scheduled_task_as_files_from_before_task_kinds_are() -> None:
    config = parse_config(config_data())
    assert isinstance(config.tasks[0], ScheduledTask) and config.tasks[0].usage == "scheduled"
    assert config.task("nightly") is config.tasks[0]
    assert config.scheduled_tasks == [config.tasks[0]]
    explicit = parse_config(config_data(tasks=[task_data(usage="scheduled")]))
    assert explicit.tasks[0] == config.tasks[0]


def test_an_unknown_usage_names_the_task_kinds() -> None:
    issue = only_issue(config_data(tasks=[task_data(usage="nightly")]))
    assert issue.path == "tasks[0].usage"
    assert issue.message.startswith("must be one of 'scheduled'")


def test_a_scheduled_task_keeps_its_own_rules_inside_the_union() -> None:
    issues = issues_of(config_data(tasks=[task_data(usage="scheduled", schedul="0 * * * * *", groups=None)]))
    assert {(i.path, i.message.split(";")[0]) for i in issues} >= {
        ("tasks[0].schedul", "unknown key"),
        ("tasks[0].groups", "required because mappings_type is 'identity_and_access'"),
    }
