"""Imports point one way: the layers of README's "Layout", checked on every product module.

Parsed with `ast`, so imports inside functions (the lazy ones) count as much as those at the top.
Each rule names the packages a layer must not import; a module's layer is the longest listed
prefix of its dotted name.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("api", "workers", "events", "analytics", "timo_hub", "timo_hub_client")

DOMAIN = (
    "timo_hub.accounts",
    "timo_hub.people",
    "timo_hub.quota",
    "timo_hub.usage",
    "timo_hub.webhooks",
    "timo_hub.errors",
)
ABOVE_PLATFORM = ("api", "workers", "events", "analytics", "timo_hub.cli", *DOMAIN)

# layer -> packages it must not import
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "timo_hub.platform": (*ABOVE_PLATFORM, "timo_hub.gunicorn_config", "timo_hub_client"),
    "analytics": ("api", "workers", "events", "timo_hub", "timo_hub_client"),
    "events": ("api", "workers", "analytics", "timo_hub.cli", *DOMAIN, "timo_hub_client"),
    "timo_hub.errors": ("api", "workers", "events", "analytics", "timo_hub"),
    "timo_hub.accounts": (
        "api",
        "workers",
        "timo_hub.cli",
        "timo_hub.people",
        "timo_hub.quota",
        "timo_hub.usage",
        "timo_hub.webhooks",
        "timo_hub_client",
    ),
    "timo_hub.people": (
        "api",
        "workers",
        "timo_hub.cli",
        "timo_hub.quota",
        "timo_hub.usage",
        "timo_hub.webhooks",
        "timo_hub_client",
    ),
    "timo_hub.quota": (
        "api",
        "workers",
        "timo_hub.cli",
        "timo_hub.people",
        "timo_hub.usage",
        "timo_hub.webhooks",
        "timo_hub_client",
    ),
    "timo_hub.usage": ("api", "workers", "timo_hub.cli", "timo_hub_client"),
    "timo_hub.webhooks": (
        "api",
        "workers",
        "timo_hub.cli",
        "timo_hub.people",
        "timo_hub.quota",
        "timo_hub.usage",
        "timo_hub_client",
    ),
    "timo_hub.cli": ("api", "workers", "timo_hub_client"),
    "timo_hub.gunicorn_config": ("api", "workers", "timo_hub.cli", *DOMAIN, "timo_hub_client"),
    "workers": ("api", "timo_hub.cli", "timo_hub_client"),
    "api": ("workers", "timo_hub.cli", "timo_hub_client"),
    "timo_hub_client": ("api", "workers", "events", "analytics", "timo_hub"),
    "timo_hub": ("api", "workers", "events", "analytics", "timo_hub_client"),
}


def layer_of(module: str) -> str | None:
    """The rule that governs `module`: the longest layer name it falls under."""
    matches = [layer for layer in FORBIDDEN if _within(module, layer)]
    return max(matches, key=len) if matches else None


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def imported_modules(source: str, module: str, is_package: bool) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of every product module `source` imports, relative ones resolved."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            # `from timo_hub import errors` imports `timo_hub.errors`, not just `timo_hub`.
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}" if alias.name != "*" else base


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    """Each import of `source` (the module `module`) that its layer forbids."""
    layer = layer_of(module)
    if layer is None:
        return []
    found = []
    for line, target in imported_modules(source, module, is_package):
        if target.split(".")[0] not in PRODUCT:
            continue
        # `from timo_hub import __version__` names an attribute of an allowed package.
        for forbidden in FORBIDDEN[layer]:
            if _within(target, forbidden) and not _within(target, layer):
                found.append(f"{module}:{line} imports {target} ({layer} must not import it)")
                break
    return found


def product_modules() -> Iterator[tuple[str, Path]]:
    """(dotted name, path) of every Python module of the product."""
    for top in PRODUCT:
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield ".".join(parts), path


def test_every_product_module_has_a_layer() -> None:
    unruled = [name for name, _ in product_modules() if layer_of(name) is None]
    assert unruled == []


def test_imports_point_one_way() -> None:
    found = []
    for name, path in product_modules():
        found += violations(path.read_text(), name, path.name == "__init__.py")
    assert found == []


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("timo_hub.accounts.service", "from api.problems import ConflictError"),
        ("timo_hub.cli.accounts", "from api import problems"),
        ("workers.tasks", "def task():\n    import api.gate\n"),
        ("events.event_log", "from timo_hub.quota.counting import counted_calls"),
        ("events.ingest", "from timo_hub import errors"),
        ("analytics.stats", "from events.model import ApiCallRecorded"),
        ("analytics.month_projection", "from timo_hub.platform.months import last_day"),
        ("timo_hub.platform.settings", "from timo_hub.accounts import store"),
        ("timo_hub.platform.db", "from events import event_log"),
        ("timo_hub.accounts.store", "from timo_hub.usage import alerts"),
        ("timo_hub.quota.ledger", "from ..usage import alerts"),
        ("timo_hub.accounts.service", "from timo_hub.people import store"),
        ("timo_hub.people.service", "from api.dashboard import sessions"),
    ],
)
def test_an_upward_import_is_caught(module: str, source: str) -> None:
    assert violations(source, module)


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("api.gate", "from timo_hub.quota.enforcer import QuotaEnforcer"),
        ("workers.tasks", "from timo_hub.usage import forecasts"),
        ("timo_hub.usage.forecasts", "from analytics.forecasting import forecast"),
        ("timo_hub.quota.ledger", "from timo_hub.platform.months import next_month"),
        ("events.partitions", "from timo_hub.platform.months import next_month"),
        ("api.v1.health", "from timo_hub import API_VERSION"),
        ("timo_hub.quota.reconcile", "from . import counting"),
    ],
)
def test_a_downward_import_is_allowed(module: str, source: str) -> None:
    assert violations(source, module) == []
