"""The dependency rule (DESIGN.md 2): the core imports nothing outside itself, the app no adapters."""

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "deltakeeper"
FORBIDDEN_IN_APP = ("deltakeeper.adapters", "deltakeeper.sim", "ccxt", "sqlalchemy", "apprise")


def imported_modules(source: str, package: str) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in `source`, at any depth (also inside functions),
    with relative imports resolved against `package`. `from a import b` yields both `a` and `a.b`."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.rsplit(".", node.level - 1)[0]
                module = f"{base}.{module}" if module else base
            yield node.lineno, module
            for alias in node.names:  # `from deltakeeper import adapters` imports a submodule
                if alias.name != "*":
                    yield node.lineno, f"{module}.{alias.name}"


def file_imports(path: Path) -> Iterator[tuple[int, str]]:
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    return imported_modules(path.read_text(), package)


def modules(folder: str) -> list[Path]:
    found = sorted((PACKAGE / folder).rglob("*.py"))
    assert found, f"no modules under {folder}"
    return found


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


@pytest.mark.parametrize("path", modules("domain"), ids=lambda p: p.name)
def test_domain_imports_only_the_standard_library_and_itself(path):
    bad = [
        f"{path.name}:{line} {module}"
        for line, module in file_imports(path)
        if not _within(module, "deltakeeper.domain") and module.split(".")[0] not in sys.stdlib_module_names
    ]
    assert not bad, bad


@pytest.mark.parametrize("path", modules("app"), ids=lambda p: p.name)
def test_app_does_not_import_adapters_the_simulator_or_io_libraries(path):
    bad = [
        f"{path.name}:{line} {module}"
        for line, module in file_imports(path)
        if any(_within(module, forbidden) for forbidden in FORBIDDEN_IN_APP)
    ]
    assert not bad, bad


def test_import_scanner_sees_nested_relative_and_from_imports():
    # guards the two tests above against passing vacuously
    source = (
        "import os.path\n"
        "from decimal import Decimal\n"
        "from .instruments import Instrument\n"
        "from .. import adapters\n"
        "from ..sim.markets import x\n"
        "def f():\n"
        "    import ccxt\n"
        "    if True:\n"
        "        from sqlalchemy import text\n"
    )
    found = {module for _, module in imported_modules(source, "deltakeeper.domain")}
    assert found >= {
        "os.path",
        "decimal",
        "deltakeeper.domain.instruments",
        "deltakeeper.adapters",
        "deltakeeper.sim.markets",
        "ccxt",
        "sqlalchemy",
    }
    assert "deltakeeper.domain.instruments" in {m for _, m in file_imports(PACKAGE / "domain" / "policy.py")}
