"""The emulator judges our requests independently: it imports nothing of ours outside itself."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import mparticle_klaviyo.klaviyo.emulator as emulator

PACKAGE = Path(emulator.__file__).parent
OURS = ("mparticle_klaviyo", "tests", "bench")


def _imports(source: Path) -> list[tuple[str, int]]:
    """(module, relative level) of every import statement in ``source``, wherever it sits."""
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(source.read_text(), str(source))):
        if isinstance(node, ast.Import):
            found.extend((alias.name, 0) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.append((node.module or "", node.level))
    return found


def test_no_emulator_module_imports_our_code_or_reaches_out_of_its_package() -> None:
    modules = sorted(PACKAGE.glob("*.py"))
    assert len(modules) > 10
    for module in modules:
        for name, level in _imports(module):
            assert level <= 1, f"{module.name} imports from outside the emulator package ({'.' * level}{name})"
            assert level == 1 or not name.startswith(OURS), f"{module.name} imports {name}"


def test_importing_the_emulator_loads_none_of_our_other_modules() -> None:
    code = (
        "import sys, mparticle_klaviyo.klaviyo.emulator\n"
        "print('\\n'.join(m for m in sys.modules if m.startswith('mparticle_klaviyo')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = {name for name in out.split() if not name.startswith("mparticle_klaviyo.klaviyo.emulator")}
    # The parent packages' __init__ run first; they must stay free of imports of our code.
    assert loaded == {"mparticle_klaviyo", "mparticle_klaviyo.klaviyo"}
