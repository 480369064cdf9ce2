"""The package's layering, as a test: who may import whom (DESIGN.md section 6).

Read from the source with ``ast`` (every import, also inside functions), so a forbidden import
fails ``make test`` wherever it hides. Units are the package's top-level modules and
subpackages (``mapping``, ``klaviyo``, ``service``, ``cli`` ...).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = "mparticle_klaviyo"
SOURCE = Path(__file__).resolve().parent.parent / "src" / PACKAGE
EMULATOR = f"{PACKAGE}.klaviyo.emulator"


def module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, absolute, including relative and function-local imports."""
    found: set[str] = set()
    here = module_name(path).split(".")
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = here[: len(here) - node.level + (1 if path.name == "__init__.py" else 0)]
                base = ".".join([*package, base] if base else package)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # ``from pkg import module``
    return found


def graph() -> dict[str, set[str]]:
    """Module -> the modules of this package it imports."""
    modules = {module_name(p): p for p in SOURCE.rglob("*.py")}
    return {name: {m for m in imports_of(path) if m in modules and m != name} for name, path in modules.items()}


def unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def unit_graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = defaultdict(set)
    for module, targets in graph().items():
        edges[unit(module)].update(unit(t) for t in targets if unit(t) != unit(module))
    return edges


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``edges`` as a path that returns to its start, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state and (found := visit(target)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (found := visit(start)):
            return found
    return None


def external_imports(prefix: str) -> set[str]:
    """Top-level names of everything modules under ``prefix`` import from outside the package."""
    names: set[str] = set()
    for path in SOURCE.rglob("*.py"):
        if module_name(path).startswith(prefix):
            names.update(m.split(".")[0] for m in imports_of(path) if not m.startswith(PACKAGE))
    return names


def test_no_import_cycles_between_the_packages_units() -> None:
    assert cycle(unit_graph()) is None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        # Mapping is pure: batches and settings in, requests' contents out; no I/O, no state.
        (
            "mapping",
            {"store", "jobs", "delivery", "server", "service", "observe", "cli", "cli_service", "replay", "config"},
        ),
        # The store knows jobs, not who plans, delivers or serves them.
        ("store", {"jobs", "delivery", "server", "service", "mapping", "klaviyo", "cli", "cli_service", "replay"}),
        # Planning turns input into jobs; it knows nothing of how they are sent or received.
        ("jobs", {"delivery", "server", "service", "cli", "cli_service", "replay", "klaviyo"}),
        # Delivery (dispatcher, packer, lanes, barrier, retry policy) knows no HTTP ingest or CLI.
        ("delivery", {"server", "service", "cli", "cli_service", "replay"}),
        # Ingest over HTTP plans and stores jobs; it never sends to Klaviyo.
        ("server", {"delivery", "service", "cli", "cli_service", "replay"}),
        ("observe", {"mapping", "jobs", "delivery", "server", "service", "store", "cli", "cli_service", "replay"}),
        ("mparticle", {"config", "mapping", "jobs", "delivery", "server", "service", "store", "klaviyo"}),
        # The browser console reads what serve has (store, status, delivery's previews); no CLI.
        ("console", {"cli", "cli_service", "cli_replay", "replay", "demo"}),
    ],
)
def test_a_layer_imports_nothing_above_it(layer: str, forbidden: set[str]) -> None:
    assert unit_graph()[layer] & forbidden == set()


def test_mapping_does_no_io() -> None:
    io = {"aiohttp", "asyncio", "sqlite3", "socket", "http", "urllib", "subprocess", "threading", "os"}
    assert external_imports(f"{PACKAGE}.mapping") & io == set()


def test_the_emulator_imports_nothing_of_ours_outside_itself() -> None:
    # A judge that shares our code agrees with our bugs.
    outside = {
        target
        for module, targets in graph().items()
        if module.startswith(EMULATOR)
        for target in targets
        if not target.startswith(EMULATOR)
    }
    assert outside == set()


def test_the_import_reader_sees_local_and_relative_imports(tmp_path: Path) -> None:
    imports = imports_of(SOURCE / "cli.py")
    assert f"{PACKAGE}.cli_service" in imports  # imported inside main()


def test_only_the_serve_command_mounts_the_console() -> None:
    # ``serve`` wires it in (cli_service); the service, ingest and delivery stay unaware of it.
    importers = {source for source, targets in unit_graph().items() if "console" in targets}
    assert importers == {"cli_service"}


def test_the_live_stream_buffer_knows_only_plain_data() -> None:
    # Written from ingest's and delivery's hot paths and read by the console: it imports none of them.
    assert graph()[f"{PACKAGE}.observe.live"] <= {f"{PACKAGE}.klaviyo.request", f"{PACKAGE}.klaviyo"}
