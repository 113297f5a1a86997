"""The app's requirements install on Python 3.11, 3.12 and 3.13, every package pinned.

pip resolves ``requirements.txt`` for each Python version as Azure's remote build would
(wheels only, for that interpreter's tags, nothing already installed counted), with the
version markers evaluated for that Python; the resolved set must be exactly the pinned set
(no runtime dependency floats) and every package must declare that Python supported
(pip checks ``Requires-Python`` against the interpreter it runs on, so the test checks it
against the target itself). This asks the package index (PyPI) for metadata only.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent


def pinned_for(version: str) -> dict[str, str]:
    """Name -> version of every pin whose marker holds on Python ``version``."""
    environment = {"python_version": version, "python_full_version": f"{version}.0"}
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        assert str(requirement.specifier).startswith("=="), f"{line}: every runtime dependency is pinned"
        if requirement.marker is None or requirement.marker.evaluate(environment):
            pins[canonicalize_name(requirement.name)] = str(requirement.specifier)[2:]
    return pins


@pytest.mark.parametrize("version", ["3.11", "3.12", "3.13"])
def test_requirements_resolve_to_exactly_the_pins(version, tmp_path):
    pins = pinned_for(version)
    listed = tmp_path / "requirements.txt"
    listed.write_text("\n".join(f"{name}=={pin}" for name, pin in pins.items()))
    report = tmp_path / "report.json"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                           "--only-binary=:all:", "--python-version", version, "--ignore-requires-python", "--target", str(tmp_path / "t"),
                           "--report", str(report), "-r", str(listed)], capture_output=True, text=True, timeout=600)
    if done.returncode and ("NewConnectionError" in done.stderr or "Temporary failure" in done.stderr):
        pytest.skip("the package index cannot be reached")
    assert done.returncode == 0, done.stderr[-2000:]
    items = json.loads(report.read_text())["install"]
    resolved = {canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"] for item in items}
    refused = [item["metadata"]["name"] for item in items
               if f"{version}.0" not in SpecifierSet(item["metadata"].get("requires_python") or "")]
    assert refused == [], f"these pins do not support Python {version}: {refused}"
    assert resolved == pins, {name: (resolved.get(name), pins.get(name)) for name in resolved.keys() | pins.keys()
                              if resolved.get(name) != pins.get(name)}
