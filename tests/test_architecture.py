"""Architecture guards (STYLE §1, §5): import contracts and an import of every module.

1. Every module of ``limits`` and ``proxy`` imports on its own in a fresh interpreter, warnings
   as errors: a circular import shows up whichever module is imported first (aiohttp
   ``tests/test_circular_imports.py``). The interpreters run one per CPU at a time, started when
   the first of these tests runs.
2. The dependency rules, read from the source with ``ast`` (so they hold before, and
   independently of, import-linter): ``limits`` never imports ``proxy``, aiohttp or
   pydantic-settings; the pure core imports no I/O, storage or validation library, no port or
   service of its own package, and never reads the clock.
3. ``lint-imports`` passes with the contracts in ``pyproject.toml``, and those contracts name the
   same pure core as this file.
"""

from __future__ import annotations

import ast
import os
import pkgutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

import limits
import proxy

ROOT = Path(__file__).resolve().parent.parent
PURE_CORE = [
    "limits.money",
    "limits.periods",
    "limits.scopes",
    "limits.usage",
    "limits.pricing",
    "limits.decisions",
    "limits.status",
    "limits.errors",
]
NEVER_FROM_LIMITS = {"proxy", "aiohttp", "pydantic_settings"}
NEVER_FROM_CORE = NEVER_FROM_LIMITS | {
    "asyncio",
    "redis",
    "sqlalchemy",
    "asyncpg",
    "aiosqlite",
    "pydantic",
    "litellm",
    "socket",
    "os",
    "time",
    "limits.ports",
    "limits.enforcer",
    "limits.store",
}
CLOCK_READS = {"now", "utcnow", "today", "time", "monotonic", "perf_counter"}


def _module_names() -> list[str]:
    names = []
    for package in (limits, proxy):
        names.append(package.__name__)
        for info in pkgutil.walk_packages(package.__path__, prefix=package.__name__ + "."):
            names.append(info.name)
    return sorted(names)


MODULES = _module_names()


def _import_alone(module: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-W", "error", "-c", f"import {module}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def imports() -> Iterator[dict[str, Future[subprocess.CompletedProcess[str]]]]:
    """One fresh interpreter per module, as many at a time as there are CPUs."""
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        futures = {name: pool.submit(_import_alone, name) for name in MODULES}
        yield futures
        for future in futures.values():
            future.cancel()


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_alone(
    imports: dict[str, Future[subprocess.CompletedProcess[str]]], module: str
) -> None:
    result = imports[module].result()
    assert result.returncode == 0, f"`import {module}` failed:\n{result.stdout}"


def test_both_packages_are_walked() -> None:
    assert {"limits", "limits.money", "limits.enforcer", "proxy"} <= set(MODULES)


# ---------------------------------------------------------------- source rules


def _source(module: str) -> Path:
    path = ROOT.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _imported(module: str, tree: ast.Module) -> Iterator[tuple[int, str]]:
    """Every module an ``import`` statement anywhere in ``tree`` names (also inside functions
    and ``if TYPE_CHECKING:``), absolute, with the line it is on."""
    package = module if _source(module).name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{anchor}.{base}" if base else anchor
            yield node.lineno, base
            for alias in node.names:  # "from limits import store" imports limits.store
                yield node.lineno, f"{base}.{alias.name}"


def _violations(module: str, forbidden: set[str]) -> list[str]:
    tree = ast.parse(_source(module).read_text("utf-8"), filename=str(_source(module)))
    found = []
    for line, name in _imported(module, tree):
        for bad in forbidden:
            if name == bad or name.startswith(bad + "."):
                found.append(f"{module}:{line} imports {name}")
    return found


LIMITS_MODULES = [m for m in MODULES if m == "limits" or m.startswith("limits.")]


@pytest.mark.parametrize("module", LIMITS_MODULES)
def test_limits_never_imports_proxy_aiohttp_or_settings(module: str) -> None:
    assert _violations(module, NEVER_FROM_LIMITS) == []


@pytest.mark.parametrize("module", PURE_CORE)
def test_pure_core_imports_no_io_storage_or_services(module: str) -> None:
    assert _violations(module, NEVER_FROM_CORE) == []


@pytest.mark.parametrize("module", PURE_CORE)
def test_pure_core_never_reads_the_clock(module: str) -> None:
    """``datetime.now()`` and friends are forbidden in the core: time comes in as ``at=``."""
    tree = ast.parse(_source(module).read_text("utf-8"))
    reads = [
        f"{module}:{node.lineno} uses .{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr in CLOCK_READS
    ]
    assert reads == []


def test_the_ast_checks_see_imports() -> None:
    """The checks above are not vacuous: they find what they look for."""
    tree = ast.parse(
        "import asyncio\n"
        "from datetime import datetime\n"
        "def f():\n"
        "    from proxy.app import create_app\n"
        "from . import ports\n"
        "from .store import memory\n"
    )
    names = {name for _, name in _imported("limits.pricing", tree)}
    assert {"asyncio", "proxy.app", "limits.ports", "limits.store", "limits.store.memory"} <= names
    assert _violations("limits.pricing", NEVER_FROM_CORE) == []  # the real file is clean


# ---------------------------------------------------------------- import-linter


def test_import_linter_contracts_hold() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(lint_imports), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_linter_names_the_same_pure_core() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["tool"]["importlinter"]
    pure = [c for c in config["contracts"] if "pure" in c["name"]]
    assert len(pure) == 1
    assert sorted(pure[0]["source_modules"]) == sorted(PURE_CORE)
    forbidden = set(pure[0]["forbidden_modules"])
    assert {"asyncio", "redis", "sqlalchemy", "asyncpg", "pydantic"} <= forbidden
    assert {"limits.ports", "limits.enforcer", "limits.store"} <= forbidden
