"""The tree's shape holds: a pure core, thin hosts, no import circle.

Read statically from the sources (every import statement, function-level ones included):

* no import circle among the project's modules;
* ``scoring/`` imports nothing from Azure, the hosts, the storage adapter, the client, the
  demo, the benchmark or the dev host: it is the core every host and the client share;
* ``client/`` imports nothing from ``demo/``, the hosts or the dev host;
* and, at run time, importing the core and the client does not import ``azure.functions``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("scoring", "client", "keystore", "hosts", "eicompat", "devhost", "demo", "bench")
TOP_LEVEL = ("function_app", "score")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules(root: Path, packages=PACKAGES, top_level=TOP_LEVEL) -> dict[str, Path]:
    modules = {module_name(p, root): p for package in packages for p in (root / package).rglob("*.py")}
    modules.update({name: root / f"{name}.py" for name in top_level if (root / f"{name}.py").exists()})
    return modules


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every module ``name`` imports (absolute names), resolving relative imports and submodules."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in modules)
    return found


def graph(root: Path, **options) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(project-internal edges, every imported name) per project module."""
    modules = project_modules(root, **options)
    every = {name: imports_of(name, path, modules) for name, path in modules.items()}
    internal = {name: {target for target in targets if target in modules and target != name}
                for name, targets in every.items()}
    return internal, every


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def forbidden(every: dict[str, set[str]], package: str, prefixes: tuple[str, ...]) -> list[str]:
    return sorted(f"{name} imports {target}" for name, targets in every.items()
                  if name == package or name.startswith(package + ".")
                  for target in targets if any(target == p or target.startswith(p + ".") for p in prefixes))


def test_no_import_circle_anywhere():
    internal, _ = graph(ROOT)
    assert circles(internal) == []


def test_the_core_imports_no_azure_no_host_and_nothing_above_it():
    _, every = graph(ROOT)
    assert forbidden(every, "scoring", ("azure", "azurefunctions", "hosts", "keystore", "client", "demo", "bench",
                                        "devhost", "eicompat", "function_app", "score", "flask")) == []


def test_the_client_imports_nothing_from_the_demo_or_the_hosts():
    _, every = graph(ROOT)
    assert forbidden(every, "client", ("demo", "hosts", "devhost", "bench", "function_app")) == []


def test_the_checks_find_a_circle_and_a_forbidden_import(tmp_path):
    """The checks above can fail: a made-up tree with both faults."""
    (tmp_path / "scoring").mkdir()
    (tmp_path / "scoring" / "__init__.py").write_text("")
    (tmp_path / "scoring" / "a.py").write_text("from . import b\n")
    (tmp_path / "scoring" / "b.py").write_text("def f():\n    from .a import x\n    import azure.storage.blob\n")
    (tmp_path / "client").mkdir()
    (tmp_path / "client" / "__init__.py").write_text("from demo.data import load\n")
    internal, every = graph(tmp_path, packages=("scoring", "client"), top_level=())
    assert circles(internal) == [["scoring.a", "scoring.b"]]
    assert forbidden(every, "scoring", ("azure",)) == ["scoring.b imports azure.storage.blob"]
    assert forbidden(every, "client", ("demo",)) == ["client imports demo.data"]


def test_core_and_client_import_no_azure_functions():
    code = ("import sys, scoring.service, scoring.export, client; "
            "bad = sorted(m for m in sys.modules if m.startswith('azure.functions')); "
            "print(bad); assert not bad, bad")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=ROOT)
    assert result.returncode == 0, result.stderr
