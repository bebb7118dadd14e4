"""The local Graph runs without its optional speed-ups: ``uvloop`` and ``httptools`` are used when installed
and replaced by ``asyncio`` and ``h11`` when not (where uvloop does not build, e.g. Windows).

The absence is real, not mocked: a child interpreter makes both modules unimportable (``sys.modules[name] =
None``, which makes ``import name`` raise ImportError) before anything imports them, then starts the local
Graph with its defaults, gets a token with azure-identity and reads users over HTTPS.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from uvicorn.protocols.http.h11_impl import H11Protocol

from localgraph.client import graph_client
from localgraph.generate import TenantShape
from localgraph.server import LocalGraph

ROOT = Path(__file__).resolve().parents[2]

WITHOUT_SPEEDUPS = """
import sys
sys.modules["uvloop"] = None
sys.modules["httptools"] = None
"""


def run_child(code: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_SPEEDUPS + textwrap.dedent(code)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_explicit_asyncio_and_h11_serve_graph_requests(tls_dir):
    with LocalGraph(TenantShape(users=20), state_dir=tls_dir, loop="asyncio", http="h11") as graph:
        assert graph._server is not None and graph._server.config.http_protocol_class is H11Protocol
        with graph_client(graph.info) as http:
            response = http.get("/users", params={"$top": "5"})
    assert response.status_code == 200, response.text
    assert len(response.json()["value"]) == 5


def test_the_local_graph_starts_and_answers_where_uvloop_and_httptools_are_absent():
    result = run_child(
        """
        import json, sys
        from localgraph.client import graph_client
        from localgraph.generate import TenantShape
        from localgraph.server import LocalGraph

        with LocalGraph(TenantShape(users=20)) as graph:
            with graph_client(graph.info) as http:
                response = http.get("/users", params={"$top": "3"})
            protocol = graph._server.config.http_protocol_class.__name__
        print(json.dumps({
            "status": response.status_code,
            "users": len(response.json()["value"]),
            "protocol": protocol,
            "uvloop_loaded": sys.modules.get("uvloop") is not None,
            "httptools_loaded": sys.modules.get("httptools") is not None,
        }))
        """
    )
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout.strip().splitlines()[-1])
    assert facts == {
        "status": 200,
        "users": 3,
        "protocol": "H11Protocol",
        "uvloop_loaded": False,
        "httptools_loaded": False,
    }


def test_python_m_localgraph_serves_where_uvloop_and_httptools_are_absent():
    """The foreground server (``python -m localgraph``) picks its event loop the same way."""
    code = WITHOUT_SPEEDUPS + textwrap.dedent(
        """
        import runpy
        sys.argv = ["localgraph", "--users", "20", "--json"]
        runpy.run_module("localgraph", run_name="__main__")
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = child.stdout.readline() if child.stdout else ""
        if not line:
            pytest.fail(
                f"python -m localgraph printed nothing: {child.stderr.read() if child.stderr else ''}"
            )
        facts = json.loads(line)
        from localgraph.server import ConnectionInfo

        with graph_client(ConnectionInfo(**facts)) as http:
            response = http.get("/organization")
        assert response.status_code == 200, response.text
        assert response.json()["value"][0]["id"] == facts["tenant_id"]
    finally:
        child.terminate()
        child.wait(timeout=30)
