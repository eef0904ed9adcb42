"""Imports flow one way (DESIGN.md): config <- isa <- {compiler, sim, hw}; models <- compiler;
sim never imports compiler; hw never imports sim; nothing below cli imports cli; sweep (the
design-space sweeps, on top of everything but the reports) is imported by the CLI only."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "fpgpt"

# package -> packages it must never import
FORBIDDEN = {
    "config": {"isa", "models", "compiler", "sim", "hw", "energy", "report", "cli"},
    "isa": {"models", "compiler", "sim", "hw", "energy", "report", "cli"},
    "models": {"isa", "compiler", "sim", "hw", "energy", "report", "cli"},
    "compiler": {"sim", "hw", "energy", "report", "cli"},
    "sim": {"compiler", "hw", "energy", "report", "cli"},
    "hw": {"sim", "compiler", "energy", "report", "cli"},
    # sweep drives the lower layers (config, models, compiler, sim, hw, energy, geometry)
    "sweep": {"report", "report_md", "report_plots", "cli"},
}


def _imports(path: Path, package: str) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module and node.module.startswith("fpgpt."):
                found.add(node.module.split(".")[1])
            elif node.level == 1 and path.parent.name != "fpgpt" and node.module:
                pass  # same package
            elif node.level >= 2 and node.module:
                found.add(node.module.split(".")[0])
            elif node.level == 1 and path.parent.name == "fpgpt" and node.module:
                found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("fpgpt."):
                    found.add(a.name.split(".")[1])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_flow_one_way(package):
    base = ROOT / package
    files = [base.with_suffix(".py")] if base.with_suffix(".py").exists() else sorted(base.rglob("*.py"))
    bad = []
    for f in files:
        for imp in _imports(f, package) & FORBIDDEN[package]:
            bad.append(f"{f.relative_to(ROOT.parent)} imports fpgpt.{imp}")
    assert not bad, "; ".join(bad)


def test_only_the_cli_imports_sweep():
    """fpgpt.sweep is a top layer: no package but the CLI may import it (a lower one doing so
    would make it depend on Dask, pandas and everything the sweep drives)."""
    bad = []
    for f in sorted(ROOT.rglob("*.py")):
        rel = f.relative_to(ROOT)
        if rel.parts[0] in ("sweep", "cli"):
            continue
        pkg = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        if "sweep" in _imports(f, pkg):
            bad.append(f"{f.relative_to(ROOT.parent)} imports fpgpt.sweep")
    assert not bad, "; ".join(bad)
