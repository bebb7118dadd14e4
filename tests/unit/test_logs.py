"""Run-scoped log fields and URLs safe to log."""

from __future__ import annotations

import asyncio
import logging

from shared import logs
from shared.graph.errors import redact_url


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_concurrent_runs_log_with_their_own_task_and_run_id():
    handler = logs.attach(Capture())
    logger = logging.getLogger("tests.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)

    async def run(task: str, run_id: str) -> None:
        with logs.scope(task=task, run=run_id):
            await asyncio.sleep(0.01)
            await asyncio.gather(asyncio.sleep(0), asyncio.to_thread(lambda: None))
            logger.info("working")

    try:
        await asyncio.gather(run("people", "r1"), run("devices", "r2"))
        logger.info("outside")
    finally:
        logger.removeHandler(handler)
    fields = sorted((r.task, r.run_id) for r in handler.records if r.getMessage() == "working")
    assert fields == [("devices", "r2"), ("people", "r1")]
    outside = next(r for r in handler.records if r.getMessage() == "outside")
    assert outside.task is None and outside.run_id is None and outside.graph_request_id is None


def test_logged_urls_carry_no_personal_data_or_resumable_tokens():
    url = (
        "https://graph.microsoft.com/v1.0/users/zoe.d'arcy%40contoso.com/memberOf"
        "?$select=id&$filter=startsWith(displayName,'Zo%C3%AB')&%24search=%22mail:zoe%22&$top=5"
    )
    redacted = redact_url(url)
    assert "contoso" not in redacted and "Zo" not in redacted and "zoe" not in redacted
    assert redacted.startswith("https://graph.microsoft.com/v1.0/users/…/memberOf?$select=id&$filter=…")
    token = redact_url("https://graph.microsoft.com/v1.0/users/delta?$deltatoken=abcdefghijklmnopqrstuvwxyz")
    assert token.endswith("$deltatoken=abcdef…")
    by_id = "https://graph.microsoft.com/v1.0/groups/0b6e2d4c-1f7a-4b8e-9c3d-2a5f6e7d8c9b/members?$top=999"
    assert redact_url(by_id) == by_id
