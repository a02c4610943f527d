"""The dependency rule (DESIGN.md 2), for every module under src/deltakeeper: each belongs to a layer of
LAYERS (its longest matching module prefix) and imports only what its layer may. A module in no layer
fails too: a new module is given its layer here."""

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "deltakeeper"
DATABASE_LIBRARIES = ("sqlalchemy", "alembic", "asyncpg", "aiosqlite")
IO_LIBRARIES = (*DATABASE_LIBRARIES, "ccxt", "apprise", "aiohttp", "pyarrow", "prometheus_client", "pydantic",
                "pydantic_settings", "typer", "rich")


@dataclass(frozen=True)
class Layer:
    modules: tuple[str, ...]
    """Module prefixes: `deltakeeper.app` is the package and everything under it."""
    may_import: tuple[str, ...]
    """The layers its modules may import (besides their own)."""
    stdlib_only: bool = False
    forbidden_libraries: tuple[str, ...] = ()


EVERY_LAYER = ("domain", "ports", "shared", "settings", "app", "adapters", "sim", "backtest", "composition")

LAYERS: dict[str, Layer] = {
    # The pure core: frozen values and functions over them.
    "domain": Layer(("deltakeeper.domain",), (), stdlib_only=True),
    # The Protocols between the application and the outside world.
    "ports": Layer(("deltakeeper.ports",), ("domain",), stdlib_only=True),
    # Top-level utilities anything may use: JSON values, redaction, logging.
    "shared": Layer(("deltakeeper", "deltakeeper.jsonable", "deltakeeper.redact", "deltakeeper.logging"),
                    ("domain",)),
    # The DK_ settings, and the domain values the live bot makes of them.
    "settings": Layer(("deltakeeper.config", "deltakeeper.settings_fields", "deltakeeper.policy_settings"),
                      ("domain", "shared")),
    # The use-cases: async orchestration over the ports, no concrete adapter, no I/O library.
    "app": Layer(("deltakeeper.app",), ("domain", "ports"), forbidden_libraries=IO_LIBRARIES),
    # The ports' implementations: exchanges, the journal, alerts, HTTP, metrics.
    "adapters": Layer(("deltakeeper.adapters",), ("domain", "ports", "shared")),
    # The simulated exchange: the engine, feeds, the in-process gateway, the Bybit-v5 emulator.
    "sim": Layer(("deltakeeper.sim",), ("domain", "ports", "shared")),
    # Replaying history through the app's decision code on the simulated exchange.
    "backtest": Layer(("deltakeeper.backtest",), ("domain", "ports", "shared", "app", "sim")),
    # The one composition root (and how the service it wires stops).
    "composition": Layer(("deltakeeper.bootstrap", "deltakeeper.exchanges", "deltakeeper.stopping"),
                         tuple(layer for layer in EVERY_LAYER if layer != "composition")),
    # The command line, and the entry points that run it. It reads the journal through its port.
    "cli": Layer(("deltakeeper.cli", "deltakeeper.__main__", "deltakeeper.backtest.__main__"),
                 EVERY_LAYER, forbidden_libraries=DATABASE_LIBRARIES),
}

EXCEPTIONS: dict[tuple[str, str], str] = {
    ("deltakeeper.config", "deltakeeper.adapters.alerts"):
        "secret_values finds the credentials in alert URLs with the alerts adapter's parser",
    ("deltakeeper.adapters.ccxt_base", "deltakeeper.sim.bybit.client"):
        "point_ccxt_at: DK_EXCHANGE_URL points ccxt at an emulator or a proxy",
}
"""Imports across the rule that are known and allowed, each with why (importer, imported prefix)."""


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


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def file_imports(path: Path) -> Iterator[tuple[int, str]]:
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    return imported_modules(path.read_text(), package)


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def layer_of(module: str) -> str | None:
    """The layer with the longest module prefix `module` is within; None for a module in no layer (the
    bare `deltakeeper` prefix holds the package itself only)."""
    found = [(len(prefix), name) for name, layer in LAYERS.items() for prefix in layer.modules
             if (module == prefix if prefix == "deltakeeper" else _within(module, prefix))]
    return max(found)[1] if found else None


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_belongs_to_a_layer():
    unlayered = [module_name(path) for path in MODULES if layer_of(module_name(path)) is None]
    assert not unlayered, f"modules in no layer (give each its layer in LAYERS): {unlayered}"


@pytest.mark.parametrize("path", MODULES, ids=module_name)
def test_module_imports_only_what_its_layer_may(path):
    importer = module_name(path)
    layer_name = layer_of(importer)
    assert layer_name is not None, f"{importer} is in no layer"
    layer = LAYERS[layer_name]
    bad = []
    for line, module in file_imports(path):
        top = module.split(".")[0]
        if top == "deltakeeper":
            target = layer_of(module) or layer_of(module.rpartition(".")[0])  # `from pkg import name`
            allowed = target in (layer_name, *layer.may_import)
            if not allowed and not any(importer == who and _within(module, what) for who, what in EXCEPTIONS):
                bad.append(f"{path.name}:{line} {module} ({target})")
        elif layer.stdlib_only and top not in sys.stdlib_module_names:
            bad.append(f"{path.name}:{line} {module} (not the standard library)")
        elif top in layer.forbidden_libraries:
            bad.append(f"{path.name}:{line} {module} (an I/O library)")
    assert not bad, f"{importer} ({layer_name}) imports what its layer may not: {bad}"


def test_rule_table_names_only_layers_and_modules_that_exist():
    for name, layer in LAYERS.items():
        assert set(layer.may_import) <= set(LAYERS), name
    for importer, imported in EXCEPTIONS:
        assert (PACKAGE.parent / Path(*importer.split("."))).with_suffix(".py").is_file(), importer
        assert layer_of(imported) is not None, imported


def test_layers_are_told_apart_by_the_longest_prefix():
    assert layer_of("deltakeeper.backtest.run") == "backtest"
    assert layer_of("deltakeeper.backtest.__main__") == "cli"
    assert layer_of("deltakeeper") == "shared"
    assert layer_of("deltakeeper.domain.pnl") == "domain"
    assert layer_of("deltakeeper.somewhere_new") is None
    assert layer_of("deltakeeper.domainish") is None


def test_import_scanner_sees_nested_relative_and_from_imports():
    # guards the tests above against passing vacuously
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
