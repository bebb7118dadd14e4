"""The app's one OpenAPI 3.1 document: the activities API (:mod:`shared.activities.openapi`) and the admin API
(:mod:`shared.admin.openapi`, tag ``admin``) in one. Assembled here, above both features, so neither imports
the other. Served by ``GET /api/v1/activities/openapi.json`` and committed as ``schema/openapi.json`` (a test
fails when the committed file is stale).

``python -m shared.openapi --write`` (or ``make openapi``) regenerates the file; ``--check`` exits 1 when it
is stale.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

from shared.activities.openapi import activities_openapi
from shared.admin.openapi import admin_openapi

OPENAPI_PATH = Path(__file__).resolve().parents[1] / "schema" / "openapi.json"


def build() -> dict[str, Any]:
    document = activities_openapi()
    admin_paths, admin_schemas = admin_openapi()
    document["paths"].update(admin_paths)
    schemas = document["components"]["schemas"]
    document["components"]["schemas"] = dict(sorted({**schemas, **admin_schemas}.items()))
    return document


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=False) + "\n"


@cache
def openapi_json() -> bytes:
    return render().encode()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.openapi", description=__doc__)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", action="store_true", help=f"write {OPENAPI_PATH.name}")
    group.add_argument("--check", action="store_true", help="exit 1 if the committed document is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.write:
        OPENAPI_PATH.write_text(text, encoding="utf-8")
        print(f"wrote {OPENAPI_PATH}")
        return 0
    current = OPENAPI_PATH.read_text(encoding="utf-8") if OPENAPI_PATH.exists() else ""
    if current != text:
        print(f"{OPENAPI_PATH} is stale: run make openapi", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
