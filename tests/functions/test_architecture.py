"""The layout rules the import contracts cannot state: only functions/ and the composition root import
azure.functions (import-linter names external packages by their top level, so `azure` as a whole would be
too coarse: shared/ rightly uses azure.identity and the storage SDKs)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _modules_importing_azure_functions(package: str) -> list[str]:
    return sorted(
        str(path.relative_to(ROOT))
        for path in (ROOT / package).rglob("*.py")
        if any(name == "azure.functions" or name.startswith("azure.functions.") for name in _imports(path))
    )


def test_shared_never_imports_azure_functions():
    assert _modules_importing_azure_functions("shared") == []


def test_test_bed_and_tools_never_import_azure_functions():
    assert _modules_importing_azure_functions("localgraph") == []
    assert _modules_importing_azure_functions("devtools") == []


def test_the_check_sees_an_adapter_that_does_import_it():
    # The scan is not vacuous: the trigger adapters do import azure.functions.
    assert _modules_importing_azure_functions("functions")
