"""``python -m shared.delivery --write-schema``: regenerate schema/delivery-batch.schema.json."""

from __future__ import annotations

import sys

from shared.delivery.batches import SCHEMA_PATH, render_batch_schema

if __name__ == "__main__":
    if sys.argv[1:] != ["--write-schema"]:
        print("usage: python -m shared.delivery --write-schema", file=sys.stderr)
        sys.exit(2)
    SCHEMA_PATH.write_text(render_batch_schema(), encoding="utf-8")
    print(f"wrote {SCHEMA_PATH}")
