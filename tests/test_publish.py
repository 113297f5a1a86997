"""What ``func azure functionapp publish`` would upload: the app and nothing else.

Core Tools reads ``.funcignore`` with gitignore syntax (matched here with pathspec's
gitignore rules): nothing git ignores (virtual environments, build output, local settings,
benchmark results, the demo's models) and no dev-only file (tests, tools, docs, the client,
the container variant) may be published; everything the app imports must be.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pathspec
import pytest

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = ("function_app.py", "host.json", "requirements.txt")
RUNTIME_PACKAGES = ("hosts/", "keystore/", "scoring/", "deploy/")
# Files that exist only on a developer's machine (or appear after `make`, `pip install -e .`,
# `make bench`, a local `func start`), whatever is there now.
DEV_MACHINE_ONLY = (".venv/bin/python", ".venv-peer/bin/python", ".tools/azurite/node_modules/.bin/azurite-blob",
                    "he_scoring.egg-info/PKG-INFO", "build/lib/scoring/service.py", "dist/he_scoring-0.1.0.whl",
                    "models/digits.model.json", "bench/results.json", "bench/load.json", "local.settings.json",
                    "scoring/__pycache__/service.cpython-311.pyc", ".pytest_cache/v/cache/nodeids", "var/azurite/x",
                    "notebooks/.ipynb_checkpoints/x.ipynb")


def spec() -> pathspec.GitIgnoreSpec:
    return pathspec.GitIgnoreSpec.from_lines((ROOT / ".funcignore").read_text().splitlines())


def published(paths: list[str]) -> list[str]:
    ignored = spec()
    return [path for path in paths if not ignored.match_file(path)]


def tracked() -> list[str]:
    return subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()


def git_ignored(paths: list[str]) -> set[str]:
    done = subprocess.run(["git", "check-ignore", "--no-index", "--stdin"], cwd=ROOT, input="\n".join(paths),
                          capture_output=True, text=True, check=False)
    return set(done.stdout.split())


def test_only_the_app_is_published():
    shipped = published(tracked())
    assert set(RUNTIME) <= set(shipped)
    extra = [path for path in shipped if path not in RUNTIME and not path.startswith(RUNTIME_PACKAGES)]
    assert extra == [], f"dev-only files would be published: {extra}"
    for package in ("hosts/", "keystore/", "scoring/"):
        assert any(path.startswith(package) for path in shipped), package


def test_nothing_git_ignores_is_published():
    candidates = list(DEV_MACHINE_ONLY)
    untracked = subprocess.run(["git", "ls-files", "--others", "--ignored", "--exclude-standard"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.split()
    candidates += untracked[:20_000]
    ignored_by_git = git_ignored(candidates)
    assert {"local.settings.json", ".venv-peer/bin/python", "he_scoring.egg-info/PKG-INFO"} <= ignored_by_git
    leaked = [path for path in published(sorted(ignored_by_git))]
    assert leaked == [], f"git-ignored files would be published: {leaked[:10]}"


def test_the_app_imports_only_what_is_published():
    from test_architecture import graph

    internal, every = graph(ROOT)
    needed, frontier = set(), ["function_app"]
    while frontier:
        module = frontier.pop()
        if module not in needed:
            needed.add(module)
            frontier += internal.get(module, ())
    files = {m.replace(".", "/") + ("/__init__.py" if (ROOT / m.replace(".", "/")).is_dir() else ".py") for m in needed}
    missing = sorted(f for f in files if f not in published(sorted(files)))
    assert missing == [], f"the app imports modules that would not be published: {missing}"


@pytest.mark.parametrize("path", ["tests/test_publish.py", "client/keys.py", "models/digits.model.json",
                                  ".venv-peer/lib/site.py", "local.settings.json"])
def test_the_check_sees_an_unwanted_file(path):
    """The rule works on single paths, so the checks above can fail."""
    assert published([path]) == []
