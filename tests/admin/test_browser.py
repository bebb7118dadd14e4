"""The management page in a real browser: headless Chromium (Debian's ``chromium`` package, never a downloaded
browser) driven by Playwright, clicking through the main flows against the running app (uvicorn, Azurite, the
local Graph's demo tenant; ``devtools.ui``). The screenshots in the README are taken here
(``docs/images/admin-*.png``, written with ``UPDATE_SCREENSHOTS=1``)."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest

playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")


@pytest.fixture(scope="module")
def url():
    from devtools.ui import serving, ui_environment

    with ui_environment(users=120) as env, serving(env) as address:
        yield address


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1366, "height": 800}, accept_downloads=True)
    page = context.new_page()
    yield page
    context.close()


def shot(page, name: str) -> None:
    """A full-page screenshot: into docs/images only with UPDATE_SCREENSHOTS=1 (so a test run leaves the work
    tree clean), otherwise into a temporary folder (the page still renders and is captured)."""
    folder = (
        IMAGES if os.environ.get("UPDATE_SCREENSHOTS") == "1" else Path(tempfile.gettempdir()) / "admin-shots"
    )
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"admin-{name}.png"), full_page=True)


def open_task(page, url, name):
    page.goto(url)
    page.get_by_role("link", name=name, exact=True).click()
    page.wait_for_url(re.compile(r"/tasks/[^/]+$"))


def test_overview_shows_statuses_and_filters_as_you_type(page, url):
    page.goto(url)
    rows = page.locator("tr[data-kind]")
    assert rows.count() == 5
    assert page.locator("tr[data-name^='demo-people'] .status").inner_text() == "ok"
    assert page.locator("tr[data-name^='fabrikam-people'] .status").inner_text() == "failed"
    assert page.locator("tr[data-name^='demo-staff-nightly'] .status").inner_text() == "never run"
    assert "4 calls" not in page.content()  # per activity, not a total
    assert re.search(r"users\.update: 2", page.locator("tr[data-name^='demo-provisioning']").inner_text())
    assert page.locator(".version").inner_text().startswith("v")
    shot(page, "overview")
    page.get_by_label("Name").fill("staff")
    assert [r.get_attribute("data-name").split()[0] for r in rows.all() if r.is_visible()] == [
        "demo-staff-nightly"
    ]
    page.get_by_label("Name").fill("")
    page.get_by_label("Kind").select_option("authentication")
    assert [r.get_attribute("data-name").split()[0] for r in rows.all() if r.is_visible()] == ["demo-sign-in"]
    # Without JavaScript the same filters are a GET form: the server filters too.
    page.goto(url + "?status=failed")
    assert [r.get_attribute("data-name").split()[0] for r in page.locator("tr[data-kind]").all()] == [
        "fabrikam-people"
    ]


def test_keyboard_reaches_the_content_and_actions(page, url):
    page.goto(url)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    for _ in range(12):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "demo-people":
            break
    assert page.evaluate("document.activeElement.textContent") == "demo-people"
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/tasks/"))
    assert page.get_by_role("heading", level=1).inner_text().startswith("Task demo-people")


def test_history_run_details_files_and_run_now(page, url):
    open_task(page, url, "demo-people")
    history = page.locator("table.history tbody tr")
    assert history.count() == 2 and "succeeded" in history.first.inner_text()
    shot(page, "task")
    history.first.locator("a").click()
    assert page.get_by_role("heading", name="Counts").is_visible()
    counts = page.locator("table").first.inner_text()
    assert "users" in counts and "groups" in counts
    shot(page, "run")
    with page.expect_download() as download:
        page.get_by_role("link", name="users", exact=True).click()
    lines = Path(download.value.path()).read_text().splitlines()
    assert len(lines) > 100 and json.loads(lines[0])["attributes"]
    page.get_by_role("link", name="demo-people").click()  # back to the task (the download did not navigate)
    page.get_by_role("button", name="Run now").click()
    assert re.search(r"run \S+ queued", page.get_by_role("status").inner_text())
    assert "queued" in page.locator("table.history tbody tr").first.inner_text()
    # The queued run is not running yet (no Functions host here): there is nothing to stop, and the page says so.
    page.get_by_role("button", name="Stop").click()
    assert "no run of 'demo-people' is running" in page.get_by_role("alert").inner_text()


def test_edit_shows_validation_next_to_the_field_and_saves(page, url):
    open_task(page, url, "demo-staff-nightly")
    page.get_by_label("schedule").fill("every night")
    page.get_by_role("button", name="Save").click()
    error = page.locator("#e-schedule")
    assert "six fields" in error.inner_text()
    assert page.get_by_label("schedule").get_attribute("aria-invalid") == "true"
    shot(page, "validation")
    page.get_by_label("schedule").fill("0 30 3 * * *")
    page.get_by_label("description").fill("Members only, nightly at 03:30")
    page.get_by_role("button", name="Save").click()
    assert page.get_by_role("status").inner_text() == "task saved"
    assert page.get_by_label("schedule").input_value() == "0 30 3 * * *"


def test_copy_as_authentication_task_and_check_a_sign_in(page, url):
    open_task(page, url, "demo-staff-nightly")
    page.get_by_label("Name of the copy").fill("staff-sign-in")
    page.get_by_label("Kind of the copy").select_option("authentication")
    page.get_by_label("Protocol, for an authentication copy").fill("saml2")
    page.get_by_label("Realm, for an authentication copy").fill("staff")
    page.get_by_role("button", name="Copy").click()
    assert page.get_by_role("heading", level=1).inner_text() == "Task staff-sign-in authentication"
    assert "federationmetadata" in page.locator("pre").inner_text()
    page.get_by_label("May this user sign in?").fill("nobody@nowhere.example")
    page.get_by_role("button", name="Check").click()
    assert "may not sign in: no user" in page.get_by_role("status").inner_text()


def test_export_then_import_dry_run(page, url, tmp_path):
    page.goto(url + "transfer")
    page.get_by_label("demo-tenant").check()
    page.get_by_label("Export password (optional; required for secret values)").fill("a long export password")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download export file").click()
    exported = Path(download.value.path())
    document = json.loads(exported.read_text())
    assert document["format"] == "entra-graph-connector-export" and "seal" in document
    page.get_by_label("Export file").set_input_files(str(exported))
    page.get_by_label("Export password", exact=True).fill("a long export password")
    page.get_by_role("button", name="Import").click()
    plan = page.locator("#plan").inner_text()
    assert "merge" in plan and "unchanged" in plan  # the same environment: nothing to change
    assert "dry run: nothing changed yet" in page.content()
    shot(page, "import")
    page.get_by_label("Export file").set_input_files(str(exported))
    page.get_by_label("Export password", exact=True).fill("wrong password")
    page.get_by_role("button", name="Import").click()
    assert "wrong export password" in page.get_by_role("alert").inner_text()


def test_new_connector_with_messages_then_copy_and_delete(page, url):
    page.goto(url)
    page.get_by_role("link", name="New connector").click()
    page.get_by_label(re.compile("^Definition")).fill(
        json.dumps(
            {
                "name": "bad name",
                "tenant_id": "contoso.onmicrosoft.com",
                "credential": {"type": "client_secret", "secret": "inline-value"},
            }
        )
    )
    page.get_by_role("button", name="Create").click()
    errors = page.locator("#def-errors").inner_text()
    assert "name: must be 1-63 letters" in errors and "secrets must be references" in errors
    assert "inline-value" not in errors  # an inline secret is never echoed
    definition = {
        "name": "contoso", "tenant_id": "contoso.onmicrosoft.com", "client_id": "00000000-0000-0000-0000-000000000001",
        "credential": {"type": "client_secret", "secret": {"app_setting": "CONTOSO_SECRET"}},
    }  # fmt: skip
    page.get_by_label(re.compile("^Definition")).fill(json.dumps(definition))
    page.get_by_role("button", name="Create").click()
    assert page.get_by_role("heading", level=1).inner_text() == "Connector contoso"
    page.get_by_label("Name of the copy").fill("contoso-copy")
    page.get_by_role("button", name="Copy").click()
    assert page.get_by_role("heading", level=1).inner_text() == "Connector contoso-copy"
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete").click()
    assert page.get_by_role("status").inner_text() == "connector deleted"
    assert page.get_by_role("link", name="contoso", exact=True).is_visible()
    assert page.get_by_role("link", name="contoso-copy").count() == 0
