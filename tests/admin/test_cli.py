"""The admin operations from the command line (``python -m shared.cli admin ...``), same service as the API."""

from __future__ import annotations

import json

import pytest

from shared.cli import main


@pytest.fixture
def cli(stored, environ, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)  # no local.settings.json
    for name, value in environ.items():
        monkeypatch.setenv(name, value)

    def call(*argv: str) -> tuple[int, str, str]:
        code = main(["admin", *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return call


def test_list_show_update_with_etag_and_stale_etag_refused(cli, tmp_path):
    code, out, _ = cli("list", "tasks")
    assert code == 0 and out.split()[1:3] == ["scheduled", "people"]
    code, out, err = cli("show", "task", "people")
    definition, etag = json.loads(out), err.split("ETag: ")[1].strip()
    changed = tmp_path / "people.json"
    changed.write_text(json.dumps({**definition, "description": "from the CLI"}))
    code, out, _ = cli("update", "task", "people", str(changed), "--etag", etag)
    assert code == 0 and "updated task people" in out
    code, _, err = cli("update", "task", "people", str(changed), "--etag", etag)
    assert code == 1 and "Precondition failed" in err
    changed.write_text(json.dumps({**definition, "mode": "sometimes"}))
    code, _, err = cli("update", "task", "people", str(changed), "--overwrite")
    assert code == 1 and "mode: must be 'full' or 'incremental'" in err


def test_copy_sign_in_and_test_connection(cli):
    code, out, _ = cli("copy", "task", "people", "people-sign-in", "--usage", "authentication",
                       "--protocol", "openid_connect", "--realm", "staff")  # fmt: skip
    assert code == 0 and "copied to people-sign-in" in out
    code, out, _ = cli("sign-in-config", "people-sign-in")
    assert code == 0 and json.loads(out)["metadata_url"].endswith("/v2.0/.well-known/openid-configuration")
    code, out, _ = cli("sign-in", "people-sign-in", "nobody@nowhere.example")
    assert code == 1 and "may not sign in: no user" in out
    code, out, _ = cli("test", "local")
    assert code == 0 and json.loads(out)["read"]["ok"] is True


def test_export_and_import_dry_run_with_the_password_from_the_environment(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("EXPORT_PASSWORD", "a long export password")
    out_file = tmp_path / "export.json"
    code, out, _ = cli("export", "local", "--out", str(out_file), "--password-env", "EXPORT_PASSWORD")
    assert code == 0 and "seal" in json.loads(out_file.read_text())
    code, out, _ = cli("import", str(out_file), "--password-env", "EXPORT_PASSWORD")
    assert code == 0 and "would change" in out and "merge" in out and "unchanged task people" in out
    monkeypatch.setenv("EXPORT_PASSWORD", "wrong")
    code, _, err = cli("import", str(out_file), "--password-env", "EXPORT_PASSWORD", "--apply")
    assert code == 1 and "wrong export password" in err
