"""The configuration's JSON Schema (``schema/config.schema.json``), and ``python -m shared.config``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shared.config.document import Config
from shared.config.generic import config_notices
from shared.config.issues import ConfigError
from shared.config.loading import load_config

SCHEMA_ID = "https://github.com/entra-graph-connector/schema/config.schema.json"
SCHEMA_PATH = Path(__file__).resolve().parent.parent.parent / "schema" / "config.schema.json"

# ------------------------------------------------------------------------------------------- schema


def config_json_schema() -> dict[str, Any]:
    """The JSON Schema of a configuration file (what ``schema/config.schema.json`` holds)."""
    schema = Config.model_json_schema(by_alias=True, mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **schema,
        "title": "Entra Graph connector configuration",
    }


def render_json_schema() -> str:
    """The schema file's text: indented by 2, keys sorted."""
    return json.dumps(config_json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.config", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--write-schema", action="store_true", help=f"write the JSON Schema to {SCHEMA_PATH.name}"
    )
    parser.add_argument("--check", nargs="+", type=Path, metavar="FILE", help="validate configuration files")
    args = parser.parse_args(argv)
    if not args.write_schema and not args.check:
        parser.error("nothing to do: give --write-schema and/or --check FILE")
    status = 0
    if args.write_schema:
        SCHEMA_PATH.parent.mkdir(parents=True, exist_ok=True)
        SCHEMA_PATH.write_text(render_json_schema(), encoding="utf-8")
        print(f"wrote {SCHEMA_PATH}")
    for path in args.check or ():
        try:
            loaded = load_config(path)
        except ConfigError as exc:
            status = 1
            print(f"{path}: {len(exc.errors)} problem(s)", file=sys.stderr)
            for issue in exc.errors:
                print(f"  {issue}", file=sys.stderr)
        else:
            print(f"{path}: valid")
            for notice in config_notices(loaded):
                print(f"  note: {notice}")
    return status
