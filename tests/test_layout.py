"""The package's shape: the engine stands alone, imports flow one way, and
no module outgrows one concept."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "minivae"
ENGINE = {"minivae", "minivae.kernels", "minivae.family_kernels", "minivae.numba_cache",
          "minivae.threads", "minivae.blas", "minivae.updates", "minivae.sparse",
          "minivae.autograd", "minivae.ops",
          "minivae.distributions", "minivae.gradcheck"}
MAX_LINES = 400


def module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path):
    """The minivae modules that the file at `path` imports (at any depth)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("minivae"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if (PACKAGE.parent / full.replace(".", "/")).with_suffix(
                    ".py").exists() or (PACKAGE.parent / full.replace(".", "/")).is_dir()
                    else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("minivae"))
    return found


MODULES = {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py")}


@pytest.mark.parametrize("engine_module", sorted(ENGINE - {"minivae"}))
def test_importing_an_engine_module_loads_nothing_but_the_engine(engine_module):
    code = (f"import sys, {engine_module}; "
            f"print(' '.join(sorted(m for m in sys.modules if m.startswith('minivae'))))")
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True, cwd=PACKAGE.parent).stdout.split())
    assert engine_module in loaded and loaded <= ENGINE, loaded - ENGINE


def test_the_package_imports_in_no_circle():
    def reach(start):
        seen, stack = set(), [start]
        while stack:
            for dep in MODULES.get(stack.pop(), ()):
                if dep not in seen:
                    seen.add(dep)
                    stack.append(dep)
        return seen
    circles = sorted(m for m in MODULES if m != "minivae" and m in reach(m))
    assert not circles, f"modules that import themselves through others: {circles}"


@pytest.mark.parametrize("module, forbidden", [
    ("minivae.autograd", {"minivae.ops", "minivae.distributions"}),
    ("minivae.train", {"minivae.plots", "minivae.kernels", "minivae.cli"}),
    ("minivae.data", {m for m in MODULES if m not in ("minivae", "minivae.data")}),
    ("minivae.models.vae", {"minivae.objectives", "minivae.data", "minivae.train",
                            "minivae.plots", "minivae.optim"}),
])
def test_a_module_does_not_import_what_sits_above_it(module, forbidden):
    assert not MODULES[module] & forbidden, MODULES[module] & forbidden


def test_nothing_imports_the_command_line():
    assert [m for m, deps in MODULES.items() if "minivae.cli" in deps] == ["minivae.__main__"]


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: p.name)
def test_no_module_is_over_400_lines(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES
